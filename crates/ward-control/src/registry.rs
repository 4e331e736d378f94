//! The secure service registry: a workload registers its service (addresses,
//! SPIFFE ID, public key) only over mTLS with an SVID allowed to register
//! that name; an entry lives `ttl` seconds unless renewed; a lookup is
//! answered only to SVIDs allowed to read it. Entries are JWS signed by the
//! control plane's current signing key (verifiable with its JWKS) with the
//! explicit type `ward-registry+jwt`, so an entry never passes for an access
//! token. Entries are held in memory: after a restart, services register
//! again at their next renewal.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use ward_core::SpiffeId;

/// The JWS `typ` of registry entries.
pub const ENTRY_TYPE: &str = "ward-registry+jwt";
/// Longest registration (seconds) without renewal.
pub const MAX_TTL: u64 = 3600;

/// Who may register and look up one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The service name.
    pub name: String,
    /// SPIFFE IDs allowed to register it.
    pub writers: Vec<String>,
    /// SPIFFE IDs allowed to look it up; `*` is any SVID of the trust domain.
    pub readers: Vec<String>,
}

/// Why a registry call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No such service in the configuration, or no live entry.
    #[error("no such service")]
    NotFound,
    /// The caller's SVID may not do this.
    #[error("not allowed")]
    Forbidden,
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// The registry.
#[derive(Debug, Default)]
pub struct Registry {
    rules: HashMap<String, Rule>,
    /// Name → (signed entry, expiry).
    entries: Mutex<HashMap<String, (String, u64)>>,
}

impl Registry {
    /// A registry for `rules`.
    #[must_use]
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules: rules.into_iter().map(|r| (r.name.clone(), r)).collect(), entries: Mutex::default() }
    }

    /// The claims of a new entry for `name`, if `caller` may register it.
    ///
    /// # Errors
    /// [`RegistryError`] for an unknown service, another writer, or bad addresses or ttl.
    pub fn entry_claims(
        &self,
        name: &str,
        caller: &SpiffeId,
        public_key: &str,
        addresses: &[String],
        ttl: u64,
        now: u64,
    ) -> Result<ward_core::Claims, RegistryError> {
        let rule = self.rules.get(name).ok_or(RegistryError::NotFound)?;
        if !rule.writers.iter().any(|w| w == caller.as_str()) {
            return Err(RegistryError::Forbidden);
        }
        if ttl == 0 || ttl > MAX_TTL {
            return Err(RegistryError::Invalid(format!("ttl must be 1..={MAX_TTL} seconds")));
        }
        if addresses.is_empty()
            || addresses.len() > 64
            || addresses.iter().any(|a| a.parse::<std::net::SocketAddr>().is_err() && !host_port(a))
        {
            return Err(RegistryError::Invalid("addresses: 1-64 of host:port".into()));
        }
        let Value::Object(claims) = json!({
            "sub": name,
            "spiffe_id": caller.as_str(),
            "public_key": public_key,
            "addresses": addresses,
            "iat": now,
            "exp": now + ttl,
        }) else {
            return Err(RegistryError::Invalid("entry".into()));
        };
        Ok(claims)
    }

    /// Keep the signed entry of `name` until `expires`.
    pub fn store(&self, name: &str, signed: String, expires: u64) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert(name.to_owned(), (signed, expires));
        }
    }

    /// The live signed entry of `name`, if `caller` may read it.
    ///
    /// # Errors
    /// [`RegistryError::Forbidden`] or [`RegistryError::NotFound`].
    pub fn lookup(&self, name: &str, caller: &SpiffeId, now: u64) -> Result<String, RegistryError> {
        let rule = self.rules.get(name).ok_or(RegistryError::NotFound)?;
        if !rule.readers.iter().any(|r| r == "*" || r == caller.as_str()) {
            return Err(RegistryError::Forbidden);
        }
        let mut entries = self.entries.lock().map_err(|_| RegistryError::NotFound)?;
        match entries.get(name) {
            Some((signed, expires)) if *expires > now => Ok(signed.clone()),
            Some(_) => {
                entries.remove(name);
                Err(RegistryError::NotFound)
            }
            None => Err(RegistryError::NotFound),
        }
    }

    /// Remove `name`'s entry, if `caller` may register it.
    ///
    /// # Errors
    /// [`RegistryError::Forbidden`] or [`RegistryError::NotFound`].
    pub fn remove(&self, name: &str, caller: &SpiffeId) -> Result<(), RegistryError> {
        let rule = self.rules.get(name).ok_or(RegistryError::NotFound)?;
        if !rule.writers.iter().any(|w| w == caller.as_str()) {
            return Err(RegistryError::Forbidden);
        }
        self.entries
            .lock()
            .map_err(|_| RegistryError::NotFound)?
            .remove(name)
            .map(|_| ())
            .ok_or(RegistryError::NotFound)
    }
}

/// A registry entry (as `GET /registry/{name}` returns it) checked against
/// the control plane's JWK set: signed by a published key, of type
/// `ward-registry+jwt`, issued by `issuer`, not expired at `now`. Its claims.
///
/// # Errors
/// [`RegistryError::Invalid`] naming what did not hold.
pub fn verify_entry(entry: &str, jwks: &str, issuer: &str, now: u64) -> Result<ward_core::Claims, RegistryError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bad = |why: &str| RegistryError::Invalid(format!("registry entry: {why}"));
    let (input, sig) = entry.trim().rsplit_once('.').ok_or_else(|| bad("not a JWS"))?;
    let (header, payload) = input.split_once('.').ok_or_else(|| bad("not a JWS"))?;
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| bad("not base64url"));
    let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| bad("header"))?;
    if header["typ"] != ENTRY_TYPE {
        return Err(bad("not a registry entry (typ)"));
    }
    let alg = header["alg"].as_str().and_then(ward_issuer::keys::issued_algorithm).ok_or_else(|| bad("algorithm"))?;
    let keys = ward_authn::JwkSet::parse(jwks.as_bytes())
        .and_then(|s| s.verifying_keys())
        .map_err(|e| bad(&format!("JWK set: {e}")))?;
    let (_, key) =
        keys.iter().find(|(kid, _)| kid.as_deref() == header["kid"].as_str()).ok_or_else(|| bad("unknown key"))?;
    if !ward_authn::verify_signature(alg, key, input.as_bytes(), &decode(sig)?) {
        return Err(bad("bad signature"));
    }
    let claims: ward_core::Claims = serde_json::from_slice(&decode(payload)?).map_err(|_| bad("claims"))?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(bad("another issuer"));
    }
    if claims.get("exp").and_then(Value::as_u64).is_none_or(|e| e <= now) {
        return Err(bad("expired"));
    }
    Ok(claims)
}

/// `host:port` with a DNS-like host.
fn host_port(a: &str) -> bool {
    a.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty()
            && h.len() <= 253
            && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
            && p.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(vec![Rule {
            name: "orders".into(),
            writers: vec!["spiffe://td/orders".into()],
            readers: vec!["spiffe://td/cart".into()],
        }])
    }

    #[test]
    fn only_writers_register_only_readers_look_up_and_entries_expire() {
        let r = registry();
        let (orders, cart, other) = (
            SpiffeId::parse("spiffe://td/orders").unwrap(),
            SpiffeId::parse("spiffe://td/cart").unwrap(),
            SpiffeId::parse("spiffe://td/other").unwrap(),
        );
        let addrs = vec!["10.0.0.7:8443".to_owned(), "orders.internal:443".to_owned()];
        let c = r.entry_claims("orders", &orders, "pk", &addrs, 60, 100).unwrap();
        assert_eq!((c["sub"].as_str(), c["exp"].as_u64()), (Some("orders"), Some(160)));
        assert_eq!(r.entry_claims("orders", &other, "pk", &addrs, 60, 100), Err(RegistryError::Forbidden));
        assert_eq!(r.entry_claims("payments", &orders, "pk", &addrs, 60, 100), Err(RegistryError::NotFound));
        assert!(r.entry_claims("orders", &orders, "pk", &["no port".to_owned()], 60, 100).is_err());
        assert!(r.entry_claims("orders", &orders, "pk", &addrs, MAX_TTL + 1, 100).is_err());
        r.store("orders", "signed".into(), 160);
        assert_eq!(r.lookup("orders", &cart, 150).as_deref(), Ok("signed"));
        assert_eq!(r.lookup("orders", &other, 150), Err(RegistryError::Forbidden));
        assert_eq!(r.lookup("orders", &cart, 160), Err(RegistryError::NotFound), "expired");
        r.store("orders", "signed".into(), 500);
        assert_eq!(r.remove("orders", &cart), Err(RegistryError::Forbidden));
        r.remove("orders", &orders).unwrap();
        assert_eq!(r.lookup("orders", &cart, 150), Err(RegistryError::NotFound));
    }
}
