//! Semantics of the engine, field by field, written from Istio's documentation.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::json;
use ward_core::{Claims, Effect, ReasonCode};

use super::*;
use crate::request::Request;

const HEAD: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n";

fn set_with(docs: &str, config: &EngineConfig, targets: &[Target]) -> PolicySet {
    let loaded = load_texts(&[("t.yaml".into(), docs.into())], config).unwrap();
    PolicySet::compile(loaded, targets, config).unwrap()
}

fn one_target() -> Vec<Target> {
    vec![Target { name: "r".into(), labels: BTreeMap::from([("app".into(), "api".into())]) }]
}

fn set(docs: &str) -> PolicySet {
    set_with(docs, &EngineConfig::default(), &one_target())
}

/// A policy `name` with `action` and one rule given as YAML flow text.
fn policy(name: &str, action: &str, rule: &str) -> String {
    format!("---\n{HEAD}metadata: {{name: {name}}}\nspec:\n  action: {action}\n  rules:\n  - {rule}\n")
}

struct Req {
    method: &'static str,
    path: &'static str,
    host: Option<&'static str>,
    port: Option<u16>,
    source_ip: Option<IpAddr>,
    remote_ip: Option<IpAddr>,
    dest_ip: Option<IpAddr>,
    source_principal: Option<&'static str>,
    claims: Option<Claims>,
    headers: BTreeMap<String, String>,
    sni: Option<&'static str>,
}

fn req(method: &'static str, path: &'static str) -> Req {
    Req {
        method,
        path,
        host: None,
        port: None,
        source_ip: None,
        remote_ip: None,
        dest_ip: None,
        source_principal: None,
        claims: None,
        headers: BTreeMap::new(),
        sni: None,
    }
}

impl Req {
    fn token(mut self, claims: serde_json::Value) -> Self {
        self.claims = claims.as_object().cloned();
        self
    }

    fn principal(&self) -> Option<String> {
        let c = self.claims.as_ref()?;
        Some(format!("{}/{}", c.get("iss")?.as_str()?, c.get("sub")?.as_str()?))
    }

    fn check(&self, set: &PolicySet) -> Verdict {
        let principal = self.principal();
        let r = Request {
            method: self.method,
            path: self.path,
            host: self.host,
            destination_ip: self.dest_ip,
            destination_port: self.port,
            source_ip: self.source_ip,
            remote_ip: self.remote_ip,
            source_principal: self.source_principal,
            request_principal: principal.as_deref(),
            claims: self.claims.as_ref(),
            headers: &self.headers,
            sni: self.sni,
        };
        let v = set.evaluate(0, r);
        assert_eq!(v, set.evaluate_reference(0, r), "indexed and reference evaluators agree");
        v
    }
}

fn allowed(set: &PolicySet, r: &Req) -> bool {
    r.check(set).effect == Effect::Allow
}

fn ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

#[test]
fn default_deny_and_explicit_default_allow() {
    let s = set("");
    assert_eq!(req("GET", "/").check(&s).reason, ReasonCode::DefaultDeny);
    let config = EngineConfig { default_action: DefaultAction::Allow, ..EngineConfig::default() };
    let s = set_with("", &config, &one_target());
    assert_eq!(req("GET", "/").check(&s).reason, ReasonCode::DefaultAllow);
    // A DENY-only set: what DENY does not catch falls to the default.
    let s = set(&policy("d", "DENY", "to: [{operation: {paths: [\"/admin/*\"]}}]"));
    assert_eq!(req("GET", "/x").check(&s).reason, ReasonCode::DefaultDeny);
    assert_eq!(req("GET", "/admin/x").check(&s).reason, ReasonCode::DeniedByPolicy);
}

#[test]
fn allow_nothing_and_allow_all() {
    let nothing = format!("{HEAD}metadata: {{name: nothing}}\nspec: {{}}\n");
    assert_eq!(req("GET", "/").check(&set(&nothing)).reason, ReasonCode::NoAllowPolicyMatched);
    let all = format!("{HEAD}metadata: {{name: all}}\nspec:\n  rules:\n  - {{}}\n");
    let v = req("GET", "/").check(&set(&all));
    assert_eq!((v.effect, v.reason), (Effect::Allow, ReasonCode::AllowedByPolicy));
    // A DENY with no rules denies nothing.
    let deny_none = format!("{HEAD}metadata: {{name: dn}}\nspec:\n  action: DENY\n");
    assert_eq!(req("GET", "/").check(&set(&format!("{all}---\n{deny_none}"))).effect, Effect::Allow);
}

#[test]
fn deny_wins_over_allow_and_names_the_policy() {
    let docs = format!(
        "{}{}",
        policy("all", "ALLOW", "{}"),
        policy("no-admin", "DENY", "to: [{operation: {paths: [\"/admin/*\"]}}]")
    );
    let s = set(&docs);
    let v = req("GET", "/admin/x").check(&s);
    assert_eq!(v.effect, Effect::Deny);
    assert_eq!(v.decided_by.map(|r| s.describe(r)).as_deref(), Some("default/no-admin#0"));
    let v = req("GET", "/public").check(&s);
    assert_eq!(v.decided_by.map(|r| s.describe(r)).as_deref(), Some("default/all#0"));
}

#[test]
fn audit_marks_without_changing_the_decision() {
    let docs = format!(
        "{}{}",
        policy("aud", "AUDIT", "to: [{operation: {methods: [\"DELETE\"]}}]"),
        policy("all", "ALLOW", "{}")
    );
    let s = set(&docs);
    let v = req("DELETE", "/x").check(&s);
    assert_eq!((v.effect, v.audit.is_some()), (Effect::Allow, true));
    assert!(req("GET", "/x").check(&s).audit.is_none());
    let only_audit = set(&policy("aud", "AUDIT", "{}"));
    let v = req("GET", "/x").check(&only_audit);
    assert_eq!((v.effect, v.reason, v.audit.is_some()), (Effect::Deny, ReasonCode::DefaultDeny, true));
}

#[test]
fn custom_is_reported_and_evaluated_first() {
    let config = EngineConfig { authorizers: vec!["ext".into()], ..EngineConfig::default() };
    let docs = format!(
        "{HEAD}metadata: {{name: c}}\nspec:\n  action: CUSTOM\n  provider: {{name: ext}}\n  rules:\n  - to: [{{operation: {{paths: [\"/x/*\"]}}}}]\n{}",
        policy("all", "ALLOW", "{}")
    );
    let s = set_with(&docs, &config, &one_target());
    let v = req("GET", "/x/1").check(&s);
    assert_eq!(v.custom.map(|r| s.describe(r)).as_deref(), Some("default/c#0"));
    assert_eq!(s.policy(v.custom.unwrap()).and_then(|p| p.provider.as_deref()), Some("ext"));
    assert!(req("GET", "/y").check(&s).custom.is_none());
}

#[test]
fn request_principals_and_the_no_token_case() {
    let s = set(&policy("p", "ALLOW", "from: [{source: {requestPrincipals: [\"*\"]}}]"));
    assert!(!allowed(&s, &req("GET", "/")), "no token: no request principal");
    assert!(allowed(&s, &req("GET", "/").token(json!({"iss": "https://idp", "sub": "alice"}))));
    let s = set(&policy("p", "ALLOW", "from: [{source: {requestPrincipals: [\"https://idp/alice\"]}}]"));
    assert!(allowed(&s, &req("GET", "/").token(json!({"iss": "https://idp", "sub": "alice"}))));
    assert!(!allowed(&s, &req("GET", "/").token(json!({"iss": "https://idp", "sub": "bob"}))));
    let s = set(&policy("p", "ALLOW", "from: [{source: {notRequestPrincipals: [\"*\"]}}]"));
    assert!(allowed(&s, &req("GET", "/")), "notRequestPrincipals: [*] matches requests without a token");
    assert!(!allowed(&s, &req("GET", "/").token(json!({"iss": "i", "sub": "s"}))));
    let s = set(&policy("p", "ALLOW", "from: [{source: {notRequestPrincipals: [\"https://idp/*\"]}}]"));
    assert!(!allowed(&s, &req("GET", "/").token(json!({"iss": "https://idp", "sub": "x"}))));
    assert!(allowed(&s, &req("GET", "/").token(json!({"iss": "https://other", "sub": "x"}))));
}

#[test]
fn principals_and_namespaces_from_mtls() {
    let s = set(&policy("p", "ALLOW", "from: [{source: {principals: [\"cluster.local/ns/a/sa/*\"]}}]"));
    let mut r = req("GET", "/");
    assert!(!allowed(&s, &r), "no mTLS: no principal");
    r.source_principal = Some("cluster.local/ns/a/sa/web");
    assert!(allowed(&s, &r));
    r.source_principal = Some("cluster.local/ns/b/sa/web");
    assert!(!allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "from: [{source: {notPrincipals: [\"*/sa/admin\"]}}]"));
    assert!(allowed(&s, &r));
    r.source_principal = Some("cluster.local/ns/b/sa/admin");
    assert!(!allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "from: [{source: {namespaces: [\"b\"]}}]"));
    assert!(allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "from: [{source: {notNamespaces: [\"b\"]}}]"));
    assert!(!allowed(&s, &r));
    assert!(allowed(&s, &req("GET", "/")), "no principal: not in namespace b");
}

#[test]
fn ip_blocks_and_remote_ip_blocks_v4_and_v6() {
    let s = set(&policy("p", "ALLOW", "from: [{source: {ipBlocks: [\"10.0.0.0/8\", \"2001:db8::/32\"]}}]"));
    let mut r = req("GET", "/");
    assert!(!allowed(&s, &r));
    for (addr, ok) in [
        ("10.1.2.3", true),
        ("11.0.0.1", false),
        ("2001:db8::7", true),
        ("2001:db9::1", false),
        ("::ffff:10.0.0.9", true),
    ] {
        r.source_ip = ip(addr);
        assert_eq!(allowed(&s, &r), ok, "{addr}");
    }
    let s = set(&policy("p", "ALLOW", "from: [{source: {notIpBlocks: [\"10.0.0.0/8\"]}}]"));
    r.source_ip = ip("10.0.0.1");
    assert!(!allowed(&s, &r));
    r.source_ip = ip("192.0.2.1");
    assert!(allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "from: [{source: {remoteIpBlocks: [\"203.0.113.0/24\"]}}]"));
    r.source_ip = ip("10.0.0.1");
    r.remote_ip = ip("203.0.113.9");
    assert!(allowed(&s, &r), "remoteIpBlocks reads the original client");
    r.remote_ip = ip("10.0.0.1");
    assert!(!allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "from: [{source: {notRemoteIpBlocks: [\"10.0.0.0/8\"]}}]"));
    assert!(!allowed(&s, &r));
}

#[test]
fn hosts_ports_methods_and_their_not_twins() {
    let s = set(&policy("p", "ALLOW", "to: [{operation: {hosts: [\"api.example.com\", \"*.internal\"]}}]"));
    let mut r = req("GET", "/");
    assert!(!allowed(&s, &r), "no host");
    r.host = Some("API.Example.COM");
    assert!(allowed(&s, &r), "hosts are case-insensitive");
    r.host = Some("api.example.com:8443");
    assert!(!allowed(&s, &r), "as in Istio, the port is part of the host value");
    r.host = Some("db.internal");
    assert!(allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "to: [{operation: {notHosts: [\"admin.*\"]}}]"));
    r.host = Some("Admin.example.com");
    assert!(!allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "to: [{operation: {ports: [\"8443\"]}}]"));
    assert!(!allowed(&s, &r));
    r.port = Some(8443);
    assert!(allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "to: [{operation: {notPorts: [\"8443\"]}}]"));
    assert!(!allowed(&s, &r));
    let s = set(&policy("p", "ALLOW", "to: [{operation: {methods: [\"GET\", \"HEAD\"]}}]"));
    assert!(allowed(&s, &req("HEAD", "/")) && !allowed(&s, &req("POST", "/")));
    assert!(!allowed(&s, &req("get", "/")), "methods are case-sensitive");
    let s = set(&policy("p", "ALLOW", "to: [{operation: {notMethods: [\"DELETE\"]}}]"));
    assert!(allowed(&s, &req("GET", "/")) && !allowed(&s, &req("DELETE", "/")));
}

#[test]
fn every_path_form_and_not_paths() {
    let s = set(&policy(
        "p",
        "ALLOW",
        "to: [{operation: {paths: [\"/exact\", \"/pre/*\", \"*.json\", \"/api/{*}/items\", \"/files/{**}\"]}}]",
    ));
    for (p, ok) in [
        ("/exact", true),
        ("/exact/", false),
        ("/pre/a/b", true),
        ("/pre", false),
        ("/x/y.json", true),
        ("/api/7/items", true),
        ("/api/7/8/items", false),
        ("/files/", true),
        ("/files/a/b/c", true),
        ("/files", false),
        ("/other", false),
    ] {
        assert_eq!(allowed(&s, &req("GET", p)), ok, "{p}");
    }
    let s = set(&policy("p", "ALLOW", "to: [{operation: {paths: [\"/api/*\"], notPaths: [\"/api/admin/*\"]}}]"));
    assert!(allowed(&s, &req("GET", "/api/x")));
    assert!(!allowed(&s, &req("GET", "/api/admin/x")));
    let s = set(&policy("p", "ALLOW", "to: [{operation: {paths: [\"*\"]}}]"));
    assert!(allowed(&s, &req("GET", "/anything")));
}

#[test]
fn case_cannot_bypass_deny_or_widen_allow() {
    let s = set(&format!(
        "{}{}",
        policy("all", "ALLOW", "{}"),
        policy("no-admin", "DENY", "to: [{operation: {paths: [\"/admin/*\"]}}]")
    ));
    assert!(!allowed(&s, &req("GET", "/ADMIN/x")), "DENY also matches case variants");
    assert!(!allowed(&s, &req("GET", "/Admin/x")));
    let s = set(&policy("only-admin", "ALLOW", "to: [{operation: {paths: [\"/admin/*\"]}}]"));
    assert!(allowed(&s, &req("GET", "/admin/x")));
    assert!(!allowed(&s, &req("GET", "/ADMIN/x")), "ALLOW matches the exact case only");
    let s = set(&policy("not-private", "ALLOW", "to: [{operation: {notPaths: [\"/private/*\"]}}]"));
    assert!(!allowed(&s, &req("GET", "/PRIVATE/x")), "an ALLOW's notPaths also excludes case variants");
    let s = set(&format!(
        "{}{}",
        policy("all", "ALLOW", "{}"),
        policy("deny-but-public", "DENY", "to: [{operation: {notPaths: [\"/public/*\"]}}]")
    ));
    assert!(!allowed(&s, &req("GET", "/PUBLIC/x")), "a DENY's notPaths exempts the exact case only");
    assert!(allowed(&s, &req("GET", "/public/x")));
}

#[test]
fn when_conditions_on_every_key() {
    let cases: Vec<(&str, Req, bool)> = vec![
        (
            "{key: \"request.auth.claims[groups]\", values: [\"eng\"]}",
            req("GET", "/").token(json!({"groups": ["ops", "eng"]})),
            true,
        ),
        (
            "{key: \"request.auth.claims[groups]\", values: [\"eng\"]}",
            req("GET", "/").token(json!({"groups": ["ops"]})),
            false,
        ),
        ("{key: \"request.auth.claims[groups]\", values: [\"eng\"]}", req("GET", "/"), false),
        ("{key: \"request.auth.claims[groups]\", notValues: [\"banned\"]}", req("GET", "/"), true),
        (
            "{key: \"request.auth.claims[groups]\", notValues: [\"banned\"]}",
            req("GET", "/").token(json!({"groups": ["banned", "x"]})),
            false,
        ),
        (
            "{key: \"request.auth.claims[realm][roles]\", values: [\"admin\"]}",
            req("GET", "/").token(json!({"realm": {"roles": ["admin"]}})),
            true,
        ),
        (
            "{key: \"request.auth.claims[realm][roles]\", values: [\"admin\"]}",
            req("GET", "/").token(json!({"realm": "admin"})),
            false,
        ),
        (
            "{key: \"request.auth.claims[email]\", values: [\"*@example.com\"]}",
            req("GET", "/").token(json!({"email": "a@example.com"})),
            true,
        ),
        ("{key: \"request.auth.claims[level]\", values: [\"3\"]}", req("GET", "/").token(json!({"level": 3})), true),
        (
            "{key: request.auth.principal, values: [\"https://idp/alice\"]}",
            req("GET", "/").token(json!({"iss": "https://idp", "sub": "alice"})),
            true,
        ),
        ("{key: request.auth.principal, values: [\"*\"]}", req("GET", "/"), false),
        (
            "{key: request.auth.audiences, values: [\"orders\"]}",
            req("GET", "/").token(json!({"aud": ["web", "orders"]})),
            true,
        ),
        ("{key: request.auth.audiences, values: [\"orders\"]}", req("GET", "/").token(json!({"aud": "orders"})), true),
        ("{key: request.auth.audiences, values: [\"orders\"]}", req("GET", "/").token(json!({"aud": "web"})), false),
        ("{key: request.auth.presenter, values: [\"cli\"]}", req("GET", "/").token(json!({"azp": "cli"})), true),
        ("{key: request.auth.presenter, notValues: [\"cli\"]}", req("GET", "/").token(json!({"azp": "cli"})), false),
    ];
    for (cond, r, want) in cases {
        let s = set(&policy("p", "ALLOW", &format!("when: [{cond}]")));
        assert_eq!(allowed(&s, &r), want, "{cond}");
    }
    let mut r = req("GET", "/");
    r.headers.insert("X-Team".into(), "blue".into());
    r.source_ip = ip("10.0.0.1");
    r.remote_ip = ip("203.0.113.5");
    r.dest_ip = ip("192.0.2.10");
    r.port = Some(8443);
    r.sni = Some("api.example.com");
    r.source_principal = Some("cluster.local/ns/shop/sa/web");
    for (cond, want) in [
        ("{key: \"request.headers[x-team]\", values: [\"blue\"]}", true),
        ("{key: \"request.headers[X-Team]\", values: [\"bl*\"]}", true),
        ("{key: \"request.headers[x-team]\", notValues: [\"blue\"]}", false),
        ("{key: \"request.headers[x-absent]\", values: [\"*\"]}", false),
        ("{key: \"request.headers[x-absent]\", notValues: [\"*\"]}", true),
        ("{key: source.ip, values: [\"10.0.0.0/8\"]}", true),
        ("{key: source.ip, notValues: [\"10.0.0.1\"]}", false),
        ("{key: remote.ip, values: [\"203.0.113.0/24\"]}", true),
        ("{key: remote.ip, values: [\"10.0.0.0/8\"]}", false),
        ("{key: destination.ip, values: [\"192.0.2.10\"]}", true),
        ("{key: destination.port, values: [\"8443\"]}", true),
        ("{key: destination.port, notValues: [\"8443\"]}", false),
        ("{key: connection.sni, values: [\"*.example.com\"]}", true),
        ("{key: source.principal, values: [\"cluster.local/ns/shop/*\"]}", true),
        ("{key: source.namespace, values: [\"shop\"]}", true),
        ("{key: source.namespace, values: [\"other\"]}", false),
    ] {
        let s = set(&policy("p", "ALLOW", &format!("when: [{cond}]")));
        assert_eq!(allowed(&s, &r), want, "{cond}");
    }
}

#[test]
fn rule_structure_or_within_and_across() {
    // from: any source; to: any operation; when: all conditions.
    let s = set(&policy(
        "p",
        "ALLOW",
        "{from: [{source: {namespaces: [a]}}, {source: {ipBlocks: [\"10.0.0.0/8\"]}}], to: [{operation: {methods: [GET]}}, {operation: {paths: [\"/w\"]}}], when: [{key: \"request.headers[x-a]\", values: [\"1\"]}, {key: \"request.headers[x-b]\", values: [\"2\"]}]}",
    ));
    let mut r = req("POST", "/w");
    r.source_ip = ip("10.0.0.1");
    r.headers.insert("x-a".into(), "1".into());
    assert!(!allowed(&s, &r), "one when condition missing");
    r.headers.insert("x-b".into(), "2".into());
    assert!(allowed(&s, &r));
    r.path = "/v";
    assert!(!allowed(&s, &r), "neither operation matches");
    r.method = "GET";
    assert!(allowed(&s, &r));
    r.source_ip = ip("192.0.2.1");
    assert!(!allowed(&s, &r), "neither source matches");
    // Inside a source every field must match.
    let s = set(&policy("p", "ALLOW", "from: [{source: {ipBlocks: [\"10.0.0.0/8\"], requestPrincipals: [\"*\"]}}]"));
    let mut r = req("GET", "/");
    r.source_ip = ip("10.0.0.1");
    assert!(!allowed(&s, &r));
}

#[test]
fn selectors_and_namespaces_scope_policies() {
    let targets = vec![
        Target { name: "api".into(), labels: BTreeMap::from([("app".into(), "api".into())]) },
        Target { name: "web".into(), labels: BTreeMap::from([("app".into(), "web".into())]) },
    ];
    let docs = format!(
        "{HEAD}metadata: {{name: api-only}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n  rules: [{{}}]\n---\n\
         {HEAD}metadata: {{name: other-ns, namespace: elsewhere}}\nspec:\n  rules: [{{}}]\n---\n\
         {HEAD}metadata: {{name: root, namespace: ward-system}}\nspec:\n  action: DENY\n  selector: {{matchLabels: {{app: web}}}}\n  rules: [{{to: [{{operation: {{paths: [\"/admin\"]}}}}]}}]\n"
    );
    let s = set_with(&docs, &EngineConfig::default(), &targets);
    let r = Request::new("GET", "/x");
    assert_eq!(s.evaluate(0, r).reason, ReasonCode::AllowedByPolicy);
    assert_eq!(s.evaluate(1, r).reason, ReasonCode::DefaultDeny, "the api policy does not select web");
    assert_eq!(
        s.evaluate(1, Request::new("GET", "/admin")).reason,
        ReasonCode::DeniedByPolicy,
        "root namespace applies"
    );
    let e = s.explain(1, r);
    assert!(e.not_applicable.iter().any(|n| n.starts_with("elsewhere/other-ns")), "{e:?}");
    assert_eq!(s.evaluate(9, r).effect, Effect::Deny, "an unknown target is denied");
}

#[test]
fn role_bindings_compile_into_allow_policies() {
    let docs = r#"
apiVersion: ward.dev/v1
kind: Role
metadata: {name: reader}
spec:
  permissions:
  - {methods: [GET, HEAD], paths: ["/api/*"]}
---
apiVersion: ward.dev/v1
kind: Role
metadata: {name: writer}
spec:
  permissions:
  - {methods: [POST], paths: ["/api/orders"]}
---
apiVersion: ward.dev/v1
kind: RoleBinding
metadata: {name: staff}
spec:
  roles: [reader, writer]
  subjects:
  - group: staff
  - requestPrincipal: "https://idp/carol"
  - principal: "cluster.local/ns/shop/sa/web"
"#;
    let config = EngineConfig { groups_claim: vec!["realm".into(), "groups".into()], ..EngineConfig::default() };
    let s = set_with(docs, &config, &one_target());
    let staff = req("POST", "/api/orders").token(json!({"iss": "i", "sub": "x", "realm": {"groups": ["staff"]}}));
    let v = staff.check(&s);
    assert_eq!(
        (v.effect, v.decided_by.map(|r| s.describe(r))),
        (Effect::Allow, Some("rolebinding:default/staff#0".into()))
    );
    assert!(!allowed(&s, &req("DELETE", "/api/orders").token(json!({"realm": {"groups": ["staff"]}}))));
    assert!(allowed(&s, &req("GET", "/api/x").token(json!({"iss": "https://idp", "sub": "carol"}))));
    assert!(!allowed(&s, &req("GET", "/api/x").token(json!({"iss": "https://idp", "sub": "dave"}))));
    let mut mtls = req("HEAD", "/api/x");
    mtls.source_principal = Some("cluster.local/ns/shop/sa/web");
    assert!(allowed(&s, &mtls));
    let missing = "apiVersion: ward.dev/v1\nkind: RoleBinding\nmetadata: {name: b}\nspec:\n  roles: [ghost]\n  subjects: [{group: g}]\n";
    let loaded = load_texts(&[("b.yaml".into(), missing.into())], &config).unwrap();
    let e = PolicySet::compile(loaded, &one_target(), &config).unwrap_err();
    assert_eq!(e[0].to_string(), "b.yaml:5: spec.roles[0]: no Role `ghost` in namespace `default`");
}

#[test]
fn duplicates_are_refused_and_the_digest_tracks_content() {
    let config = EngineConfig::default();
    let doc = format!("{HEAD}metadata: {{name: x}}\nspec: {{}}\n");
    let loaded = load_texts(&[("a.yaml".into(), doc.clone()), ("b.yaml".into(), doc.clone())], &config).unwrap();
    let e = PolicySet::compile(loaded, &one_target(), &config).unwrap_err();
    assert!(e[0].to_string().contains("already defined at a.yaml:1"), "{e:?}");
    let d1 = load_texts(&[("a.yaml".into(), doc.clone())], &config).unwrap().digest;
    let d2 = load_texts(&[("a.yaml".into(), format!("{doc}# changed\n"))], &config).unwrap().digest;
    let d3 = load_texts(&[("a.yaml".into(), doc)], &EngineConfig { default_action: DefaultAction::Allow, ..config })
        .unwrap()
        .digest;
    assert!(d1.starts_with("sha256:") && d1.len() == 71);
    assert!(d1 != d2 && d1 != d3);
}

#[test]
fn explain_reports_every_rule_and_why() {
    let s = set(&format!(
        "{}{}",
        policy(
            "readers",
            "ALLOW",
            "{to: [{operation: {methods: [GET]}}], when: [{key: \"request.auth.claims[groups]\", values: [\"readers\"]}]}"
        ),
        policy("no-admin", "DENY", "to: [{operation: {paths: [\"/admin/*\"]}}]")
    ));
    let claims = json!({"groups": ["writers"]}).as_object().cloned().unwrap();
    let mut r = Request::new("GET", "/x");
    r.claims = Some(&claims);
    let e = s.explain(0, r);
    assert_eq!((e.decision, e.reason), (Effect::Deny, ReasonCode::NoAllowPolicyMatched));
    let readers = e.policies.iter().find(|p| p.policy == "default/readers").unwrap();
    assert!(!readers.rules[0].matched);
    assert!(readers.rules[0].reasons[0].contains("request.auth.claims[groups]"), "{:?}", readers.rules[0].reasons);
    let deny = e.policies.iter().find(|p| p.policy == "default/no-admin").unwrap();
    assert!(deny.rules[0].reasons[0].contains("paths"), "{:?}", deny.rules[0].reasons);
}

#[test]
fn the_index_finds_rules_among_many() {
    let mut docs = String::new();
    for i in 0..300 {
        docs.push_str(&policy(
            &format!("p{i}"),
            "ALLOW",
            &format!("to: [{{operation: {{paths: [\"/svc{i}/*\", \"/exact{i}\", \"/t{i}/{{*}}/x\"]}}}}]"),
        ));
    }
    docs.push_str(&policy("suffix", "ALLOW", "to: [{operation: {paths: [\"*.png\"]}}]"));
    docs.push_str(&policy("deny", "DENY", "to: [{operation: {paths: [\"/svc7/secret\"]}}]"));
    let s = set(&docs);
    for (p, want) in [
        ("/svc7/a", Some("default/p7#0")),
        ("/exact250", Some("default/p250#0")),
        ("/t3/a/x", Some("default/p3#0")),
        ("/svc7/secret", Some("default/deny#0")),
        ("/SVC7/SECRET", Some("default/deny#0")),
        ("/nope.png", Some("default/suffix#0")),
        ("/svc300/a", None),
    ] {
        let v = req("GET", p).check(&s);
        assert_eq!(v.decided_by.map(|r| s.describe(r)).as_deref(), want, "{p}");
    }
}
