//! Policy tests as data: a table of requests with expected decisions, for
//! `ward policy test` (usable in users' CI, like `opa test`), and the
//! request format `ward policy explain --request` reads.
//!
//! ```yaml
//! config: {namespace: default, defaultAction: deny}   # optional
//! routes:                                             # optional; default: one route `default`
//! - {name: api, labels: {app: api}}
//! cases:
//! - name: readers can read
//!   route: api
//!   request: {method: GET, path: /api/x, claims: {iss: "https://idp", sub: alice, groups: [eng]}}
//!   expect: allow
//!   reason: allowed_by_policy            # optional
//!   policy: default/readers#0            # optional: the deciding policy and rule
//!   audit: false                         # optional
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use ward_core::{Claims, Effect, ReasonCode};

use crate::engine::{DefaultAction, EngineConfig, Loaded, PolicySet, Target};
use crate::path::{EncodedSlashes, PathCase, PathOptions, normalize_path_with};
use crate::request::Request;

/// A request as JSON or YAML (`ward policy explain --request`, test cases).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestSpec {
    /// Method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Path as the client sent it (normalised before matching).
    pub path: String,
    /// `Host`.
    #[serde(default)]
    pub host: Option<String>,
    /// Destination port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Destination address.
    #[serde(default)]
    pub destination_ip: Option<IpAddr>,
    /// Peer address.
    #[serde(default)]
    pub source_ip: Option<IpAddr>,
    /// Original client address (default: the peer address).
    #[serde(default)]
    pub remote_ip: Option<IpAddr>,
    /// mTLS peer identity without `spiffe://`.
    #[serde(default)]
    pub source_principal: Option<String>,
    /// `iss/sub`; derived from `claims` when absent.
    #[serde(default)]
    pub request_principal: Option<String>,
    /// Verified token claims; absent means no token.
    #[serde(default)]
    pub claims: Option<Claims>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS SNI.
    #[serde(default)]
    pub sni: Option<String>,
}

/// A prepared request spec: the normalised path and derived principal.
#[derive(Debug)]
pub struct OwnedRequest {
    spec: RequestSpec,
    path: String,
    request_principal: Option<String>,
}

impl OwnedRequest {
    /// Normalise the path and derive the request principal.
    ///
    /// # Errors
    /// The path normaliser's refusal.
    pub fn new(spec: RequestSpec, options: &PathOptions) -> Result<Self, crate::PathError> {
        // The query is not part of the path, as for the gateway (which sees
        // the URI's path alone): `/admin?x=1` is judged as `/admin`.
        let raw = spec.path.split_once('?').map_or(spec.path.as_str(), |(path, _)| path);
        let path = normalize_path_with(raw, options)?;
        let request_principal = spec.request_principal.clone().or_else(|| {
            let c = spec.claims.as_ref()?;
            Some(format!("{}/{}", c.get("iss")?.as_str()?, c.get("sub")?.as_str()?))
        });
        Ok(Self { spec, path, request_principal })
    }

    /// The borrowed view the engine evaluates.
    #[must_use]
    pub fn request(&self) -> Request<'_> {
        let s = &self.spec;
        Request {
            method: s.method.as_deref().unwrap_or("GET"),
            path: &self.path,
            host: s.host.as_deref(),
            destination_ip: s.destination_ip,
            destination_port: s.port,
            source_ip: s.source_ip,
            remote_ip: s.remote_ip.or(s.source_ip),
            source_principal: s.source_principal.as_deref(),
            request_principal: self.request_principal.as_deref(),
            claims: s.claims.as_ref(),
            headers: &s.headers,
            sni: s.sni.as_deref(),
        }
    }
}

/// Engine settings in a test file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestConfig {
    namespace: Option<String>,
    root_namespace: Option<String>,
    default_action: Option<String>,
    groups_claim: Option<String>,
    path_case: Option<String>,
    encoded_slashes: Option<String>,
    #[serde(default)]
    authorizers: Vec<String>,
}

impl TestConfig {
    /// The engine and path settings this section describes.
    ///
    /// # Errors
    /// An unknown value, named.
    pub fn settings(&self) -> Result<(EngineConfig, PathOptions), String> {
        let mut c = EngineConfig::default();
        if let Some(n) = &self.namespace {
            c.namespace.clone_from(n);
        }
        if let Some(n) = &self.root_namespace {
            c.root_namespace.clone_from(n);
        }
        c.default_action =
            pick(self.default_action.as_deref(), DefaultAction::Deny, DefaultAction::NAMES, "defaultAction")?;
        if let Some(g) = &self.groups_claim {
            c.groups_claim = g.split('.').map(str::to_owned).collect();
        }
        c.authorizers.clone_from(&self.authorizers);
        let case = pick(self.path_case.as_deref(), PathCase::Sensitive, PathCase::NAMES, "pathCase")?;
        let encoded_slashes =
            pick(self.encoded_slashes.as_deref(), EncodedSlashes::Reject, EncodedSlashes::NAMES, "encodedSlashes")?;
        Ok((c, PathOptions { encoded_slashes, case, ..PathOptions::default() }))
    }
}

/// One of `names`, or `default` when absent; an unknown value is named in the error.
fn pick<T: Copy>(value: Option<&str>, default: T, names: &[(&str, T)], field: &str) -> Result<T, String> {
    let Some(v) = value else { return Ok(default) };
    names.iter().find(|(n, _)| *n == v).map(|(_, t)| *t).ok_or_else(|| {
        let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        format!("config.{field}: `{v}` ({})", all.join(" or "))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    route: Option<String>,
    request: RequestSpec,
    expect: Expect,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    audit: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(default)]
    config: TestConfig,
    #[serde(default)]
    routes: Vec<RouteSpec>,
    cases: Vec<Case>,
}

impl TestFile {
    /// Parse a test file.
    ///
    /// # Errors
    /// The YAML error, with its line.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_saphyr::from_str(text).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            format!("line {line}: {}", e.without_snippet().to_string().lines().next().unwrap_or("invalid YAML"))
        })
    }

    /// The engine settings the file asks for.
    ///
    /// # Errors
    /// An unknown value.
    pub fn settings(&self) -> Result<(EngineConfig, PathOptions), String> {
        self.config.settings()
    }

    /// The routes as targets (one route `default` when none are given).
    #[must_use]
    pub fn targets(&self) -> Vec<Target> {
        if self.routes.is_empty() {
            return vec![Target { name: "default".into(), labels: BTreeMap::new() }];
        }
        self.routes.iter().map(|r| Target { name: r.name.clone(), labels: r.labels.clone() }).collect()
    }

    /// Run every case against `loaded` policies.
    ///
    /// # Errors
    /// Settings or compile errors (as text).
    pub fn run(&self, loaded: Loaded) -> Result<Report, String> {
        let (config, path_options) = self.settings()?;
        let targets = self.targets();
        let set = PolicySet::compile(loaded, &targets, &config)
            .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
        let mut report = Report::default();
        for case in &self.cases {
            let failure = self.check(&set, &targets, &path_options, case);
            report.results.push(CaseResult { name: case.name.clone(), failure });
        }
        Ok(report)
    }

    fn check(&self, set: &PolicySet, targets: &[Target], options: &PathOptions, case: &Case) -> Option<String> {
        let route = match (&case.route, targets) {
            (Some(r), _) => r.clone(),
            (None, [only]) => only.name.clone(),
            (None, _) => return Some("several routes exist; name one with `route`".into()),
        };
        let Some(target) = set.target(&route) else { return Some(format!("no route `{route}`")) };
        let (effect, reason, policy, audit) = match OwnedRequest::new(case.request.clone(), options) {
            Ok(req) => {
                let v = set.evaluate(target, req.request());
                let reference = set.evaluate_reference(target, req.request());
                if v != reference {
                    return Some(format!("indexed and reference evaluators disagree: {v:?} vs {reference:?}"));
                }
                (v.effect, v.reason, v.decided_by.map(|r| set.describe(r)), v.audit.is_some())
            }
            Err(_) => (Effect::Deny, ReasonCode::PathRejected, None, false),
        };
        let want = match case.expect {
            Expect::Allow => Effect::Allow,
            Expect::Deny => Effect::Deny,
        };
        let got = format!("{effect:?} ({reason}{})", policy.as_ref().map(|p| format!(", by {p}")).unwrap_or_default());
        if effect != want {
            return Some(format!("expected {want:?}, got {got}"));
        }
        if let Some(r) = &case.reason
            && r != reason.as_str()
        {
            return Some(format!("expected reason {r}, got {got}"));
        }
        if let Some(p) = &case.policy {
            let matches = policy.as_deref().is_some_and(|got| got == p || got.split('#').next() == Some(p.as_str()));
            if !matches {
                return Some(format!("expected policy {p}, got {got}"));
            }
        }
        if let Some(a) = case.audit
            && a != audit
        {
            return Some(format!("expected audit {a}, got {audit}"));
        }
        None
    }
}

/// The outcome of a test run.
#[derive(Debug, Default)]
pub struct Report {
    /// One per case, in file order.
    pub results: Vec<CaseResult>,
}

/// One case's outcome.
#[derive(Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// `None` when it passed.
    pub failure: Option<String>,
}

impl Report {
    /// How many failed.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.failure.is_some()).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            match &r.failure {
                None => writeln!(f, "ok    {}", r.name)?,
                Some(why) => writeln!(f, "FAIL  {}: {why}", r.name)?,
            }
        }
        write!(f, "{} passed, {} failed", self.results.len() - self.failed(), self.failed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_split_off_as_the_gateway_does() {
        let spec: RequestSpec =
            serde_json::from_str(r#"{"method": "GET", "path": "/admin/../admin?x=1&y=/public"}"#).unwrap();
        let req = OwnedRequest::new(spec, &PathOptions::default()).unwrap();
        assert_eq!(req.request().path, "/admin");
    }
}
