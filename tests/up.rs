//! `ward up` on an empty directory, then exactly the commands it prints
//! (the same ones the README shows), run by bash with real curl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::WardUp;

fn start(dir: &std::path::Path) -> WardUp {
    WardUp::start(dir)
}

fn bash(dir: &std::path::Path, script: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ward_up_then_the_printed_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path());
    let issue = up.line("TOKEN=$(");
    let curl = up.line("curl --cacert ward-data/ca.crt -H");
    // Exactly the two printed lines, with -sS -w to see the status too.
    let body = bash(dir.path(), &format!("set -e\n{issue}\n{curl} -sS -w '\\n%{{http_code}}'"));
    let (json, status) = body.rsplit_once('\n').unwrap();
    assert_eq!(status, "200", "{body}");
    let seen: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(seen["principal"], "alice");
    assert_eq!(seen["headers"]["x-ward-roles"], "reader");
    // The no-token line answers 401.
    let unauth = up.line("curl --cacert ward-data/ca.crt -i");
    let out = bash(dir.path(), &unauth.replace("    # no token: 401", ""));
    assert!(out.starts_with("HTTP/2 401") || out.starts_with("HTTP/1.1 401"), "{out}");

    // The control plane answers discovery on its own TLS listener.
    let url = format!("{}/.well-known/openid-configuration", up.control_url());
    let disco = bash(dir.path(), &format!("curl -sS --cacert ward-data/ca.crt {url}"));
    let disco: serde_json::Value = serde_json::from_str(&disco).unwrap();
    assert_eq!(disco["issuer"].as_str().map(|i| format!("{i}/.well-known/openid-configuration")), Some(url.to_owned()));

    // Keys are private, never printed.
    use std::os::unix::fs::PermissionsExt;
    for key in [
        "ca.key",
        "tls/server.key",
        "keys/token-signing.key",
        "keys/audit-hmac.key",
        "keys/control-admin.token",
        "control/control.redb",
        "detect.json",
    ] {
        let mode = std::fs::metadata(dir.path().join("ward-data").join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    assert!(!up.printed.join("\n").contains("PRIVATE KEY"));
    // Threat detection is on: the printed status line reports it.
    let status = up.line_with(" detect status ");
    let status = bash(dir.path(), status.split("    #").next().unwrap());
    assert!(status.contains("events observed") && status.contains("alerts            critical 0"), "{status}");
    let ca = std::fs::read(dir.path().join("ward-data/ca.crt")).unwrap();
    up.stop();

    // A second `ward up` reuses the data directory and its keys.
    let again = start(dir.path());
    assert_eq!(std::fs::read(dir.path().join("ward-data/ca.crt")).unwrap(), ca);
    let issue = again.line("TOKEN=$(");
    let curl = again.line("curl --cacert ward-data/ca.crt -H");
    let body = bash(dir.path(), &format!("set -e\n{issue}\n{curl} -sS -o /dev/null -w '%{{http_code}}'"));
    assert_eq!(body, "200");
    let printed = again.printed.clone();
    again.stop();
    let printed_line = |needle: &str| printed.iter().map(|l| l.trim()).find(|l| l.contains(needle)).unwrap().to_owned();

    // Every request above left exactly one audit record in the log, between
    // the two runs' startup and shutdown events, and the log verifies.
    let tail = bash(dir.path(), &printed_line(" audit tail ").replace("-n 2", "-n 100"));
    let records: Vec<serde_json::Value> = tail.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let requests: Vec<&str> =
        records.iter().filter(|r| r["event"] == "request").map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(requests, ["allowed_by_policy", "token_missing", "allowed_by_policy"]);
    let events: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events.iter().filter(|e| **e == "startup").count(), 2, "{events:?}");
    assert_eq!(events.iter().filter(|e| **e == "shutdown").count(), 2, "{events:?}");
    assert!(records.iter().all(|r| r.get("principal").is_none()), "no principal in clear");
    let verify = bash(dir.path(), &printed_line(" audit verify "));
    assert!(verify.ends_with("ok\n") && verify.contains("checked records 0.."), "{verify}");
    let mode = std::fs::metadata(dir.path().join("ward-data/keys/audit-checkpoint.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn check_config_reports_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.toml");
    std::fs::write(&path, "[gateway]\nlisten = \"nowhere\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ward")).arg("check-config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ward.toml:1:1") && err.contains("missing field `tls`"), "{err}");
}

/// A port that is taken: `ward up` fails at once and names the busy
/// address (for the gateway and for the control plane), with a hint.
#[test]
fn ward_up_on_a_taken_port_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    for (flag, gateway, control) in
        [("--listen", busy.as_str(), "127.0.0.1:0"), ("--control-listen", "127.0.0.1:0", busy.as_str())]
    {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["up", "--data-dir", "ward-data", "--listen", gateway, "--control-listen", control])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: {said}");
        assert!(said.contains(&format!("cannot listen on {busy}")), "{flag}: the busy address is named: {said}");
        assert!(said.contains("--listen ADDR"), "{flag}: and how to pick another: {said}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{flag}: nothing says it is up");
    }
}

/// The embedded default is one system: a `client_credentials` token from
/// the control plane of `ward up` is accepted by its gateway, refused once
/// revoked through `/oauth2/revoke` (`token_revoked`), and a token of an
/// issuer nobody configured is refused as `token_bad_issuer`. The shell
/// lines are the README walkthrough's, with this run's addresses.
#[test]
fn the_gateway_of_ward_up_trusts_its_own_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(dir.path());
    let control = up.control_url();
    let gateway = up.line("gateway ").split_whitespace().nth(1).unwrap().to_owned();
    let ward = env!("CARGO_BIN_EXE_ward");
    let script = format!(
        r#"set -e
SECRET=$({ward} client create --data-dir ward-data --control {control} --id demo --audience ward-demo --role reader | sed -n 's/^client_secret=//p')
TOKEN=$(curl -sS --cacert ward-data/ca.crt -u "demo:$SECRET" -d grant_type=client_credentials {control}/oauth2/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -sS --cacert ward-data/ca.crt -H "Authorization: Bearer $TOKEN" {gateway}/api/hello -o /dev/null -w '%{{http_code}}\n'
curl -sS --cacert ward-data/ca.crt -u "demo:$SECRET" -d "token=$TOKEN" {control}/oauth2/revoke -o /dev/null -w '%{{http_code}}\n'
curl -sS --cacert ward-data/ca.crt -H "Authorization: Bearer $TOKEN" {gateway}/api/hello -o /dev/null -w '%{{http_code}}\n'
"#
    );
    let said = bash(dir.path(), &script);
    assert_eq!(said.lines().collect::<Vec<_>>(), ["200", "200", "401"], "accepted, revoked, refused: {said}");

    // A token signed by a key nobody configured, naming an unknown issuer.
    let stranger = ward_authn::TokenSigner::from_pkcs8(
        ward_authn::Algorithm::EdDsa,
        &ward_authn::TokenSigner::generate_pkcs8(ward_authn::Algorithm::EdDsa).unwrap(),
    )
    .unwrap();
    let now = common::now();
    let claims = serde_json::json!({"iss": "https://stranger.example", "sub": "eve", "aud": "ward-demo",
        "exp": now + 300, "iat": now, "roles": ["reader"]});
    let forged = stranger.sign(claims.as_object().unwrap()).unwrap();
    let status = bash(
        dir.path(),
        &format!(
            "curl -sS --cacert ward-data/ca.crt -H 'Authorization: Bearer {forged}' {gateway}/api/hello -o /dev/null -w '%{{http_code}}'"
        ),
    );
    assert_eq!(status, "401");
    up.stop();
    let tail = bash(dir.path(), &format!("{ward} audit tail --data-dir ward-data -n 50"));
    let reasons: Vec<String> = tail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "request")
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons, ["allowed_by_policy", "token_revoked", "token_bad_issuer"]);
}
