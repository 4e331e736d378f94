//! The service registry refuses a denied SVID, in `ward control` and in
//! `ward up` (issue 16): on a new connection and on one kept alive from
//! before the denial. Before the fix, `ward control` alone served its mTLS
//! listener without the deny-list and the registry never asked it, so a
//! certificate revoked by serial and by SPIFFE ID still registered an
//! attacker's address. Driven with the real binary and its CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

const TD: &str = "registry.example.org";
const ORDERS: &str = "spiffe://registry.example.org/ns/shop/sa/orders";

/// `orders` may register; any SVID of the trust domain may look it up.
fn registry_rule() -> String {
    format!("[[control.registry]]\nname = \"orders\"\nwriters = [\"{ORDERS}\"]\nreaders = [\"*\"]\n")
}

fn ward(dir: &Path, args: &[&str]) -> String {
    let out = common::ward_cli(dir, args);
    assert!(out.status.success(), "ward {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A client presenting `name`.crt/.key from `dir`, trusting `ca`.
fn svid_client(dir: &Path, name: &str, ca: &Path) -> reqwest::Client {
    let chain = std::fs::read_to_string(dir.join(format!("{name}.crt"))).unwrap();
    let key = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap()])
        .identity(reqwest::Identity::from_pem(format!("{chain}{key}").as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn register(client: &reqwest::Client, base: &str) -> Result<u16, reqwest::Error> {
    let body = serde_json::json!({"addresses": ["203.0.113.66:443"], "ttl": 60});
    Ok(client.put(format!("{base}/registry/orders")).json(&body).send().await?.status().as_u16())
}

/// Issue `orders` an SVID through the CLI (`cli` names the control plane),
/// register with it, deny it by `how` (`--serial` or `--spiffe-id`), and
/// check that the registry refuses it on the kept-alive connection and on
/// a new one.
async fn denied_svid_cannot_register(dir: &Path, base: &str, cli: &[&str], ca: &Path, how: &str) {
    let issued = ward(dir, &[&["cert", "issue", "--spiffe-id", ORDERS, "--out", "orders"][..], cli].concat());
    let serial = issued.split("(serial ").nth(1).unwrap().split(',').next().unwrap().to_owned();
    let client = svid_client(dir, "orders", ca);
    assert_eq!(register(&client, base).await.unwrap(), 200, "registered while valid");
    let value = if how == "--serial" { serial.as_str() } else { ORDERS };
    ward(dir, &[&["cert", "revoke", how, value][..], cli].concat());
    assert_eq!(register(&client, base).await.unwrap(), 401, "{how}: refused on the connection kept alive");
    let fresh = svid_client(dir, "orders", ca);
    assert!(!matches!(register(&fresh, base).await, Ok(200)), "{how}: refused on a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ward_control_refuses_a_denied_svid_at_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = common::write_control_dir(d, TD, &registry_rule());
    ward(d, &["ca", "init", "--trust-domain", TD, "--dir", "ca"]);
    let _control = common::ControlProcess::start(d, port);
    let base = format!("https://localhost:{port}");
    let cli = ["--config", "ward.toml", "--ca", "ca.crt"];
    denied_svid_cannot_register(d, &base, &cli, &d.join("ca.crt"), "--spiffe-id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ward_up_refuses_a_denied_svid_at_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A first run makes the data directory; then it gets a CA and a registry.
    common::WardUp::start(d).stop();
    ward(d, &["ca", "init", "--trust-domain", TD, "--dir", "ward-data/spiffe-ca"]);
    let toml = d.join("ward-data/ward.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("[control]\n", &format!("[control]\ntrust_domain = \"{TD}\"\nca_dir = \"spiffe-ca\"\n"));
    std::fs::write(&toml, format!("{text}\n{}", registry_rule())).unwrap();
    let up = common::WardUp::start(d);
    let base = up.control_url();
    let cli = ["--data-dir", "ward-data", "--control", base.as_str()];
    denied_svid_cannot_register(d, &base, &cli, &d.join("ward-data/ca.crt"), "--serial").await;
    up.stop();
}
