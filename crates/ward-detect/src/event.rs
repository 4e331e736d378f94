//! What detectors watch: one event per decision the gateway or the token
//! service made, built where the audit record is written.

use std::net::IpAddr;

use ward_core::ReasonCode;

/// Which part of Ward made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The gateway (data path).
    Gateway,
    /// The token service and control plane (token endpoint, login page, admin API).
    TokenService,
}

impl Source {
    /// Names accepted in configuration.
    pub const NAMES: [(&'static str, Self); 2] = [("gateway", Self::Gateway), ("token_service", Self::TokenService)];
}

/// Something privileged happened (privilege-escalation signals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileged<'a> {
    /// Roles were granted to the event's principal (a user or client was
    /// created or changed with them).
    RoleGrant(&'a [String]),
    /// An admin API or an admin route was used successfully.
    AdminUse,
    /// A token exchange issued the event's principal a token acting for a
    /// subject who holds these roles.
    ActsFor(&'a [String]),
}

/// One decision.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Who decided.
    pub source: Source,
    /// Why (the audit record's reason).
    pub reason: ReasonCode,
    /// The HTTP status the client got.
    pub status: u16,
    /// The client's address.
    pub ip: IpAddr,
    /// The principal the request was made as or about (a token's `sub`, a
    /// login name, a client id), when known — and verified, or at least
    /// existing: an event about a name nobody holds must not carry it, or
    /// anyone could have any account blocked.
    pub principal: Option<&'a str>,
    /// The name a failed login or client authentication tried, whether or
    /// not anyone holds it: counted only as one of the distinct names an
    /// address tries (password spraying blocks the address), never as a
    /// principal.
    pub claimed: Option<&'a str>,
    /// Whose namespace the principal is in: the issuer that vouched for
    /// it (a token's `iss`, the token service's own issuer for its users
    /// and clients). Blocks of a principal name it, so they hold for that
    /// issuer's principal only.
    pub issuer: Option<&'a str>,
    /// The normalised request path.
    pub path: &'a str,
    /// A privileged action, if this was one.
    pub privileged: Option<Privileged<'a>>,
}

impl<'a> Event<'a> {
    /// An event with no principal and nothing privileged.
    #[must_use]
    pub const fn new(source: Source, reason: ReasonCode, status: u16, ip: IpAddr, path: &'a str) -> Self {
        Self { source, reason, status, ip, principal: None, claimed: None, issuer: None, path, privileged: None }
    }

    /// The same event about `principal`.
    #[must_use]
    pub const fn principal(mut self, principal: Option<&'a str>) -> Self {
        self.principal = principal;
        self
    }

    /// The same event with the name it tried (see [`Event::claimed`]).
    #[must_use]
    pub const fn claimed(mut self, name: Option<&'a str>) -> Self {
        self.claimed = name;
        self
    }

    /// The same event with its principal in `issuer`'s namespace.
    #[must_use]
    pub const fn issuer(mut self, issuer: Option<&'a str>) -> Self {
        self.issuer = issuer;
        self
    }

    /// The principal as blocks name it: `ISSUER#NAME`, or the bare name
    /// when no issuer is known.
    #[must_use]
    pub fn principal_target(&self) -> Option<String> {
        self.principal.map(|p| qualified(self.issuer, p))
    }

    /// The same event marked privileged.
    #[must_use]
    pub const fn privileged(mut self, what: Privileged<'a>) -> Self {
        self.privileged = Some(what);
        self
    }
}

/// A principal in its namespace, as blocks name it: `ISSUER#NAME` (an
/// issuer identifier has no fragment, RFC 8414 §2, so the first `#` ends
/// it), or `NAME` alone when no namespace is known.
#[must_use]
pub fn qualified(issuer: Option<&str>, name: &str) -> String {
    match issuer {
        Some(iss) => format!("{iss}#{name}"),
        None => name.to_owned(),
    }
}
