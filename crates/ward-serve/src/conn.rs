//! What the front door learned about a connection, handed to every request
//! served on it: addresses, the TLS server name, and the client
//! certificate the handshake verified.

use std::net::SocketAddr;

/// One accepted connection, as the listener's service sees it.
#[derive(Debug)]
pub struct Conn {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: Option<SocketAddr>,
    /// The TLS server name the client asked for (SNI).
    pub sni: Option<Box<str>>,
    /// Whether the connection is TLS (false for a plaintext listener, or
    /// plain HTTP a PERMISSIVE listener accepted).
    pub tls: bool,
    /// The client certificate the handshake verified, if one was presented.
    pub cert: Option<ClientCert>,
}

/// The verified client certificate of a connection: what requests on it
/// are judged by, computed once.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// Its SPIFFE ID (the listener's verifier accepted exactly one URI SAN).
    pub spiffe_id: Option<ward_core::SpiffeId>,
    /// Its SHA-256 thumbprint (RFC 8705 `x5t#S256`), for certificate-bound tokens.
    pub x5t: String,
    /// Its serial (hex); `None` if it could not be read.
    pub serial: Option<String>,
    /// Its public key (SubjectPublicKeyInfo, base64).
    pub spki: Option<String>,
    /// Its `notAfter` (seconds since the epoch); `i64::MIN` when unreadable,
    /// so that it counts as expired.
    pub not_after: i64,
}

impl ClientCert {
    /// Read what requests are judged by from the leaf certificate (DER).
    #[must_use]
    pub fn from_der(leaf: &[u8]) -> Self {
        Self {
            spiffe_id: ward_pki::verify::spiffe_id_of(leaf).ok(),
            x5t: ward_pki::verify::x5t_s256(leaf),
            serial: ward_pki::verify::serial_of(leaf).ok(),
            spki: ward_pki::verify::spki_of(leaf).ok(),
            not_after: ward_pki::verify::validity_of(leaf).map_or(i64::MIN, |(_, not_after)| not_after),
        }
    }

    /// Why the certificate may no longer be used, if it may not: expired,
    /// its serial unreadable, or denied (by serial or SPIFFE ID) since the
    /// connection was opened. Every request of a kept-alive connection is
    /// judged like a new connection; `denied(namespace, value)` asks the
    /// deny-list (`ward_core::X509_SERIAL`, `ward_core::SPIFFE_ID`).
    pub fn refusal(&self, denied: impl Fn(&str, &str) -> bool, now: i64) -> Option<&'static str> {
        if now > self.not_after {
            return Some("certificate expired");
        }
        let Some(serial) = &self.serial else {
            // The verifier accepted a certificate whose serial we cannot
            // read: it cannot be checked against the deny-list.
            return Some("certificate serial unreadable");
        };
        if denied(ward_core::X509_SERIAL, serial) {
            return Some("certificate denied by serial");
        }
        if self.spiffe_id.as_ref().is_some_and(|id| denied(ward_core::SPIFFE_ID, id.as_str())) {
            return Some("certificate denied by SPIFFE ID");
        }
        None
    }
}

/// Seconds since the epoch, for [`ClientCert::refusal`].
#[must_use]
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(i64::MAX, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(serial: Option<&str>, id: Option<&str>, not_after: i64) -> ClientCert {
        ClientCert {
            spiffe_id: id.and_then(|i| ward_core::SpiffeId::parse(i).ok()),
            x5t: "t".into(),
            serial: serial.map(str::to_owned),
            spki: None,
            not_after,
        }
    }

    #[test]
    fn refusals_follow_expiry_deny_list_and_unreadable_serials() {
        let nobody = |_: &str, _: &str| false;
        assert_eq!(cert(Some("0a"), None, 100).refusal(nobody, 100), None);
        assert_eq!(cert(Some("0a"), None, 100).refusal(nobody, 101), Some("certificate expired"));
        assert_eq!(cert(None, None, 100).refusal(nobody, 1), Some("certificate serial unreadable"));
        let serial = |ns: &str, v: &str| ns == ward_core::X509_SERIAL && v == "0a";
        assert_eq!(cert(Some("0a"), None, 100).refusal(serial, 1), Some("certificate denied by serial"));
        let id = |ns: &str, v: &str| ns == ward_core::SPIFFE_ID && v == "spiffe://td/w";
        assert_eq!(
            cert(Some("0b"), Some("spiffe://td/w"), 100).refusal(id, 1),
            Some("certificate denied by SPIFFE ID")
        );
        assert_eq!(cert(Some("0b"), Some("spiffe://td/x"), 100).refusal(id, 1), None);
    }
}
