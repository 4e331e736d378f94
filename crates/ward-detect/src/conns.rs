//! Per-address connection caps: how many connections one client address
//! may hold open at once, across every worker thread. An IPv6 client is
//! one /64 (one host's share: anyone holding a /64 can pick any of its
//! 2^64 addresses), as detection counts it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 32;

/// Open connections per address, capped.
#[derive(Debug)]
pub struct ConnectionCaps {
    cap: u32,
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    hasher: std::collections::hash_map::RandomState,
    /// Connections refused because their address was at the cap.
    pub refused: AtomicU64,
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    caps: Arc<ConnectionCaps>,
    ip: IpAddr,
}

/// The client an address counts as: an IPv4 address, or an IPv6 /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ward_core::net::canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl ConnectionCaps {
    /// At most `cap` connections per address.
    #[must_use]
    pub fn new(cap: u32) -> Arc<Self> {
        Arc::new(Self {
            cap,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            refused: AtomicU64::new(0),
        })
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        use std::hash::BuildHasher;
        #[allow(clippy::cast_possible_truncation)] // the low bits pick the shard
        let i = (self.hasher.hash_one(ip) as usize) % SHARDS;
        &self.shards[i]
    }

    /// A slot for a new connection from `ip`, or `None` at the cap.
    #[must_use]
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let ip = client_of(ip);
        let mut map = self.shard(&ip).lock().ok()?;
        let open = map.entry(ip).or_insert(0);
        if *open >= self.cap {
            drop(map);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *open += 1;
        drop(map);
        Some(ConnectionSlot { caps: Arc::clone(self), ip })
    }

    /// Connections `ip` holds now.
    #[must_use]
    pub fn open(&self, ip: IpAddr) -> u32 {
        let ip = client_of(ip);
        self.shard(&ip).lock().map_or(0, |m| m.get(&ip).copied().unwrap_or(0))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.caps.shard(&self.ip).lock()
            && let Some(open) = map.get_mut(&self.ip)
        {
            *open = open.saturating_sub(1);
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_per_address_and_release_on_drop() {
        let caps = ConnectionCaps::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = caps.admit(a).unwrap();
        let _s2 = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none());
        assert!(caps.admit("::ffff:10.0.0.1".parse().unwrap()).is_none(), "mapped form is the same address");
        assert!(caps.admit(b).is_some());
        drop(s1);
        assert_eq!(caps.open(a), 1);
        assert!(caps.admit(a).is_some());
        assert_eq!(caps.refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let caps = ConnectionCaps::new(2);
        let _a = caps.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _b = caps.admit("2001:db8:1:2:ffff::9".parse().unwrap()).unwrap();
        assert!(caps.admit("2001:db8:1:2::abcd".parse().unwrap()).is_none(), "another address of the same /64");
        assert!(caps.admit("2001:db8:1:3::1".parse().unwrap()).is_some(), "the next /64 is another client");
    }
}
