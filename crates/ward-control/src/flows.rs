//! Short-lived state of the authorization-code flow, kept in memory: login
//! tickets (an authorization request waiting for the user to log in) and
//! authorization codes (waiting to be redeemed). Both live seconds to
//! minutes; after a restart they are gone and the user starts again, which
//! fails closed.
//!
//! Both are bounded: a full table first drops expired entries, then refuses
//! new ones (`temporarily_unavailable`) rather than growing without limit.

use std::collections::HashMap;
use std::sync::Mutex;

use ward_issuer::authorize::{AuthorizationRequest, CodeGrant};

/// Most login tickets or codes held at once.
pub const MAX_PENDING: usize = 100_000;

/// How long the login page waits for the user (seconds).
pub const TICKET_TTL: u64 = 600;

/// Wrong passwords one login page accepts before the user must start over.
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
    /// Failed attempts so far.
    pub failures: u32,
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
    tickets: Mutex<HashMap<[u8; 32], Ticket>>,
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
    /// Hold `ticket` under the hash of its id; false when full.
    pub fn put_ticket(&self, id_hash: [u8; 32], ticket: Ticket, now: u64) -> bool {
        let Ok(mut t) = self.tickets.lock() else { return false };
        if !make_room(&mut t, now, |x| x.expires) {
            return false;
        }
        t.insert(id_hash, ticket);
        true
    }

    /// The live ticket `id_hash`, if the presented cookie hashes to its cookie hash.
    pub fn ticket(&self, id_hash: &[u8; 32], cookie_hash: &[u8; 32], now: u64) -> Option<Ticket> {
        let t = self.tickets.lock().ok()?;
        let ticket = t.get(id_hash)?;
        (ticket.expires > now && ward_crypto::constant_time_eq(&ticket.cookie_hash, cookie_hash))
            .then(|| ticket.clone())
    }

    /// Count a failed login on a ticket; returns whether it may be tried
    /// again (the ticket is dropped after [`MAX_ATTEMPTS`]).
    pub fn fail_ticket(&self, id_hash: &[u8; 32]) -> bool {
        let Ok(mut t) = self.tickets.lock() else { return false };
        let Some(ticket) = t.get_mut(id_hash) else { return false };
        ticket.failures += 1;
        if ticket.failures >= MAX_ATTEMPTS {
            t.remove(id_hash);
            return false;
        }
        true
    }

    /// Drop a ticket (used or abandoned); whether it was there.
    pub fn take_ticket(&self, id_hash: &[u8; 32]) -> bool {
        self.tickets.lock().ok().and_then(|mut t| t.remove(id_hash)).is_some()
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

    #[test]
    fn tickets_need_their_cookie_and_burn_after_too_many_failures() {
        let f = Flows::default();
        let t = Ticket { request: grant(0).request, cookie_hash: [7; 32], expires: 100, failures: 0 };
        assert!(f.put_ticket([1; 32], t, 0));
        assert!(f.ticket(&[1; 32], &[7; 32], 10).is_some());
        assert!(f.ticket(&[1; 32], &[8; 32], 10).is_none(), "another browser's cookie");
        assert!(f.ticket(&[1; 32], &[7; 32], 100).is_none(), "expired");
        for _ in 1..MAX_ATTEMPTS {
            assert!(f.fail_ticket(&[1; 32]));
        }
        assert!(!f.fail_ticket(&[1; 32]));
        assert!(f.ticket(&[1; 32], &[7; 32], 10).is_none(), "burnt");
    }
}
