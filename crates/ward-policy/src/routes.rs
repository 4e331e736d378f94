//! Routes: which upstream serves a path, whether a token is required, and
//! the labels policies select on. Routing uses the same normalised path as
//! authorization.

use std::collections::BTreeMap;

/// The label every route carries with its own name, so a policy can select
/// one route without the configuration inventing labels.
pub const ROUTE_LABEL: &str = "ward.dev/route";

/// A route: a path prefix and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Name used in the audit log and in the `ward.dev/route` label.
    pub name: String,
    /// Path prefix. A prefix ending in `/` matches paths under it; otherwise it
    /// matches itself and paths under `prefix/` (so `/api` never matches `/apix`).
    pub prefix: String,
    /// Name of the upstream that serves the route.
    pub upstream: String,
    /// A public route does not require a token (a token that is presented is
    /// still verified). Policies still decide.
    pub public: bool,
    /// Names of the token providers accepted; empty accepts every provider.
    pub providers: Vec<String>,
    /// A browser route: a request without a token is authenticated by the
    /// gateway's OpenID Connect login session, and a GET or HEAD without one
    /// is sent to the provider to log in (other routes answer 401).
    pub login: bool,
    /// The route's own mTLS mode, refining the listener's (Istio's
    /// port-level mTLS): `Some(true)` is STRICT (a verified client SVID is
    /// required), `Some(false)` is DISABLE (a presented SVID is ignored),
    /// `None` follows the listener.
    pub mtls_strict: Option<bool>,
    /// Labels for `selector.matchLabels` (the gateway's labels, then the
    /// route's own, then `ward.dev/route: <name>`).
    pub labels: BTreeMap<String, String>,
}

impl Route {
    fn covers(&self, path: &str) -> bool {
        if self.prefix.ends_with('/') {
            path.starts_with(&self.prefix)
        } else {
            path.strip_prefix(&self.prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }
    }
}

/// Routes ordered by specificity: the longest matching prefix wins.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Build a table; routes are tried longest prefix first.
    #[must_use]
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes }
    }

    /// The route for a normalised path, with its position in [`Self::routes`].
    #[must_use]
    pub fn find(&self, path: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, r)| r.covers(path))
    }

    /// All routes, most specific first.
    #[must_use]
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The routes as policy targets, in the same order.
    #[must_use]
    pub fn targets(&self) -> Vec<crate::Target> {
        self.routes.iter().map(|r| crate::Target { name: r.name.clone(), labels: r.labels.clone() }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str) -> Route {
        Route {
            name: name.into(),
            prefix: prefix.into(),
            upstream: "u".into(),
            public: false,
            providers: vec![],
            login: false,
            mtls_strict: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn longest_prefix_wins_and_prefixes_respect_segments() {
        let table = RouteTable::new(vec![route("a", "/api"), route("b", "/api/admin/"), route("root", "/")]);
        let name = |p: &str| table.find(p).map(|(_, r)| r.name.as_str());
        assert_eq!(name("/api/admin/x"), Some("b"));
        assert_eq!(name("/api/x"), Some("a"));
        assert_eq!(name("/api"), Some("a"));
        assert_eq!(name("/apix"), Some("root"));
        assert!(RouteTable::new(vec![]).find("/").is_none());
        assert_eq!(table.find("/api/admin/x").map(|(i, _)| i), Some(0));
    }
}
