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
    /// login name, a client id), when known.
    pub principal: Option<&'a str>,
    /// The normalised request path.
    pub path: &'a str,
    /// A privileged action, if this was one.
    pub privileged: Option<Privileged<'a>>,
}

impl<'a> Event<'a> {
    /// An event with no principal and nothing privileged.
    #[must_use]
    pub const fn new(source: Source, reason: ReasonCode, status: u16, ip: IpAddr, path: &'a str) -> Self {
        Self { source, reason, status, ip, principal: None, path, privileged: None }
    }

    /// The same event about `principal`.
    #[must_use]
    pub const fn principal(mut self, principal: Option<&'a str>) -> Self {
        self.principal = principal;
        self
    }

    /// The same event marked privileged.
    #[must_use]
    pub const fn privileged(mut self, what: Privileged<'a>) -> Self {
        self.privileged = Some(what);
        self
    }
}
