//! Ward's decisions reach CrowdSec bouncers: `ward up`, the operator CLI
//! (`ward bouncer add`, `ward block add|list|remove`, `ward detect status`)
//! and a bouncer written in Python against CrowdSec's published bouncer
//! API (`tests/bouncer/crowdsec_bouncer.py`), which sees new, lifted and
//! expired decisions on its pulls; the live-mode lookup for one address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn ward(dir: &std::path::Path, control: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .args(["--data-dir", "ward-data", "--control", control])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "ward {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

struct Bouncer {
    child: Child,
    out: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Bouncer {
    fn line(&mut self) -> Value {
        let line = self.out.next().expect("the bouncer printed a line").unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn pull(&mut self) -> Value {
        self.child.stdin.as_mut().unwrap().write_all(b"next\n").unwrap();
        self.line()
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect()
}

#[test]
fn a_crowdsec_bouncer_receives_new_lifted_and_expired_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let up = common::WardUp::start(dir.path());
    let control = up.control_url();

    let said = ward(dir.path(), &control, &["bouncer", "add", "firewall"]);
    let key = said.lines().last().unwrap().trim().to_owned();
    assert_eq!(key.len(), 64, "{said}");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bouncer/crowdsec_bouncer.py");
    let mut child = common::python(&["requests"])
        .args([script, "--url", &control, "--key", &key, "--ca", "ward-data/ca.crt"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut bouncer = Bouncer { child, out };
    assert_eq!(bouncer.line()["wrong_key_status"], 403, "a wrong API key is refused");
    let first = bouncer.line();
    assert_eq!(first["banned"], serde_json::json!([]), "startup: nothing blocked yet");

    let added = ward(dir.path(), &control, &["block", "add", "192.0.2.7", "--for", "1h", "--reason", "seen probing"]);
    assert!(added.starts_with("blocked\n") && added.contains("192.0.2.7"), "{added}");
    let id: u64 = added.lines().nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    ward(dir.path(), &control, &["block", "add", "198.51.100.0/24", "--for", "1h"]);
    ward(dir.path(), &control, &["block", "add", "203.0.113.9", "--for", "2s"]);
    ward(dir.path(), &control, &["block", "add", "principal:mallory", "--for", "1h"]);
    let list = ward(dir.path(), &control, &["block", "list"]);
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(list.contains("principal:mallory") && list.contains("manual"), "{list}");

    let second = bouncer.pull();
    assert_eq!(
        strings(&second["new"]),
        ["192.0.2.7", "198.51.100.0/24", "203.0.113.9"],
        "principals are not for firewalls"
    );
    assert_eq!(strings(&second["scopes"]), ["Ip", "Range"]);

    ward(dir.path(), &control, &["block", "remove", &id.to_string()]);
    std::thread::sleep(Duration::from_millis(3200));
    let third = bouncer.pull();
    assert_eq!(strings(&third["deleted"]), ["192.0.2.7", "203.0.113.9"], "lifted and expired");
    assert_eq!(strings(&third["banned"]), ["198.51.100.0/24"]);
    let fourth = bouncer.pull();
    assert!(fourth["new"].as_array().unwrap().is_empty() && fourth["deleted"].as_array().unwrap().is_empty());

    // Live mode: the decisions covering one address.
    let ca = std::fs::read(dir.path().join("ward-data/ca.crt")).unwrap();
    let http =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]).build().unwrap();
    let live = |ip: &str, key: &str| {
        let url = format!("{control}/v1/decisions?ip={ip}");
        let http = http.clone();
        let key = key.to_owned();
        async move {
            let r = http.get(url).header("x-api-key", key).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, covering) = rt.block_on(live("198.51.100.77", &key));
    assert_eq!(status, 200);
    assert_eq!(covering[0]["value"], "198.51.100.0/24", "{covering}");
    assert_eq!(covering[0]["scope"], "Range");
    assert_eq!(rt.block_on(live("192.0.2.200", &key)), (200, Value::Null), "nothing covers it");
    assert_eq!(rt.block_on(live("198.51.100.77", "wrong")).0, 403);

    let status = ward(dir.path(), &control, &["detect", "status"]);
    assert!(status.contains("bouncer           firewall (last pull 20"), "{status}");
    assert!(status.contains("active blocks     principal 1  range 1"), "{status}");
    drop(bouncer.child.stdin.take());
    assert!(bouncer.child.wait().unwrap().success());

    // Something that is neither an address, a range nor a principal is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["block", "add", "bad target", "--data-dir", "ward-data", "--control", &control])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("400"), "{}", String::from_utf8_lossy(&out.stderr));
}
