//! The gateway's audit log exported while it serves: to a real rsyslog
//! (RFC 5424 over TLS, GnuTLS on the other end, CEF payload) and to a file
//! of OCSF events. rsyslog and rsyslog-gnutls come from Debian (`./test`
//! installs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

struct Rsyslog {
    child: Child,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rsyslogd() -> &'static str {
    let bin = "/usr/sbin/rsyslogd";
    // The TLS driver is its own package (rsyslog-gnutls).
    let gtls = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("rsyslog/lmnsd_gtls.so").exists());
    assert!(
        Path::new(bin).exists() && gtls,
        "rsyslogd with TLS support is not installed: `apt-get install rsyslog rsyslog-gnutls` (`./test` does this)"
    );
    bin
}

/// rsyslog listening for RFC 5425 (TLS, octet counting) on an ephemeral
/// port, writing each message as received to `out`.
fn start_rsyslog(dir: &Path, out: &Path) -> (Rsyslog, u16) {
    let bin = rsyslogd();
    let pki = ward_pki::generate_local_pki("Syslog test CA", &["localhost"]).unwrap();
    std::fs::write(dir.join("syslog-ca.pem"), &pki.ca.cert_pem).unwrap();
    std::fs::write(dir.join("syslog.crt"), &pki.server.cert_pem).unwrap();
    std::fs::write(dir.join("syslog.key"), pki.server.key_pem.as_bytes()).unwrap();
    // rsyslog binds the port itself: take a free one from the kernel first.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).unwrap();
    let d = dir.display();
    let conf = format!(
        r#"global(workDirectory="{work}" DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{d}/syslog-ca.pem"
       DefaultNetstreamDriverCertFile="{d}/syslog.crt"
       DefaultNetstreamDriverKeyFile="{d}/syslog.key")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.Authmode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\n")
*.* action(type="omfile" file="{out}" template="raw")
"#,
        work = work.display(),
        out = out.display()
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
    let child = Command::new(bin)
        .args(["-n", "-f"])
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Rsyslog { child };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (guard, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("rsyslogd did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_reach_rsyslog_over_tls_and_an_ocsf_file() {
    let dir = tempfile::tempdir().unwrap();
    let received = dir.path().join("rsyslog-received.log");
    let (_rsyslog, port) = start_rsyslog(dir.path(), &received);
    let (up, _) = common::start_upstream().await;
    let extra = format!(
        r#"
[[audit.export]]
name = "rsyslog"
kind = "syslog"
address = "127.0.0.1:{port}"
server_name = "localhost"
ca_file = "syslog-ca.pem"
hostname = "gw-test"
format = "cef"
batch = 16

[[audit.export]]
name = "ocsf-file"
kind = "file"
path = "siem/ocsf.jsonl"
"#
    );
    let (path, signer, ca_pem) = common::write_config(dir.path(), &format!("http://{up}"), &extra, false);
    let config = ward_config::load(&path).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap();
    let addr = gateway.local_addr().unwrap();
    let running = gateway.spawn().unwrap();
    let client = common::client(&ca_pem);
    let claims = json!({"iss": common::ISSUER, "aud": common::AUDIENCE, "sub": "alice", "iat": common::now(),
                        "exp": common::now() + 300, "roles": ["reader"]});
    let token = signer.sign(&serde_json::from_value(claims).unwrap()).unwrap();
    let mut ids = Vec::new();
    for i in 0..40 {
        let mut req = client.get(format!("https://localhost:{}/api/items/{i}", addr.port()));
        if i % 4 != 0 {
            req = req.bearer_auth(&token);
        }
        let r = req.send().await.unwrap();
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }

    // rsyslog receives every decision (exporters run while the gateway serves).
    let mut text = String::new();
    for _ in 0..200 {
        text = std::fs::read_to_string(&received).unwrap_or_default();
        if ids.iter().all(|id| text.contains(&format!("externalId={id}"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &ids {
        assert!(text.contains(&format!("externalId={id}")), "rsyslog never got {id}:\n{text}");
    }
    let denied = text.lines().find(|l| l.contains("|token_missing|")).unwrap();
    assert!(denied.starts_with("<108>1 ") && denied.contains(" gw-test ward "), "{denied}");
    assert!(denied.contains("|token_missing|request deny|7|") && denied.contains("cn1=401"), "{denied}");
    assert!(!text.contains("alice"), "no personal data in clear leaves the machine");

    // The file exporter wrote OCSF events for the same records.
    let ocsf = dir.path().join("siem/ocsf.jsonl");
    let mut events: Vec<Value> = Vec::new();
    for _ in 0..100 {
        events = std::fs::read_to_string(&ocsf)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if events.iter().filter(|e| e["unmapped"]["ward"]["event"] == "request").count() == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.iter().filter(|e| e["class_uid"] == 3002).count(), 10, "401s are Authentication failures");
    assert_eq!(events.iter().filter(|e| e["class_uid"] == 4002).count(), 30);
    assert!(events.iter().any(|e| e["class_uid"] == 6002 && e["activity_name"] == "Start"));
    let seq: Vec<u64> = events.iter().map(|e| e["metadata"]["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seq, (0..seq.len() as u64).collect::<Vec<_>>(), "in log order, none missing");
    running.shutdown().await;
    let cursor = std::fs::read_to_string(dir.path().join("audit/export/ocsf-file.cursor")).unwrap();
    assert!(cursor.trim().parse::<u64>().unwrap() >= 40);
}
