//! What authorization sees of a request: Istio's attributes, borrowed from
//! the gateway (or from a JSON file for `ward policy explain` and `test`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ward_core::Claims;

/// Access to request headers by lower-case name. Several values of one
/// header are seen joined with `,`, as Envoy's header matcher sees them.
pub trait HeaderLookup {
    /// The value of header `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl HeaderLookup for BTreeMap<String, String> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| Cow::Borrowed(v.as_str()))
    }
}

/// No headers at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn header(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
}

/// The attributes of one request, named as Istio names them.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// `:method`.
    pub method: &'a str,
    /// The normalised path, without query (the one routing used).
    pub path: &'a str,
    /// `:authority` / `Host` as the client sent it (port included if sent).
    pub host: Option<&'a str>,
    /// The address the client connected to (`destination.ip`).
    pub destination_ip: Option<IpAddr>,
    /// The port the client connected to (`destination.port`, `ports`).
    pub destination_port: Option<u16>,
    /// The peer address of the connection (`source.ip`, `ipBlocks`).
    pub source_ip: Option<IpAddr>,
    /// The original client address through trusted proxies (`remote.ip`, `remoteIpBlocks`).
    pub remote_ip: Option<IpAddr>,
    /// The peer's verified mTLS identity without `spiffe://`
    /// (`cluster.local/ns/<ns>/sa/<sa>`); `None` without mTLS.
    pub source_principal: Option<&'a str>,
    /// `<iss>/<sub>` of the verified token; `None` without a token.
    pub request_principal: Option<&'a str>,
    /// The verified token's claims; `None` without a token.
    pub claims: Option<&'a Claims>,
    /// Request headers.
    pub headers: &'a dyn HeaderLookup,
    /// The TLS server name the client asked for.
    pub sni: Option<&'a str>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("host", &self.host)
            .field("request_principal", &self.request_principal)
            .finish_non_exhaustive()
    }
}

impl<'a> Request<'a> {
    /// A request with only method and path set; the rest absent.
    #[must_use]
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Self {
            method,
            path,
            host: None,
            destination_ip: None,
            destination_port: None,
            source_ip: None,
            remote_ip: None,
            source_principal: None,
            request_principal: None,
            claims: None,
            headers: &NoHeaders,
            sni: None,
        }
    }

    /// The namespace of the source principal (`…/ns/<ns>/…`).
    #[must_use]
    pub fn source_namespace(&self) -> Option<&'a str> {
        let p = self.source_principal?;
        let mut parts = p.split('/');
        while let Some(part) = parts.next() {
            if part == "ns" {
                return parts.next().filter(|s| !s.is_empty());
            }
        }
        None
    }

    /// A claim by its path of names (`[realm_access][roles]`).
    #[must_use]
    pub fn claim(&self, path: &[String]) -> Option<&'a serde_json::Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.claims?.get(first.as_str())?;
        for name in rest {
            value = value.as_object()?.get(name.as_str())?;
        }
        Some(value)
    }
}

/// The string values a JSON claim offers to a matcher: a string itself, each
/// string of an array, and numbers and booleans as their JSON text.
pub(crate) fn claim_strings(value: &serde_json::Value) -> Vec<Cow<'_, str>> {
    fn scalar(v: &serde_json::Value) -> Option<Cow<'_, str>> {
        match v {
            serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            serde_json::Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }
    match value {
        serde_json::Value::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn namespaces_come_from_the_principal() {
        let mut r = Request::new("GET", "/");
        assert_eq!(r.source_namespace(), None);
        r.source_principal = Some("cluster.local/ns/orders/sa/api");
        assert_eq!(r.source_namespace(), Some("orders"));
        r.source_principal = Some("cluster.local/sa/api");
        assert_eq!(r.source_namespace(), None);
    }

    #[test]
    fn claims_by_path_and_as_strings() {
        let claims = json!({"a": {"b": ["x", 2, true, {"c": 1}]}, "s": "v"}).as_object().cloned().unwrap();
        let mut r = Request::new("GET", "/");
        r.claims = Some(&claims);
        let v = r.claim(&["a".into(), "b".into()]).unwrap();
        assert_eq!(claim_strings(v), vec!["x", "2", "true"]);
        assert_eq!(claim_strings(r.claim(&["s".into()]).unwrap()), vec!["v"]);
        assert!(r.claim(&["a".into(), "zz".into()]).is_none());
        assert!(r.claim(&["s".into(), "x".into()]).is_none());
    }

    #[test]
    fn header_maps_are_case_insensitive() {
        let h: BTreeMap<String, String> = [("X-Team".to_owned(), "blue".to_owned())].into();
        assert_eq!(h.header("x-team").as_deref(), Some("blue"));
        assert_eq!(NoHeaders.header("x-team"), None);
    }
}
