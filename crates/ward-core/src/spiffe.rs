//! SPIFFE IDs (SPIFFE-ID.md §2): `spiffe://<trust domain>/<path>`.
//!
//! Parsing is strict, as the specification's MUSTs are: the `spiffe`
//! scheme in lower case; a non-empty trust domain of `[a-z0-9._-]` (so no
//! user info, no port, no IPv6 literal, no upper case, no percent-encoding),
//! at most 255 bytes; a path of non-empty segments of `[a-zA-Z0-9._-]`,
//! none `.` or `..`, no trailing `/`; no query or fragment; 2048 bytes in
//! all. Anything else is refused, never normalised: two spellings of one
//! identity would let a policy written for one miss the other.

use std::fmt;

/// Longest SPIFFE ID (SPIFFE-ID.md §2.3).
pub const MAX_ID_BYTES: usize = 2048;
/// Longest trust domain name (RFC 3986's host limit, §2.3).
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// Not `spiffe://…` (other scheme, or the scheme not in lower case).
    #[error("a SPIFFE ID starts with spiffe://")]
    Scheme,
    /// No trust domain.
    #[error("the trust domain is empty")]
    EmptyTrustDomain,
    /// A trust domain character outside `[a-z0-9._-]` (upper case, `@`, `:`, `%`, `[`…).
    #[error("the trust domain may hold only a-z 0-9 . _ - (no user info, port or upper case)")]
    TrustDomainChar,
    /// A path segment character outside `[a-zA-Z0-9._-]` (including `%`, `?`, `#`).
    #[error("path segments may hold only a-z A-Z 0-9 . _ - (no percent-encoding, query or fragment)")]
    PathChar,
    /// An empty segment (`//`) or a trailing `/`.
    #[error("the path has an empty segment or a trailing /")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("the path has a . or .. segment")]
    DotSegment,
    /// Longer than [`MAX_ID_BYTES`], or a trust domain longer than [`MAX_TRUST_DOMAIN_BYTES`].
    #[error("too long")]
    TooLong,
}

/// A valid SPIFFE ID.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    id: String,
    /// Where the path starts (the end of the trust domain).
    path_at: usize,
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

fn trust_domain_ok(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(SpiffeIdError::TooLong);
    }
    if !td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) {
        return Err(SpiffeIdError::TrustDomainChar);
    }
    Ok(())
}

impl SpiffeId {
    /// Parse and validate `s`.
    ///
    /// # Errors
    /// [`SpiffeIdError`] naming the first rule `s` breaks.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::Scheme)?;
        if s.len() > MAX_ID_BYTES {
            return Err(SpiffeIdError::TooLong);
        }
        let (td, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        trust_domain_ok(td)?;
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                match segment {
                    "" => return Err(SpiffeIdError::EmptySegment),
                    "." | ".." => return Err(SpiffeIdError::DotSegment),
                    seg if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) => {
                        return Err(SpiffeIdError::PathChar);
                    }
                    _ => {}
                }
            }
        }
        Ok(Self { id: s.to_owned(), path_at: SCHEME.len() + td.len() })
    }

    /// The ID of trust domain `td` itself (no path), e.g. a CA's.
    ///
    /// # Errors
    /// [`SpiffeIdError`] for a bad trust domain name.
    pub fn of_trust_domain(td: &str) -> Result<Self, SpiffeIdError> {
        trust_domain_ok(td)?;
        Ok(Self { id: format!("{SCHEME}{td}"), path_at: SCHEME.len() + td.len() })
    }

    /// The whole ID.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain name.
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.path_at]
    }

    /// The path (`""` or `/a/b`).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.id[self.path_at..]
    }

    /// Namespace and service account, when the path is Istio's
    /// `/ns/<namespace>/sa/<service account>`.
    #[must_use]
    pub fn kubernetes(&self) -> Option<(&str, &str)> {
        let mut parts = self.path().strip_prefix('/')?.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_examples_parse() {
        // SPIFFE-ID.md §2.1.1 and §2.2.
        for (id, td, path) in [
            ("spiffe://staging.example.com/payments/mysql", "staging.example.com", "/payments/mysql"),
            ("spiffe://staging.example.com/payments/web-fe", "staging.example.com", "/payments/web-fe"),
            ("spiffe://k8s-west.example.com/ns/staging/sa/default", "k8s-west.example.com", "/ns/staging/sa/default"),
            (
                "spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453",
                "example.com",
                "/9eebccd2-12bf-40a6-b262-65fe0487d453",
            ),
            ("spiffe://trust_domain_name.example.com", "trust_domain_name.example.com", ""),
            ("spiffe://trust-domain-name/path", "trust-domain-name", "/path"),
            // Dotted quads are valid trust domain names (§2.1), and treated like any other.
            ("spiffe://192.168.1.1/x", "192.168.1.1", "/x"),
            // Paths are case-sensitive and may use upper case (§2.2, §2.4).
            ("spiffe://example.com/Payments/MySQL_1.2", "example.com", "/Payments/MySQL_1.2"),
        ] {
            let parsed = SpiffeId::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!((parsed.as_str(), parsed.trust_domain(), parsed.path()), (id, td, path));
        }
        let k8s = SpiffeId::parse("spiffe://k8s-west.example.com/ns/staging/sa/default").unwrap();
        assert_eq!(k8s.kubernetes(), Some(("staging", "default")));
        assert_eq!(SpiffeId::parse("spiffe://e.com/ns/a/sa/b/c").unwrap().kubernetes(), None);
        assert_eq!(SpiffeId::of_trust_domain("example.org").unwrap().as_str(), "spiffe://example.org");
    }

    #[test]
    fn what_the_specification_forbids_is_refused() {
        use SpiffeIdError as E;
        let long_path = format!("spiffe://example.com/{}", "a".repeat(MAX_ID_BYTES));
        let long_td = format!("spiffe://{}/x", "a".repeat(MAX_TRUST_DOMAIN_BYTES + 1));
        for (id, why) in [
            ("", E::Scheme),
            ("https://example.com/x", E::Scheme),
            ("SPIFFE://example.com/x", E::Scheme),
            ("spiffe:/example.com/x", E::Scheme),
            ("spiffe://", E::EmptyTrustDomain),
            ("spiffe:///path", E::EmptyTrustDomain),
            ("spiffe://Example.com/x", E::TrustDomainChar),
            ("spiffe://user@example.com/x", E::TrustDomainChar),
            ("spiffe://user:pw@example.com/x", E::TrustDomainChar),
            ("spiffe://example.com:8443/x", E::TrustDomainChar),
            ("spiffe://[::1]/x", E::TrustDomainChar),
            ("spiffe://exa%6Dple.com/x", E::TrustDomainChar),
            ("spiffe://example.com?q", E::TrustDomainChar),
            ("spiffe://example.com/x/", E::EmptySegment),
            ("spiffe://example.com/", E::EmptySegment),
            ("spiffe://example.com//x", E::EmptySegment),
            ("spiffe://example.com/./x", E::DotSegment),
            ("spiffe://example.com/a/../x", E::DotSegment),
            ("spiffe://example.com/x?query", E::PathChar),
            ("spiffe://example.com/x#fragment", E::PathChar),
            ("spiffe://example.com/%41", E::PathChar),
            ("spiffe://example.com/a b", E::PathChar),
            ("spiffe://example.com/é", E::PathChar),
            (long_path.as_str(), E::TooLong),
            (long_td.as_str(), E::TooLong),
        ] {
            assert_eq!(SpiffeId::parse(id), Err(why), "{id:?}");
        }
        assert_eq!(SpiffeId::of_trust_domain("Bad"), Err(E::TrustDomainChar));
    }
}
