//! Short-lived state of the authorization-code flow, kept in memory: login
//! tickets (an authorization request waiting for the user to log in) and
//! authorization codes (waiting to be redeemed). Both live seconds to
//! minutes; after a restart they are gone and the user starts again, which
//! fails closed.
//!
//! Both are bounded. Login tickets are created by anyone who loads the
//! login page, so no one may fill the table: each source (an IPv4 address,
//! an IPv6 /64) holds at most [`TICKETS_PER_SOURCE`], its oldest giving way
//! to its newest, and a full table gives up its oldest ticket — a flood
//! costs real users at most a reload, never a refusal. A ticket's password
//! attempts are reserved before the (slow) check, so parallel posts of one
//! page cannot pass [`MAX_ATTEMPTS`]. Codes are made only after a
//! successful login: a full code table drops expired entries, then refuses
//! new ones (`temporarily_unavailable`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use ward_issuer::authorize::{AuthorizationRequest, CodeGrant};

/// Most login tickets or codes held at once.
pub const MAX_PENDING: usize = 100_000;

/// Login tickets one source (an IPv4 address or an IPv6 /64) holds at once.
pub const TICKETS_PER_SOURCE: usize = 64;

/// How long the login page waits for the user (seconds).
pub const TICKET_TTL: u64 = 600;

/// Password attempts one login page allows before the user must start over.
pub const MAX_ATTEMPTS: u32 = 5;

/// An authorization request waiting for the user to log in.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The checked request.
    pub request: AuthorizationRequest,
    /// SHA-256 of the login cookie set with the page: the form is accepted
    /// only from the browser that loaded it (no login CSRF).
    pub cookie_hash: [u8; 32],
    /// When the page stops being accepted.
    pub expires: u64,
    /// Password attempts reserved so far (each before its check).
    pub attempts: u32,
}

/// Where a ticket came from: an IPv4 address, or an IPv6 /64 (one host
/// commonly holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` counts against.
    #[must_use]
    pub fn of(ip: IpAddr) -> Self {
        match ward_core::net::canonical_ip(ip) {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(bits.into()))
            }
            v4 => Self(v4),
        }
    }

    /// The address standing for the source (an IPv6 /64's first address).
    #[must_use]
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

/// What reserving a password attempt found.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// No live ticket under that id for that cookie.
    Unknown,
    /// Every attempt of the page is used (or being used).
    Exhausted,
    /// Reserved: the ticket as it was, and whether this is its last attempt.
    Reserved(Box<Ticket>, bool),
}

#[derive(Debug, Default)]
struct Tickets {
    /// id hash → (ticket, source, sequence number).
    by_id: HashMap<[u8; 32], (Ticket, Source, u64)>,
    /// sequence number → id hash: oldest first (tickets share one lifetime,
    /// so this is also expiry order).
    order: BTreeMap<u64, [u8; 32]>,
    /// Per source, its tickets' sequence numbers, oldest first.
    per_source: HashMap<Source, VecDeque<u64>>,
    next: u64,
}

impl Tickets {
    fn remove(&mut self, id: &[u8; 32]) -> Option<Ticket> {
        let (ticket, source, seq) = self.by_id.remove(id)?;
        self.order.remove(&seq);
        if let Some(q) = self.per_source.get_mut(&source) {
            q.retain(|s| *s != seq);
            if q.is_empty() {
                self.per_source.remove(&source);
            }
        }
        Some(ticket)
    }

    fn remove_seq(&mut self, seq: u64) {
        if let Some(id) = self.order.get(&seq).copied() {
            self.remove(&id);
        }
    }

    /// Drop the expired ones (oldest first, so they are at the front).
    fn expire(&mut self, now: u64) {
        while let Some((&seq, id)) = self.order.first_key_value() {
            if self.by_id.get(id).is_some_and(|(t, _, _)| t.expires > now) {
                break;
            }
            self.remove_seq(seq);
        }
    }

    fn insert(&mut self, id: [u8; 32], ticket: Ticket, source: Source, now: u64) {
        self.expire(now);
        if let Some(oldest) =
            self.per_source.get(&source).filter(|q| q.len() >= TICKETS_PER_SOURCE).and_then(|q| q.front().copied())
        {
            self.remove_seq(oldest);
        }
        if self.by_id.len() >= MAX_PENDING
            && let Some((&seq, _)) = self.order.first_key_value()
        {
            self.remove_seq(seq);
        }
        self.remove(&id);
        let seq = self.next;
        self.next += 1;
        self.by_id.insert(id, (ticket, source, seq));
        self.order.insert(seq, id);
        self.per_source.entry(source).or_default().push_back(seq);
    }
}

/// What a redeemed code produced, revoked if the code comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// `jti` and `exp` of the access token.
    pub access: (String, u64),
    /// The refresh token family, if one was started.
    pub family: Option<String>,
}

#[derive(Debug, Clone)]
enum CodeState {
    Fresh(Box<CodeGrant>),
    /// Being redeemed right now.
    Redeeming,
    /// Presented again while being redeemed: revoke what the redemption produces.
    ReusedWhileRedeeming,
    Redeemed(Redeemed),
}

/// What presenting a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTake {
    /// Unknown or expired.
    Unknown,
    /// Redeemed before: the caller revokes what it produced (if anything yet).
    Reused(Option<Redeemed>),
    /// First presentation: the grant, now marked as being redeemed.
    Fresh(Box<CodeGrant>),
}

/// Login tickets and authorization codes.
#[derive(Debug, Default)]
pub struct Flows {
    tickets: Mutex<Tickets>,
    /// By code hash: the state and when the entry may be forgotten.
    codes: Mutex<HashMap<[u8; 32], (CodeState, u64)>>,
}

/// Codes are remembered this long after they expire, so a late replay is
/// still recognised as a reuse and revokes what the code produced.
const REMEMBER_REDEEMED: u64 = 600;

fn make_room<V>(map: &mut HashMap<[u8; 32], V>, now: u64, expiry: impl Fn(&V) -> u64) -> bool {
    if map.len() >= MAX_PENDING {
        map.retain(|_, v| expiry(v) > now);
    }
    map.len() < MAX_PENDING
}

impl Flows {
    /// Hold `ticket`, made for `source`, under the hash of its id (making
    /// room as the module explains: it is always held).
    pub fn put_ticket(&self, id_hash: [u8; 32], ticket: Ticket, source: Source, now: u64) -> bool {
        let Ok(mut t) = self.tickets.lock() else { return false };
        t.insert(id_hash, ticket, source, now);
        true
    }

    /// Tickets held.
    #[must_use]
    pub fn tickets(&self) -> usize {
        self.tickets.lock().map_or(0, |t| t.by_id.len())
    }

    /// The live ticket `id_hash`, if the presented cookie hashes to its cookie hash.
    pub fn ticket(&self, id_hash: &[u8; 32], cookie_hash: &[u8; 32], now: u64) -> Option<Ticket> {
        let t = self.tickets.lock().ok()?;
        let (ticket, _, _) = t.by_id.get(id_hash)?;
        (ticket.expires > now && ward_crypto::constant_time_eq(&ticket.cookie_hash, cookie_hash))
            .then(|| ticket.clone())
    }

    /// Reserve one password attempt on the live ticket `id_hash` (for the
    /// browser holding `cookie_hash`), before the password is checked.
    pub fn reserve_attempt(&self, id_hash: &[u8; 32], cookie_hash: &[u8; 32], now: u64) -> Attempt {
        let Ok(mut t) = self.tickets.lock() else { return Attempt::Unknown };
        let Some((ticket, _, _)) = t.by_id.get_mut(id_hash) else { return Attempt::Unknown };
        if ticket.expires <= now || !ward_crypto::constant_time_eq(&ticket.cookie_hash, cookie_hash) {
            return Attempt::Unknown;
        }
        if ticket.attempts >= MAX_ATTEMPTS {
            return Attempt::Exhausted;
        }
        let before = ticket.clone();
        ticket.attempts += 1;
        Attempt::Reserved(Box::new(before), ticket.attempts >= MAX_ATTEMPTS)
    }

    /// Drop a ticket (used, abandoned or out of attempts); whether it was there.
    pub fn take_ticket(&self, id_hash: &[u8; 32]) -> bool {
        self.tickets.lock().ok().and_then(|mut t| t.remove(id_hash)).is_some()
    }

    /// Drop tickets and codes that have ended by `now` (a periodic sweep;
    /// inserts make room too).
    pub fn expire(&self, now: u64) {
        if let Ok(mut t) = self.tickets.lock() {
            t.expire(now);
        }
        if let Ok(mut c) = self.codes.lock() {
            c.retain(|_, (_, forget)| *forget > now);
        }
    }

    /// Hold a new code; false when full.
    pub fn put_code(&self, code_hash: [u8; 32], grant: CodeGrant, now: u64) -> bool {
        let Ok(mut c) = self.codes.lock() else { return false };
        if !make_room(&mut c, now, |(_, forget)| *forget) {
            return false;
        }
        let forget = grant.expires + REMEMBER_REDEEMED;
        c.insert(code_hash, (CodeState::Fresh(Box::new(grant)), forget));
        true
    }

    /// Present a code: exactly one presentation ever gets
    /// [`CodeTake::Fresh`]; every later one is a reuse.
    pub fn take_code(&self, code_hash: &[u8; 32], now: u64) -> CodeTake {
        let Ok(mut c) = self.codes.lock() else { return CodeTake::Unknown };
        let Some((state, forget)) = c.get_mut(code_hash) else { return CodeTake::Unknown };
        if *forget <= now {
            c.remove(code_hash);
            return CodeTake::Unknown;
        }
        match std::mem::replace(state, CodeState::Redeeming) {
            CodeState::Fresh(g) => CodeTake::Fresh(g),
            CodeState::Redeeming | CodeState::ReusedWhileRedeeming => {
                *state = CodeState::ReusedWhileRedeeming;
                CodeTake::Reused(None)
            }
            CodeState::Redeemed(r) => {
                *state = CodeState::Redeemed(r.clone());
                CodeTake::Reused(Some(r))
            }
        }
    }

    /// Forget a code whose redemption failed: it cannot be tried again.
    pub fn forget_code(&self, code_hash: &[u8; 32]) {
        if let Ok(mut c) = self.codes.lock() {
            c.remove(code_hash);
        }
    }

    /// Record what redeeming a code produced. Returns it back if the code
    /// was presented again meanwhile (the caller revokes it at once).
    pub fn redeemed(&self, code_hash: &[u8; 32], what: Redeemed) -> Option<Redeemed> {
        let Ok(mut c) = self.codes.lock() else { return Some(what) };
        let Some((state, _)) = c.get_mut(code_hash) else { return Some(what) };
        let reused = matches!(state, CodeState::ReusedWhileRedeeming);
        *state = CodeState::Redeemed(what.clone());
        reused.then_some(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_issuer::authorize::AuthorizationRequest;

    fn grant(expires: u64) -> CodeGrant {
        CodeGrant {
            request: AuthorizationRequest {
                client_id: "web".into(),
                redirect_uri: "https://a.example/cb".into(),
                redirect_uri_sent: true,
                scopes: Default::default(),
                audiences: vec![],
                state: "s".into(),
                nonce: None,
                code_challenge: "c".into(),
            },
            subject: "alice".into(),
            auth_time: 0,
            expires,
        }
    }

    #[test]
    fn a_code_is_fresh_once_and_reuse_finds_what_it_produced() {
        let f = Flows::default();
        f.put_code([1; 32], grant(60), 0);
        assert!(matches!(f.take_code(&[1; 32], 1), CodeTake::Fresh(_)));
        assert_eq!(f.take_code(&[1; 32], 2), CodeTake::Reused(None), "reused while being redeemed");
        let made = Redeemed { access: ("j".into(), 300), family: Some("f".into()) };
        assert_eq!(f.redeemed(&[1; 32], made.clone()), Some(made.clone()), "the redemption learns of the reuse");
        assert_eq!(f.take_code(&[1; 32], 3), CodeTake::Reused(Some(made.clone())));
        assert_eq!(f.take_code(&[1; 32], 3), CodeTake::Reused(Some(made)), "every later reuse too");
        assert_eq!(f.take_code(&[2; 32], 3), CodeTake::Unknown);
        assert_eq!(f.take_code(&[1; 32], 60 + REMEMBER_REDEEMED), CodeTake::Unknown, "forgotten in the end");
    }

    fn ticket(expires: u64) -> Ticket {
        Ticket { request: grant(0).request, cookie_hash: [7; 32], expires, attempts: 0 }
    }

    fn src(ip: &str) -> Source {
        Source::of(ip.parse().unwrap())
    }

    #[test]
    fn tickets_need_their_cookie_and_allow_max_attempts_reserved_before_the_check() {
        let f = Flows::default();
        assert!(f.put_ticket([1; 32], ticket(100), src("192.0.2.1"), 0));
        assert!(f.ticket(&[1; 32], &[7; 32], 10).is_some());
        assert!(f.ticket(&[1; 32], &[8; 32], 10).is_none(), "another browser's cookie");
        assert!(f.ticket(&[1; 32], &[7; 32], 100).is_none(), "expired");
        assert!(matches!(f.reserve_attempt(&[1; 32], &[8; 32], 10), Attempt::Unknown));
        for i in 1..=MAX_ATTEMPTS {
            match f.reserve_attempt(&[1; 32], &[7; 32], 10) {
                Attempt::Reserved(_, last) => assert_eq!(last, i == MAX_ATTEMPTS),
                other => panic!("attempt {i}: {other:?}"),
            }
        }
        // Reserved before any check finished: a sixth is refused at once.
        assert!(matches!(f.reserve_attempt(&[1; 32], &[7; 32], 10), Attempt::Exhausted));
        assert!(f.take_ticket(&[1; 32]));
        assert!(matches!(f.reserve_attempt(&[1; 32], &[7; 32], 10), Attempt::Unknown));
    }

    #[test]
    fn one_source_holds_a_few_tickets_and_a_full_table_gives_up_its_oldest() {
        let f = Flows::default();
        // A flood from one address keeps only its newest few.
        for i in 0..1_000u32 {
            let mut id = [0; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            f.put_ticket(id, ticket(1_000), src("198.51.100.7"), 1);
        }
        assert_eq!(f.tickets(), TICKETS_PER_SOURCE);
        // A whole IPv6 /64 is one source.
        for i in 0..100u32 {
            let mut id = [1; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            f.put_ticket(id, ticket(1_000), src(&format!("2001:db8::{i:x}")), 1);
        }
        assert_eq!(f.tickets(), 2 * TICKETS_PER_SOURCE);
        // A real user's ticket is there.
        f.put_ticket([9; 32], ticket(1_000), src("203.0.113.5"), 1);
        assert!(f.ticket(&[9; 32], &[7; 32], 2).is_some());
        // Expired ones go first.
        f.put_ticket([8; 32], ticket(5_000), src("203.0.113.6"), 1_000);
        assert_eq!(f.tickets(), 1);
    }

    #[test]
    fn a_full_table_evicts_the_oldest_ticket_instead_of_refusing() {
        let f = Flows::default();
        for i in 0..MAX_PENDING as u32 {
            let mut id = [0; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            assert!(f.put_ticket(id, ticket(1_000), Source::of(ip.into()), 1));
        }
        assert_eq!(f.tickets(), MAX_PENDING);
        assert!(f.put_ticket([0xff; 32], ticket(1_000), src("203.0.113.5"), 1));
        assert_eq!(f.tickets(), MAX_PENDING);
        assert!(f.ticket(&[0xff; 32], &[7; 32], 2).is_some(), "the newest is held");
        assert!(f.ticket(&[0; 32], &[7; 32], 2).is_none(), "the oldest gave way");
    }
}
