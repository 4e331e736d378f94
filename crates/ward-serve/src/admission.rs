//! Who may open a connection: blocked addresses, per-address caps, before
//! any TLS work.

use std::net::IpAddr;
use std::sync::Arc;

use ward_core::ReasonCode;
use ward_detect::conns::{ConnectionCaps, ConnectionSlot};

/// What a listener does with an address detection (or an operator) blocked.
#[derive(Debug, Clone)]
pub enum BlockedAddresses {
    /// Close its connections at accept (the gateway: nothing to serve it).
    Refuse,
    /// Let it hold at most this many connections at once (the control
    /// plane: an operator whose own address was blocked must still reach
    /// the admin API to lift the block; its router refuses everything else
    /// from a blocked address).
    Admit(u32),
}

/// A listener's admission rules.
#[derive(Debug)]
pub struct Admission {
    detector: Option<Arc<ward_detect::Detector>>,
    caps: Option<Arc<ConnectionCaps>>,
    blocked: Option<Arc<ConnectionCaps>>,
}

/// An admitted connection's slots; dropping it frees them.
#[derive(Debug)]
pub struct Admitted {
    _cap: Option<ConnectionSlot>,
    _blocked: Option<ConnectionSlot>,
    allowlisted: bool,
}

impl Admitted {
    /// Whether the address is on detection's allowlist (no caps, no limit).
    #[must_use]
    pub fn allowlisted(&self) -> bool {
        self.allowlisted
    }
}

impl Admission {
    /// Addresses may hold `per_ip` connections each (0: no cap; allowlisted
    /// addresses have none); blocked addresses are handled as `blocked` says.
    #[must_use]
    pub fn new(detector: Option<Arc<ward_detect::Detector>>, per_ip: u32, blocked: &BlockedAddresses) -> Self {
        let blocked = match blocked {
            BlockedAddresses::Refuse => None,
            BlockedAddresses::Admit(n) => Some(ConnectionCaps::new(*n)),
        };
        Self { detector, caps: (per_ip > 0).then(|| ConnectionCaps::new(per_ip)), blocked }
    }

    /// Admit a new connection from `ip`, or say why not.
    ///
    /// # Errors
    /// [`ReasonCode::AddressBlocked`] or [`ReasonCode::ConnectionLimited`]
    /// (the address holds its share already).
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, ReasonCode> {
        let mut blocked_slot = None;
        if self.detector.as_ref().is_some_and(|d| d.ip_blocked(ip)) {
            match &self.blocked {
                None => return Err(ReasonCode::AddressBlocked),
                Some(caps) => blocked_slot = Some(caps.admit(ip).ok_or(ReasonCode::AddressBlocked)?),
            }
        }
        let allowlisted = self.detector.as_ref().is_some_and(|d| d.allowlist().allows_ip(ip));
        let cap = match &self.caps {
            Some(caps) if !allowlisted => Some(caps.admit(ip).ok_or(ReasonCode::ConnectionLimited)?),
            _ => None,
        };
        Ok(Admitted { _cap: cap, _blocked: blocked_slot, allowlisted })
    }

    /// Connections `ip` holds now (under the per-address cap).
    #[must_use]
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.caps.as_ref().map_or(0, |c| c.open(ip))
    }

    /// Connections refused because their address held its share.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.caps.as_ref().map_or(0, |c| c.refused.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_frees_on_drop() {
        let a = Admission::new(None, 2, &BlockedAddresses::Refuse);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let one = a.admit(ip);
        let two = a.admit(ip);
        assert!(one.is_ok() && two.is_ok());
        assert_eq!(a.admit(ip).err(), Some(ReasonCode::ConnectionLimited));
        assert!(a.admit([10, 0, 0, 2].into()).is_ok(), "another address has its own share");
        drop(one);
        assert!(a.admit(ip).is_ok());
        assert_eq!(a.refused(), 1);
    }
}
