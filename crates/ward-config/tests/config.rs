//! Configuration parsing and the location of every error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

const GOOD: &str = r#"
[gateway]
listen = "127.0.0.1:8443"

[gateway.tls]
cert_file = "tls/server.crt"
key_file = "tls/server.key"

[audit]
dir = "audit"
hmac_key_file = "keys/audit.key"
checkpoint_key_file = "keys/audit-checkpoint.key"

[[providers]]
name = "local"
issuer = "https://ward.local"
audiences = ["demo"]
jwks_file = "keys/jwks.json"

[[upstreams]]
name = "demo"
url = "http://127.0.0.1:9000"

[[routes]]
name = "api"
prefix = "/api/"
upstream = "demo"

labels = { app = "api" }

[policy]
default_action = "deny"
path_case = "sensitive"
"#;

fn parse(text: &str) -> Result<ward_config::Config, ward_config::ConfigError> {
    ward_config::parse(Path::new("/etc/ward/ward.toml"), text)
}

#[test]
fn good_config_parses_with_defaults_and_resolved_paths() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.gateway.listen.port(), 8443);
    assert_eq!(c.gateway.limits.max_header_bytes, 16 * 1024);
    assert_eq!(c.gateway.tls.cert_file, Path::new("/etc/ward/tls/server.crt"));
    assert_eq!(c.providers[0].settings.leeway.as_secs(), 60);
    assert_eq!(c.token_sources, vec![ward_config::TokenSource::Header("authorization".into())]);
    assert_eq!(c.routes[0].labels.get("app").map(String::as_str), Some("api"));
    assert_eq!(c.routes[0].labels.get("ward.dev/route").map(String::as_str), Some("api"));
    assert_eq!(c.policy.dir, Path::new("/etc/ward/policies"));
    assert_eq!(c.policy.engine.default_action, ward_policy::DefaultAction::Deny);
    assert_eq!(c.cache_entries, 0, "the verified-token cache is opt-in");
}

/// Replace `from` with `to` in the good config and return the error text.
fn error(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    parse(&GOOD.replacen(from, to, 1)).unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_field() {
    let e = error("listen = \"127.0.0.1:8443\"", "listen = \"localhost\"");
    assert!(e.starts_with("/etc/ward/ward.toml:3:1: gateway.listen: "), "{e}");

    let e = error("upstream = \"demo\"", "upstream = \"nope\"");
    assert!(e.starts_with("/etc/ward/ward.toml:27:1: routes[0].upstream: no upstream is named `nope`"), "{e}");

    let e = error("default_action = \"deny\"", "default_action = \"maybe\"");
    assert!(e.contains(":32:1: policy.default_action: `maybe` is not one of deny, allow"), "{e}");

    let e = error("audiences = [\"demo\"]", "audiences = []");
    assert!(e.contains(":17:1: providers[0].audiences: "), "{e}");
    let e = error("audiences = [\"demo\"]", "audiences = [\"demo\"]\nleeway = \"11m\"");
    assert!(e.contains("providers[0].leeway: must be at most 600s"), "{e}");

    let e = error("url = \"http://127.0.0.1:9000\"", "url = \"ftp://x\"");
    assert!(e.contains(":22:1: upstreams[0].url: "), "{e}");

    let e = error("path_case = \"sensitive\"", "path_case = \"upper\"");
    assert!(e.contains(":33:1: policy.path_case: "), "{e}");
    let e = error("labels = { app = \"api\" }", "labels = { \"ward.dev/route\" = \"x\" }");
    assert!(e.contains(":29:1: routes[0].labels: "), "{e}");
}

#[test]
fn unknown_fields_and_type_errors_are_located() {
    let e = error("prefix = \"/api/\"", "prefix = \"/api/\"\npublik = true");
    assert!(e.contains(":27:1: routes[0].publik: unknown field `publik`"), "{e}");
    let e = error("[gateway.tls]", "[gateway.tls]\nmin_version = 1.0");
    assert!(e.contains(":6:15: gateway.tls.min_version: invalid type"), "{e}");
    let e = error("[gateway.tls]", "[gateway.tls]\nmin_version = \"1.1\"");
    assert!(e.contains(":6:1: gateway.tls.min_version: `1.1` is not supported"), "{e}");
}

#[test]
fn insecure_key_setups_are_refused() {
    let hs_with_public = GOOD
        .replace("jwks_file = \"keys/jwks.json\"", "[[providers.keys]]\nalg = \"HS256\"\npublic_key_file = \"k.pem\"");
    let e = parse(&hs_with_public).unwrap_err().to_string();
    assert!(e.contains("providers[0].keys[0].secret_file: HS256 needs secret_file"), "{e}");
    let none = GOOD
        .replace("jwks_file = \"keys/jwks.json\"", "[[providers.keys]]\nalg = \"none\"\npublic_key_file = \"k.pem\"");
    let e = parse(&none).unwrap_err().to_string();
    assert!(e.contains("providers[0].keys[0].alg: unsupported algorithm `none`"), "{e}");
    let http_jwks = GOOD.replace("jwks_file = \"keys/jwks.json\"", "jwks_url = \"http://idp/jwks\"");
    assert!(parse(&http_jwks).unwrap_err().to_string().contains("must be an https:// URL"));
}

#[test]
fn a_missing_file_is_reported_by_name() {
    let e = ward_config::load(Path::new("/nonexistent/ward.toml")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/ward.toml: cannot read"), "{e}");
}

#[test]
fn the_v0_audit_file_is_refused_with_a_pointer_to_the_log() {
    let old = GOOD.replace("dir = \"audit\"", "file = \"audit/audit.jsonl\"");
    let e = parse(&old).unwrap_err().to_string();
    assert!(e.contains("audit.file: the JSON-lines audit file was replaced by the tamper-evident log"), "{e}");
    let c = parse(GOOD).unwrap();
    assert_eq!(c.audit.commit_interval, std::time::Duration::from_millis(1));
    assert_eq!((c.audit.commit_records, c.audit.checkpoint_every, c.audit.danger_async), (4096, 100_000, false));
    assert!(c.audit.dir.ends_with("audit") && c.audit.checkpoint_key_file.ends_with("keys/audit-checkpoint.key"));
    let e = parse(&GOOD.replace("dir = \"audit\"", "dir = \"audit\"\norigin = \"a+b\"")).unwrap_err().to_string();
    assert!(e.contains("audit.origin"), "{e}");
}

#[test]
fn exporters_are_validated_per_kind() {
    let with = |extra: &str| {
        GOOD.replace(
            "checkpoint_key_file = \"keys/audit-checkpoint.key\"",
            &format!("checkpoint_key_file = \"keys/audit-checkpoint.key\"\n{extra}"),
        )
    };
    let ok = with(
        "[[audit.export]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"siem.example:6514\"\nca_file = \"ca.pem\"\nformat = \"cef\"\n\
         [[audit.export]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://siem.example/in\"\nca_file = \"ca.pem\"\n\
         [[audit.export]]\nname = \"copy\"\nkind = \"file\"\npath = \"out.jsonl\"\nformat = \"raw\"\nbatch = 10\n",
    );
    let c = parse(&ok).unwrap();
    assert_eq!(c.audit.export.len(), 3);
    match &c.audit.export[0].target {
        ward_export::Target::Syslog { server_name, .. } => assert_eq!(server_name, "siem.example"),
        other => panic!("{other:?}"),
    }
    for (extra, expect) in [
        (
            "[[audit.export]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://x/\"\nca_file = \"c\"\n",
            "audit.export[0].url: must be https",
        ),
        (
            "[[audit.export]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x/\"\nca_file = \"c\"\nformat = \"cef\"\n",
            "audit.export[0].format: webhooks carry JSON",
        ),
        (
            "[[audit.export]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"x:1\"\n",
            "audit.export[0].ca_file: required for kind `syslog`",
        ),
        (
            "[[audit.export]]\nname = \"a\"\nkind = \"file\"\npath = \"p\"\nurl = \"https://x\"\n",
            "audit.export[0].url: does not apply to kind `file`",
        ),
        ("[[audit.export]]\nname = \"a/b\"\nkind = \"file\"\npath = \"p\"\n", "audit.export[0].name: use letters"),
        (
            "[[audit.export]]\nname = \"a\"\nkind = \"kafka\"\n",
            "audit.export[0].kind: `kafka` is not one of file, syslog, webhook",
        ),
        (
            "[[audit.export]]\nname = \"a\"\nkind = \"file\"\npath = \"p\"\nformat = \"xml\"\n",
            "audit.export[0].format: `xml` is not one of ocsf, cef, raw",
        ),
    ] {
        let e = parse(&with(extra)).unwrap_err().to_string();
        assert!(e.contains(expect), "{e}\nexpected: {expect}");
    }
}

#[test]
fn identity_sections_are_validated_with_their_fields_named() {
    let control = "\n[control]\nlisten = \"127.0.0.1:9443\"\nadmin_token_file = \"admin.token\"\ntrust_domain = \"prod.example.org\"\n";
    let registry = "[[control.registry]]\nname = \"orders\"\nwriters = [\"spiffe://prod.example.org/orders\"]\nreaders = [\"*\"]\n";
    let c = parse(&format!("{GOOD}{control}{registry}")).unwrap();
    let ctl = c.control.unwrap();
    assert_eq!(
        (ctl.trust_domain.as_deref(), ctl.registry[0].readers.as_slice()),
        (Some("prod.example.org"), &["*".to_owned()][..])
    );
    let bad = |text: String| parse(&text).unwrap_err().to_string();
    let e = bad(format!("{GOOD}{}{registry}", control.replace("prod.example.org", "Prod")));
    assert!(e.contains("control.trust_domain"), "{e}");
    let e = bad(format!("{GOOD}{control}{}", registry.replace("spiffe://prod.example.org/orders", "https://x")));
    assert!(e.contains("control.registry[0].writers"), "{e}");
    let e = bad(format!("{GOOD}{control}{registry}{registry}"));
    assert!(e.contains("control.registry[1].name"), "a name once: {e}");
    let e = bad(format!("{GOOD}{}{registry}", control.replace("trust_domain = \"prod.example.org\"\n", "")));
    assert!(e.contains("needs [control] trust_domain"), "{e}");

    let mtls = "[gateway.mtls]\nmode = \"LAX\"\nbundle_file = \"b.pem\"\ntrust_domain = \"prod.example.org\"\n";
    let e = bad(GOOD.replacen("[audit]", &format!("{mtls}\n[audit]"), 1));
    assert!(e.contains("gateway.mtls.mode: `LAX` is not one of STRICT, PERMISSIVE, DISABLE"), "{e}");
    let strict = mtls.replace("LAX", "STRICT");
    let c = parse(&GOOD.replacen("[audit]", &format!("{strict}\n[audit]"), 1)).unwrap();
    assert_eq!(c.gateway.tls.mtls.unwrap().bundle_file, Path::new("/etc/ward/b.pem"));
    let e = bad(GOOD.replacen(
        "url = \"http://127.0.0.1:9000\"",
        "url = \"http://127.0.0.1:9000\"\nspiffe_id = \"spiffe://prod.example.org/x\"",
        1,
    ));
    assert!(e.contains("upstreams[0].url: an upstream with a spiffe_id must be https://"), "{e}");
}

#[test]
fn detection_defaults_overrides_and_rate_limits() {
    let text = format!(
        "{GOOD}\n[detect]\nallowlist = [\"10.0.0.0/8\", \"principal:health\"]\nadmin_routes = [\"api\"]\ndisable = [\"ward/scan\"]\n\n\
         [[detect.scenarios]]\nname = \"ward/brute-force-ip\"\nreasons = [\"login_failed\"]\nkey = \"ip\"\ncapacity = 3\nleak = \"1m\"\nseverity = \"high\"\naction = \"block\"\nduration = \"5m\"\n\n\
         [[detect.scenarios]]\nname = \"site/404s\"\nstatuses = [404]\nkey = \"subnet\"\ndistinct = \"path\"\ncapacity = 50\nleak = \"10s\"\nseverity = \"medium\"\n\n\
         [[rate_limits]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = 100\nper = \"1s\"\nburst = 20\n\n\
         [[rate_limits]]\nname = \"tenant\"\nkey = \"claim:tenant\"\nrate = 10\nper = \"1m\"\nroutes = [\"api\"]\nshadow = true\n"
    );
    let c = parse(&text).unwrap();
    let d = c.detect.unwrap();
    let names: Vec<&str> = d.settings.engine.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert!(!names.contains(&"ward/scan") && names.contains(&"site/404s") && names.contains(&"ward/token-replay"));
    let bf = d.settings.engine.scenarios.iter().find(|s| s.name == "ward/brute-force-ip").unwrap();
    assert_eq!((bf.capacity, bf.duration.as_secs()), (3, 300), "a scenario named like a default replaces it");
    assert_eq!(d.settings.allowlist.len(), 2);
    assert_eq!(d.settings.state_file.as_deref(), Some(Path::new("/etc/ward/detect.json")));
    assert!(d.settings.engine.anomaly.is_some(), "baselines are on by default");
    assert_eq!(c.rate_limits.len(), 2);
    assert_eq!(c.rate_limits[0].gcra.quota().burst, 20);
    assert_eq!(c.rate_limits[1].key, ward_config::RateKey::Claim("tenant".into()));
    assert!(c.rate_limits[1].shadow && c.rate_limits[1].key.needs_identity());
    assert_eq!(c.gateway.limits.max_connections_per_ip, 256);
}

#[test]
fn detection_errors_name_their_field() {
    let with = |extra: &str| parse(&format!("{GOOD}\n{extra}")).unwrap_err().to_string();
    let e = with("[detect]\nallowlist = [\"10.0.0.0/33\"]\n");
    assert!(e.contains("detect.allowlist[0]") && e.contains("exceeds 32"), "{e}");
    let e = with("[detect]\ndisable = [\"ward/nope\"]\n");
    assert!(e.contains("detect.disable[0]") && e.contains("not one of Ward's scenarios"), "{e}");
    let e = with(
        "[detect]\n[[detect.scenarios]]\nname = \"x\"\nreasons = [\"login_faild\"]\nkey = \"ip\"\ncapacity = 1\nleak = \"1s\"\nseverity = \"high\"\n",
    );
    assert!(e.contains("detect.scenarios[0].reasons[0]") && e.contains("login_faild"), "{e}");
    let e = with(
        "[detect]\n[[detect.scenarios]]\nname = \"x\"\nreasons = [\"login_failed\"]\nkey = \"user\"\ncapacity = 1\nleak = \"1s\"\nseverity = \"high\"\n",
    );
    assert!(e.contains("detect.scenarios[0].key") && e.contains("ip, subnet, principal"), "{e}");
    let e = with("[detect]\nadmin_routes = [\"nope\"]\n");
    assert!(e.contains("detect.admin_routes") && e.contains("no route named `nope`"), "{e}");
    let e = with("[[rate_limits]]\nname = \"a\"\nkey = \"cookie:x\"\nrate = 1\nper = \"1s\"\n");
    assert!(e.contains("rate_limits[0].key"), "{e}");
    let e = with("[[rate_limits]]\nname = \"a\"\nkey = \"ip\"\nrate = 0\nper = \"1s\"\n");
    assert!(e.contains("rate_limits[0].rate") && e.contains("at least 1"), "{e}");
    assert!(e.starts_with("/etc/ward/ward.toml:"), "{e}");
}

#[test]
fn audit_witnesses_are_validated_and_join_the_verify_keys() {
    let (w1, _) = ward_merkle::Cosigner::generate("w1.example").unwrap();
    let (w2, _) = ward_merkle::Cosigner::generate("w2.example").unwrap();
    let (k1, k2) = (w1.verifier_key(), w2.verifier_key());
    let with = |extra: &str| {
        GOOD.replace(
            "checkpoint_key_file = \"keys/audit-checkpoint.key\"",
            &format!("checkpoint_key_file = \"keys/audit-checkpoint.key\"\nwitness_keys = [\"{k1}\"]\n{extra}"),
        )
    };
    let ok = with(&format!(
        "[[audit.witnesses]]\nurl = \"https://w1.example:8443/witness/\"\nkey = \"{k1}\"\nca_file = \"w1-ca.pem\"\n\
         [[audit.witnesses]]\nurl = \"https://w2.example/witness\"\nkey = \"{k2}\"\nca_file = \"/etc/w2.pem\"\n"
    ));
    let c = parse(&ok).unwrap();
    assert_eq!(c.audit.witnesses.len(), 2);
    assert_eq!(c.audit.witnesses[0].url, "https://w1.example:8443/witness");
    assert_eq!(c.audit.witnesses[0].ca_file, Path::new("/etc/ward/w1-ca.pem"));
    // Each witness's key is required by `verify`, once.
    assert_eq!(c.audit.witness_keys, vec![k1.clone(), k2.clone()]);
    for (extra, expect) in [
        (
            format!("[[audit.witnesses]]\nurl = \"http://w1.example/witness\"\nkey = \"{k1}\"\nca_file = \"c\"\n"),
            "audit.witnesses[0].url: must be an https URL prefix",
        ),
        (
            format!("[[audit.witnesses]]\nurl = \"https://w1.example/w?x=1\"\nkey = \"{k1}\"\nca_file = \"c\"\n"),
            "audit.witnesses[0].url: a URL prefix takes no query",
        ),
        (
            "[[audit.witnesses]]\nurl = \"https://w1.example/w\"\nkey = \"w1.example+00000000+AA==\"\nca_file = \"c\"\n"
                .to_owned(),
            "audit.witnesses[0].key: not a witness key",
        ),
        (
            format!(
                "[[audit.witnesses]]\nurl = \"https://a/w\"\nkey = \"{k1}\"\nca_file = \"c\"\n\
                 [[audit.witnesses]]\nurl = \"https://b/w\"\nkey = \"{k1}\"\nca_file = \"c\"\n"
            ),
            "audit.witnesses[1].key: witness `w1.example` is listed twice",
        ),
        (
            format!("[[audit.witnesses]]\nurl = \"https://a/w\"\nkey = \"{k1}\"\nca_file = \"\"\n"),
            "audit.witnesses[0].ca_file: required",
        ),
        (
            format!("[[audit.witnesses]]\nurl = \"https://a/w\"\nkey = \"{k1}\"\n"),
            "ca_file",
        ),
    ] {
        let e = parse(&with(&extra)).unwrap_err().to_string();
        assert!(e.contains(expect), "{e}\nexpected: {expect}");
    }
}
