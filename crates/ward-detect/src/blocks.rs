//! What is blocked, in the form the request path reads: an immutable
//! snapshot of addresses, ranges and principals, each with the time its
//! block ends, and the allowlist that overrides them.
//!
//! A check costs one hash probe per prefix length in use (exact addresses
//! are /32 or /128, a detected subnet /24 or /64: usually two or three
//! probes), never a scan of the blocks, so it takes the same time with ten
//! blocks or a million. A block whose time has passed stops applying at
//! once, before the sweeper removes it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use ward_core::Cidr;
use ward_core::net::canonical_ip;

/// What a decision blocks.
///
/// Written as text: `192.0.2.1`, `192.0.2.0/24`, `principal:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Target {
    /// An address or a range (a single address is a /32 or /128).
    Address(Cidr),
    /// An authenticated principal (a token's `sub`, a login name, a client
    /// id): `ISSUER#NAME` in one issuer's namespace (what detections
    /// block), or `NAME` under every issuer (an operator's choice).
    Principal(String),
}

impl Target {
    /// Parse `10.0.0.1`, `10.0.0.0/24`, `2001:db8::/64` or `principal:NAME`.
    ///
    /// # Errors
    /// A message for anything else.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("principal:") {
            if name.is_empty() || name.len() > 1024 || name.chars().any(char::is_control) {
                return Err(format!("`{text}`: a principal is 1-1024 printable characters"));
            }
            return Ok(Self::Principal(name.to_owned()));
        }
        Cidr::parse(text).map(Self::Address).map_err(|e| format!("{e} (or `principal:NAME`)"))
    }

    /// `ip`, `range` or `principal`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Address(c) if c.is_single() => "ip",
            Self::Address(_) => "range",
            Self::Principal(_) => "principal",
        }
    }

    /// The value without its kind (`10.0.0.1`, `10.0.0.0/24`, `alice`).
    #[must_use]
    pub fn value(&self) -> String {
        match self {
            Self::Address(c) if c.is_single() => c.network().to_string(),
            Self::Address(c) => c.to_string(),
            Self::Principal(p) => p.clone(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Principal(p) => write!(f, "principal:{p}"),
            Self::Address(_) => f.write_str(&self.value()),
        }
    }
}

impl From<Target> for String {
    fn from(t: Target) -> Self {
        t.to_string()
    }
}

impl TryFrom<String> for Target {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

/// Addresses grouped by prefix length, for lookups that do not depend on
/// how many entries there are.
#[derive(Debug, Clone, Default)]
struct PrefixSets<V> {
    v4: Vec<(u8, HashMap<u32, V>)>,
    v6: Vec<(u8, HashMap<u128, V>)>,
}

fn bits4(ip: std::net::Ipv4Addr, prefix: u8) -> u32 {
    let b = u32::from(ip);
    if prefix == 0 { 0 } else { b & (u32::MAX << (32 - u32::from(prefix))) }
}

fn bits6(ip: std::net::Ipv6Addr, prefix: u8) -> u128 {
    let b = u128::from(ip);
    if prefix == 0 { 0 } else { b & (u128::MAX << (128 - u32::from(prefix))) }
}

/// The set for `prefix`, made if missing; longest prefixes first.
fn slot<K, V>(sets: &mut Vec<(u8, HashMap<K, V>)>, prefix: u8) -> &mut HashMap<K, V> {
    let i = match sets.iter().position(|(p, _)| *p == prefix) {
        Some(i) => i,
        None => {
            let at = sets.iter().position(|(p, _)| *p < prefix).unwrap_or(sets.len());
            sets.insert(at, (prefix, HashMap::new()));
            at
        }
    };
    &mut sets[i].1
}

fn upsert<K: std::hash::Hash + Eq, V: Copy>(set: &mut HashMap<K, V>, key: K, value: V, keep: impl Fn(V, V) -> V) {
    let v = set.get(&key).map_or(value, |old| keep(*old, value));
    set.insert(key, v);
}

impl<V: Copy> PrefixSets<V> {
    fn insert(&mut self, cidr: Cidr, value: V, keep: impl Fn(V, V) -> V) {
        match cidr.network() {
            IpAddr::V4(n) => upsert(slot(&mut self.v4, cidr.prefix()), u32::from(n), value, keep),
            IpAddr::V6(n) => upsert(slot(&mut self.v6, cidr.prefix()), u128::from(n), value, keep),
        }
    }

    fn remove(&mut self, cidr: Cidr) {
        fn drop_key<K: std::hash::Hash + Eq, V>(sets: &mut Vec<(u8, HashMap<K, V>)>, prefix: u8, key: &K) {
            if let Some(i) = sets.iter().position(|(p, _)| *p == prefix) {
                sets[i].1.remove(key);
                if sets[i].1.is_empty() {
                    sets.remove(i);
                }
            }
        }
        match cidr.network() {
            IpAddr::V4(n) => drop_key(&mut self.v4, cidr.prefix(), &u32::from(n)),
            IpAddr::V6(n) => drop_key(&mut self.v6, cidr.prefix(), &u128::from(n)),
        }
    }

    fn len(&self) -> usize {
        self.v4.iter().map(|(_, s)| s.len()).sum::<usize>() + self.v6.iter().map(|(_, s)| s.len()).sum::<usize>()
    }

    /// The first value whose block contains `ip` and passes `ok`.
    fn find(&self, ip: IpAddr, ok: impl Fn(V) -> bool) -> Option<V> {
        match canonical_ip(ip) {
            IpAddr::V4(a) => {
                self.v4.iter().find_map(|(p, set)| set.get(&bits4(a, *p)).copied().filter(|v| ok(*v))).or_else(|| {
                    // IPv6 blocks such as ::ffff:0:0/96 cover mapped IPv4.
                    let mapped = a.to_ipv6_mapped();
                    self.v6.iter().find_map(|(p, set)| set.get(&bits6(mapped, *p)).copied().filter(|v| ok(*v)))
                })
            }
            IpAddr::V6(a) => self.v6.iter().find_map(|(p, set)| set.get(&bits6(a, *p)).copied().filter(|v| ok(*v))),
        }
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// Addresses, ranges and principals that are never blocked or rate limited.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    ranges: PrefixSets<()>,
    principals: HashSet<String>,
    entries: Vec<Target>,
}

impl Allowlist {
    /// From targets (`10.0.0.0/8`, `principal:health-checker`).
    #[must_use]
    pub fn new(entries: &[Target]) -> Self {
        let mut list = Self::default();
        for t in entries {
            match t {
                Target::Address(c) => list.ranges.insert(*c, (), |(), ()| ()),
                Target::Principal(p) => {
                    list.principals.insert(p.clone());
                }
            }
        }
        list.entries = entries.to_vec();
        list
    }

    /// Whether `ip` is allowlisted.
    #[must_use]
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        !self.ranges.is_empty() && self.ranges.find(ip, |()| true).is_some()
    }

    /// Whether `principal` is allowlisted: by itself, or — for a principal
    /// in an issuer's namespace (`ISSUER#NAME`) — by its bare name, which
    /// allowlists that name under every issuer.
    #[must_use]
    pub fn allows_principal(&self, principal: &str) -> bool {
        if self.principals.is_empty() {
            return false;
        }
        self.principals.contains(principal)
            || principal
                .split_once('#')
                .is_some_and(|(issuer, name)| issuer.contains("://") && self.principals.contains(name))
    }

    /// Whether blocking `target` would touch the allowlist: the target is
    /// allowlisted, or a range that contains an allowlisted range.
    #[must_use]
    pub fn covers(&self, target: &Target) -> bool {
        match target {
            Target::Principal(p) => self.allows_principal(p),
            Target::Address(c) => self.entries.iter().any(|e| match e {
                Target::Address(a) => c.contains(a.network()) || a.contains(c.network()),
                Target::Principal(_) => false,
            }),
        }
    }

    /// The entries as configured.
    #[must_use]
    pub fn entries(&self) -> &[Target] {
        &self.entries
    }
}

/// The blocks in force, as the request path reads them.
#[derive(Debug, Clone, Default)]
pub struct BlockSet {
    ranges: PrefixSets<u64>,
    principals: HashMap<String, u64>,
}

impl BlockSet {
    /// From `(target, until)` pairs (`until` in ms since the Unix epoch).
    pub fn new<'a>(blocks: impl IntoIterator<Item = (&'a Target, u64)>) -> Self {
        let mut set = Self::default();
        for (target, until) in blocks {
            match target {
                Target::Address(c) => set.ranges.insert(*c, until, u64::max),
                Target::Principal(p) => {
                    let e = set.principals.entry(p.clone()).or_insert(until);
                    *e = (*e).max(until);
                }
            }
        }
        set
    }

    /// Until when `ip` is blocked at `now` (ms), if it is.
    #[must_use]
    pub fn ip(&self, ip: IpAddr, now: u64) -> Option<u64> {
        if self.ranges.is_empty() {
            return None;
        }
        self.ranges.find(ip, |until| until > now)
    }

    /// Until when `name`, vouched for by `issuer`, is blocked at `now` (ms):
    /// by name alone or as `ISSUER#NAME`. Formats nothing while no
    /// principal is blocked.
    #[must_use]
    pub fn principal_in(&self, issuer: &str, name: &str, now: u64) -> Option<u64> {
        if self.principals.is_empty() {
            return None;
        }
        self.principal(name, now).or_else(|| self.principal(&crate::event::qualified(Some(issuer), name), now))
    }

    /// Until when `principal` is blocked at `now` (ms), if it is.
    #[must_use]
    pub fn principal(&self, principal: &str, now: u64) -> Option<u64> {
        if self.principals.is_empty() {
            return None;
        }
        self.principals.get(principal).copied().filter(|until| *until > now)
    }

    /// Whether nothing is blocked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.principals.is_empty()
    }

    /// Targets held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ranges.len() + self.principals.len()
    }

    /// Block `target` until `until` (replacing an earlier time).
    pub fn insert(&mut self, target: &Target, until: u64) {
        match target {
            Target::Address(c) => self.ranges.insert(*c, until, |_, new| new),
            Target::Principal(p) => {
                self.principals.insert(p.clone(), until);
            }
        }
    }

    /// Lift the block on `target`.
    pub fn remove(&mut self, target: &Target) {
        match target {
            Target::Address(c) => self.ranges.remove(*c),
            Target::Principal(p) => {
                self.principals.remove(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn targets_parse_and_print() {
        assert_eq!(t("10.0.0.1").to_string(), "10.0.0.1");
        assert_eq!(t("10.0.0.1").kind(), "ip");
        assert_eq!(t("10.0.0.9/24").to_string(), "10.0.0.0/24");
        assert_eq!(t("10.0.0.9/24").kind(), "range");
        assert_eq!(t("principal:alice"), Target::Principal("alice".into()));
        assert_eq!(t("principal:alice").to_string(), "principal:alice");
        for bad in ["", "principal:", "10.0.0.256", "alice", "principal:a\nb"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&t("2001:db8::/64")).unwrap();
        assert_eq!(json, r#""2001:db8::/64""#);
        assert_eq!(serde_json::from_str::<Target>(&json).unwrap(), t("2001:db8::/64"));
    }

    #[test]
    fn lookups_by_address_range_and_principal() {
        let targets = [t("10.0.0.1"), t("192.168.7.0/24"), t("2001:db8::/64"), t("principal:mallory")];
        let set = BlockSet::new(targets.iter().map(|x| (x, 5_000)));
        assert_eq!(set.ip(ip("10.0.0.1"), 1_000), Some(5_000));
        assert_eq!(set.ip(ip("::ffff:10.0.0.1"), 1_000), Some(5_000), "mapped IPv4 is the same address");
        assert_eq!(set.ip(ip("10.0.0.2"), 1_000), None);
        assert_eq!(set.ip(ip("192.168.7.200"), 1_000), Some(5_000));
        assert_eq!(set.ip(ip("192.168.8.1"), 1_000), None);
        assert_eq!(set.ip(ip("2001:db8::77"), 1_000), Some(5_000));
        assert_eq!(set.ip(ip("2001:db8:1::77"), 1_000), None);
        assert_eq!(set.principal("mallory", 1_000), Some(5_000));
        assert_eq!(set.principal("alice", 1_000), None);
        assert_eq!(set.ip(ip("10.0.0.1"), 5_000), None, "a block ends at its time, sweeper or not");
        assert_eq!(set.principal("mallory", 5_001), None);
    }

    #[test]
    fn blocks_are_added_and_lifted_one_by_one() {
        let mut set = BlockSet::default();
        set.insert(&t("10.0.0.0/24"), 5_000);
        set.insert(&t("10.0.0.7"), 5_000);
        set.insert(&t("principal:eve"), 5_000);
        assert_eq!(set.len(), 3);
        set.remove(&t("10.0.0.0/24"));
        assert_eq!(set.ip(ip("10.0.0.9"), 1), None);
        assert_eq!(set.ip(ip("10.0.0.7"), 1), Some(5_000));
        set.insert(&t("10.0.0.7"), 2_000);
        assert_eq!(set.ip(ip("10.0.0.7"), 1), Some(2_000), "insert replaces");
        set.remove(&t("10.0.0.7"));
        set.remove(&t("principal:eve"));
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn a_longer_block_of_the_same_target_wins() {
        let a = t("10.0.0.1");
        let set = BlockSet::new([(&a, 5_000), (&a, 9_000), (&a, 2_000)]);
        assert_eq!(set.ip(ip("10.0.0.1"), 6_000), Some(9_000));
    }

    #[test]
    fn allowlist() {
        let list = Allowlist::new(&[t("127.0.0.0/8"), t("principal:health"), t("2001:db8::1")]);
        assert!(list.allows_ip(ip("127.0.0.2")) && list.allows_ip(ip("::ffff:127.0.0.1")));
        assert!(!list.allows_ip(ip("10.0.0.1")));
        assert!(list.allows_ip(ip("2001:db8::1")) && !list.allows_ip(ip("2001:db8::2")));
        assert!(list.allows_principal("health") && !list.allows_principal("alice"));
        assert!(list.covers(&t("127.0.0.9")), "inside an allowlisted range");
        assert!(list.covers(&t("0.0.0.0/0")), "a range around an allowlisted one");
        assert!(!list.covers(&t("10.0.0.0/8")));
        assert!(list.covers(&t("principal:health")));
    }
}
