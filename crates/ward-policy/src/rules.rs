//! Routes and allow rules (the v0 policy language).

use std::str::FromStr;

use ward_core::{Decision, Identity, ReasonCode};

/// A path pattern in an allow rule, in Istio's notation:
/// `/exact`, `/prefix/*`, `*suffix`, `*` (any), and `{*}` / `{**}` for one
/// segment or any number of segments (`/api/{*}/items`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// The whole path equals this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
    /// The path ends with this.
    Suffix(String),
    /// Any path.
    Any,
    /// Segment-wise match with `{*}` and a trailing `{**}`.
    Segments(Vec<Segment>),
}

/// One segment of a [`PathPattern::Segments`] pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// This literal segment.
    Literal(String),
    /// Exactly one segment, whatever it is.
    One,
    /// Zero or more segments; only allowed last.
    Rest,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: &'static str,
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PatternError { pattern: s.to_owned(), reason };
        if s == "*" {
            return Ok(Self::Any);
        }
        if s.contains('{') {
            if !s.starts_with('/') {
                return Err(err("segment patterns must start with `/`"));
            }
            let parts: Vec<&str> = s.split('/').skip(1).collect();
            let mut segments = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                segments.push(match *part {
                    "{*}" => Segment::One,
                    "{**}" if i + 1 == parts.len() => Segment::Rest,
                    "{**}" => return Err(err("`{**}` may only be the last segment")),
                    p if p.contains(['{', '}', '*']) => return Err(err("`{*}` and `{**}` must be whole segments")),
                    p => Segment::Literal(p.to_owned()),
                });
            }
            return Ok(Self::Segments(segments));
        }
        match (s.strip_prefix('*'), s.strip_suffix('*')) {
            (Some(rest), _) if !rest.contains('*') => Ok(Self::Suffix(rest.to_owned())),
            (_, Some(rest)) if !rest.contains('*') && rest.starts_with('/') => Ok(Self::Prefix(rest.to_owned())),
            _ if s.contains('*') => Err(err("`*` may only stand first, last, or alone")),
            _ if !s.starts_with('/') => Err(err("paths must start with `/`")),
            _ => Ok(Self::Exact(s.to_owned())),
        }
    }
}

impl PathPattern {
    /// Whether the (normalised) path matches.
    #[must_use]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => path.starts_with(p.as_str()),
            Self::Suffix(p) => path.ends_with(p.as_str()),
            Self::Any => true,
            Self::Segments(segments) => {
                let mut parts = path.split('/').skip(1);
                for segment in segments {
                    match segment {
                        Segment::Rest => return true,
                        Segment::One => {
                            if parts.next().is_none_or(str::is_empty) {
                                return false;
                            }
                        }
                        Segment::Literal(l) => {
                            if parts.next() != Some(l.as_str()) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

/// A claim that must hold one of several values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequirement {
    /// Claim name, with dots for nested objects (`realm_access.roles`).
    pub claim: String,
    /// Accepted values; the claim matches when it equals one, or (for arrays
    /// and space-separated strings such as `scope`) contains one.
    pub any_of: Vec<String>,
}

impl ClaimRequirement {
    fn holds(&self, identity: &Identity) -> bool {
        let Some(value) = identity.claim(&self.claim) else { return false };
        let accepted = |s: &str| self.any_of.iter().any(|a| a == s);
        match value {
            serde_json::Value::String(s) => accepted(s) || s.split_ascii_whitespace().any(accepted),
            serde_json::Value::Array(items) => items.iter().any(|v| v.as_str().is_some_and(accepted)),
            serde_json::Value::Bool(b) => accepted(if *b { "true" } else { "false" }),
            serde_json::Value::Number(n) => accepted(&n.to_string()),
            _ => false,
        }
    }
}

/// One allow rule: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowRule {
    /// Allowed methods (upper case); `None` allows any method.
    pub methods: Option<Vec<String>>,
    /// Allowed paths; empty allows any path of the route.
    pub paths: Vec<PathPattern>,
    /// Claims that must hold; empty needs none (but a token is still required
    /// unless the route is public).
    pub claims: Vec<ClaimRequirement>,
}

impl AllowRule {
    fn admits(&self, method: &str, path: &str, identity: Option<&Identity>) -> bool {
        self.methods.as_ref().is_none_or(|m| m.iter().any(|x| x == method))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            && (self.claims.is_empty() || identity.is_some_and(|id| self.claims.iter().all(|c| c.holds(id))))
    }
}

/// A route: a path prefix, where its traffic goes, and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Name used in the audit log.
    pub name: String,
    /// Path prefix. A prefix ending in `/` matches paths under it; otherwise it
    /// matches itself and paths under `prefix/` (so `/api` never matches `/apix`).
    pub prefix: String,
    /// Name of the upstream that serves the route.
    pub upstream: String,
    /// A public route needs no token. Its rules still apply, without claims.
    pub public: bool,
    /// Names of the token providers accepted; empty accepts every provider.
    pub providers: Vec<String>,
    /// Allow rules; a route with none denies everything.
    pub rules: Vec<AllowRule>,
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

    /// The route for a normalised path.
    #[must_use]
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.covers(path))
    }

    /// All routes, most specific first.
    #[must_use]
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// Decide whether `identity` may call `method path` on `route` (default deny).
///
/// `identity` is `None` only on public routes; the gateway rejects a missing
/// token on a protected route before authorization.
#[must_use]
pub fn authorize(route: &Route, method: &str, path: &str, identity: Option<&Identity>) -> Decision {
    if route.rules.iter().any(|r| r.admits(method, path, identity)) {
        if identity.is_some() {
            Decision::allow(ReasonCode::AllowedByRule)
        } else {
            Decision::allow(ReasonCode::PublicRoute)
        }
    } else {
        Decision::deny(ReasonCode::NoMatchingRule)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use ward_core::{Effect, Principal};

    use super::*;

    fn identity(claims: serde_json::Value) -> Identity {
        let serde_json::Value::Object(map) = claims else { unreachable!() };
        Identity {
            principal: Principal::new("alice"),
            issuer: Arc::from("i"),
            provider: Arc::from("p"),
            claims: Arc::new(map),
            expires_at: 0,
        }
    }

    fn route(rules: Vec<AllowRule>) -> Route {
        Route {
            name: "api".into(),
            prefix: "/api/".into(),
            upstream: "u".into(),
            public: false,
            providers: vec![],
            rules,
        }
    }

    #[test]
    fn patterns() {
        let p = |s: &str| s.parse::<PathPattern>().unwrap();
        assert!(p("/api/x").matches("/api/x"));
        assert!(!p("/api/x").matches("/api/xy"));
        assert!(p("/api/*").matches("/api/anything/deep"));
        assert!(!p("/api/*").matches("/api"));
        assert!(p("*.json").matches("/a/b.json"));
        assert!(p("*").matches("/"));
        assert!(p("/api/{*}/items").matches("/api/7/items"));
        assert!(!p("/api/{*}/items").matches("/api/7/8/items"));
        assert!(!p("/api/{*}/items").matches("/api//items"));
        assert!(p("/api/{**}").matches("/api/a/b/c"));
        for bad in ["/a*b", "api", "/api/{**}/x", "/api/x{*}", "**x*"] {
            assert!(bad.parse::<PathPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn default_deny_and_rules() {
        let reader = AllowRule {
            methods: Some(vec!["GET".into()]),
            paths: vec!["/api/*".parse().unwrap()],
            claims: vec![ClaimRequirement { claim: "roles".into(), any_of: vec!["reader".into()] }],
        };
        let r = route(vec![reader]);
        let alice = identity(json!({"roles": ["reader", "writer"]}));
        let bob = identity(json!({"roles": "writer"}));
        assert_eq!(authorize(&r, "GET", "/api/x", Some(&alice)).effect, Effect::Allow);
        assert_eq!(authorize(&r, "POST", "/api/x", Some(&alice)).reason, ReasonCode::NoMatchingRule);
        assert_eq!(authorize(&r, "GET", "/api/x", Some(&bob)).effect, Effect::Deny);
        assert_eq!(authorize(&r, "GET", "/api/x", None).effect, Effect::Deny);
        assert_eq!(authorize(&route(vec![]), "GET", "/api/x", Some(&alice)).effect, Effect::Deny);
    }

    #[test]
    fn scope_strings_and_nested_claims() {
        let rule = |claim: &str, v: &str| AllowRule {
            claims: vec![ClaimRequirement { claim: claim.into(), any_of: vec![v.into()] }],
            ..AllowRule::default()
        };
        let id = identity(json!({"scope": "orders:read profile", "realm_access": {"roles": ["admin"]}}));
        assert!(authorize(&route(vec![rule("scope", "orders:read")]), "GET", "/api/", Some(&id)).is_allow());
        assert!(!authorize(&route(vec![rule("scope", "orders")]), "GET", "/api/", Some(&id)).is_allow());
        assert!(authorize(&route(vec![rule("realm_access.roles", "admin")]), "GET", "/api/", Some(&id)).is_allow());
    }

    #[test]
    fn longest_prefix_wins_and_prefixes_respect_segments() {
        let mut a = route(vec![]);
        a.name = "a".into();
        a.prefix = "/api".into();
        let mut b = route(vec![]);
        b.name = "b".into();
        b.prefix = "/api/admin/".into();
        let mut root = route(vec![]);
        root.name = "root".into();
        root.prefix = "/".into();
        let table = RouteTable::new(vec![a, b, root]);
        assert_eq!(table.find("/api/admin/x").map(|r| r.name.as_str()), Some("b"));
        assert_eq!(table.find("/api/x").map(|r| r.name.as_str()), Some("a"));
        assert_eq!(table.find("/api").map(|r| r.name.as_str()), Some("a"));
        assert_eq!(table.find("/apix").map(|r| r.name.as_str()), Some("root"));
        assert!(RouteTable::new(vec![]).find("/").is_none());
    }
}
