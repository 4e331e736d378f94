//! Exporters against real destinations on loopback: a JSON-lines file, an
//! HTTPS webhook that fails before it accepts, and a TLS syslog collector
//! that drops the connection. Every durable record arrives at least once,
//! in order, and a restarted exporter resumes from its persisted cursor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use ward_audit::{AuditLog, LogOptions};
use ward_export::{ExportSpec, Exporter, Format, Target};
use ward_merkle::NoteSigner;

const ORIGIN: &str = "ward.test/export";

fn append(dir: &Path, from: u64, to: u64) {
    let signer = NoteSigner::from_seed(ORIGIN, &[2; 32]).unwrap();
    let (mut log, _) =
        AuditLog::open(dir, signer, LogOptions { segment_bytes: 8192, ..LogOptions::new(ORIGIN) }).unwrap();
    let records: Vec<Vec<u8>> = (from..to)
        .map(|i| {
            let decision = if i % 2 == 0 { "allow" } else { "deny" };
            format!(
                r#"{{"schema":"ward.audit.v2","event":"request","time":"2026-11-23T10:00:00.000Z","request_id":"r{i}","decision":"{decision}","reason":"denied_by_policy","method":"GET","path":"/api/{i}","status":403,"principal_hmac":"p","client_ip_hmac":"c"}}"#
            )
            .into_bytes()
        })
        .collect();
    log.append(records.iter().map(Vec::as_slice)).unwrap();
    log.checkpoint(SystemTime::now()).unwrap();
}

/// Run `exporter` until its cursor reaches `until`, then stop it.
async fn run_until(exporter: Exporter, until: u64, durable: u64) {
    let status = exporter.status();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(exporter.run(move || durable, stopped));
    for _ in 0..600 {
        if status.delivered.load(Ordering::Acquire) >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status.delivered.load(Ordering::Acquire), until, "the exporter did not catch up");
    stop.send(true).unwrap();
    task.await.unwrap();
}

fn spec(name: &str, target: Target, format: Format) -> ExportSpec {
    ExportSpec { name: name.into(), target, format, batch: 64, events: Vec::new() }
}

#[tokio::test]
async fn file_export_resumes_from_its_cursor_and_never_passes_the_durable_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit");
    append(&log, 0, 300);
    let out = dir.path().join("siem/ocsf.jsonl");
    let target = Target::File { path: out.clone() };

    // Only 250 records are durable: the rest wait.
    let e = Exporter::new(spec("file", target.clone(), Format::Ocsf), &log, ORIGIN).unwrap();
    run_until(e, 250, 250).await;
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&out).len(), 250);

    // More records, a new exporter instance: it resumes at 250.
    append(&log, 300, 700);
    let e = Exporter::new(spec("file", target, Format::Ocsf), &log, ORIGIN).unwrap();
    run_until(e, 700, 700).await;
    let events = lines(&out);
    let seq: Vec<u64> = events.iter().map(|e| e["metadata"]["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seq, (0..700).collect::<Vec<_>>(), "every record exactly once, in order (no crash here)");
    assert_eq!(events[1]["class_uid"], 4002);
    assert_eq!(events[1]["metadata"]["uid"], format!("{ORIGIN}:1"));
    assert_eq!(std::fs::read_to_string(ward_export::cursor_path(&log, "file")).unwrap(), "700\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
}

fn pki(dir: &Path) -> (std::path::PathBuf, Arc<rustls::ServerConfig>) {
    let pki = ward_pki::generate_local_pki("Export test CA", &["localhost"]).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca.cert_pem).unwrap();
    let certs = CertificateDer::pem_slice_iter(pki.server.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    (ca, Arc::new(config))
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_export_retries_until_accepted_and_sends_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit");
    append(&log, 0, 200);
    let (ca, tls) = pki(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();

    // An HTTPS endpoint that answers 503 three times, then 200.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (rx, n) = (Arc::clone(&received), Arc::clone(&calls));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, rx, n) = (acceptor.clone(), Arc::clone(&rx), Arc::clone(&n));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (rx, n) = (Arc::clone(&rx), Arc::clone(&n));
                    async move {
                        assert_eq!(req.headers()["authorization"], "Bearer s3cret-token");
                        assert_eq!(req.headers()["content-type"], "application/json");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = if n.fetch_add(1, Ordering::AcqRel) < 3 {
                            503
                        } else {
                            let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
                            rx.lock().unwrap().extend(batch);
                            200
                        };
                        let mut r = http::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    let target = Target::Webhook {
        url: format!("https://localhost:{port}/ingest"),
        ca_file: ca.clone(),
        token_file: Some(token),
    };
    let e = Exporter::new(spec("hook", target, Format::Ocsf), &log, ORIGIN).unwrap();
    let status = e.status();
    run_until(e, 200, 200).await;
    assert!(status.failures.load(Ordering::Acquire) >= 3);
    let seq: BTreeSet<u64> =
        received.lock().unwrap().iter().map(|e| e["metadata"]["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seq, (0..200).collect(), "every record delivered");

    // CEF cannot go in a JSON webhook; plain http is refused.
    let bad = Target::Webhook { url: format!("https://localhost:{port}/"), ca_file: ca.clone(), token_file: None };
    assert!(Exporter::new(spec("x", bad, Format::Cef), &log, ORIGIN).is_err());
    let plain = Target::Webhook { url: "http://localhost:1/".into(), ca_file: ca, token_file: None };
    assert!(Exporter::new(spec("x", plain, Format::Ocsf), &log, ORIGIN).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_export_over_tls_reconnects_after_the_collector_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit");
    append(&log, 0, 400);
    let (ca, tls) = pki(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let rx = Arc::clone(&messages);
    tokio::spawn(async move {
        let mut connection = 0;
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            connection += 1;
            let Ok(mut tls) = acceptor.accept(tcp).await else { continue };
            // The first connection is dropped after 100 messages.
            let limit = if connection == 1 { 100 } else { usize::MAX };
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut taken = 0;
                loop {
                    // Octet counting: "LEN SP MSG".
                    while let Some(sp) = buf.iter().position(|b| *b == b' ') {
                        let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                        if buf.len() < sp + 1 + len {
                            break;
                        }
                        let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
                        buf.drain(..sp + 1 + len);
                        rx.lock().unwrap().push(msg);
                        taken += 1;
                        if taken >= limit {
                            return;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });

    let target = Target::Syslog {
        address: format!("127.0.0.1:{port}"),
        server_name: "localhost".into(),
        ca_file: ca,
        hostname: "gw-1".into(),
    };
    let e = Exporter::new(spec("syslog", target, Format::Cef), &log, ORIGIN).unwrap();
    let status = e.status();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(e.run(|| 400, stopped));
    // The dropped connection swallowed some records; the exporter notices
    // the close and re-sends its unconfirmed window on a new connection.
    let mut got = BTreeSet::new();
    for _ in 0..200 {
        got = messages.lock().unwrap().iter().map(|m| index_of(m)).collect();
        if got.len() == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, (0..400).collect(), "every record reached the collector at least once");
    assert_eq!(status.delivered.load(Ordering::Acquire), 400);
    assert_eq!(status.cursor.load(Ordering::Acquire), 0, "syslog has no acks: the resend window stays unconfirmed");
    stop.send(true).unwrap();
    task.await.unwrap();
    let all = messages.lock().unwrap().clone();
    assert!(all.len() > 400, "the window was re-sent");
    let m = &all[1];
    assert!(m.starts_with("<108>1 2026-11-23T10:00:00.000Z gw-1 ward "), "{m}");
    assert!(m.contains(" request [ward@32473 index=\"1\" origin=\"ward.test/export\"] CEF:0|Ward|Ward|"), "{m}");
    assert!(m.contains("|denied_by_policy|request deny|5|"), "{m}");
}

fn index_of(message: &str) -> u64 {
    let at = message.find("index=\"").unwrap() + 7;
    message[at..].split('"').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_events_filter_exports_only_those_records_and_still_advances() {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::from_seed(ORIGIN, &[2; 32]).unwrap();
    let (mut log, _) = AuditLog::open(dir.path(), signer, LogOptions::new(ORIGIN)).unwrap();
    let records: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            if i % 3 == 0 {
                format!(
                    r#"{{"event":"detection","time":"2026-11-23T10:00:00.000Z","request_id":"d{i}","decision":"deny","reason":"block_added","detection":{{"scenario":"ward/scan","severity":"high","action":"block"}}}}"#
                )
            } else {
                format!(r#"{{"event":"request","time":"2026-11-23T10:00:00.000Z","request_id":"r{i}","decision":"allow","reason":"allowed_by_policy"}}"#)
            }
            .into_bytes()
        })
        .collect();
    log.append(records.iter().map(Vec::as_slice)).unwrap();
    drop(log);
    let out = dir.path().join("alerts.jsonl");
    let mut spec = spec("alerts", Target::File { path: out.clone() }, Format::Ocsf);
    spec.events = vec!["detection".into()];
    let exporter = Exporter::new(spec, dir.path(), ORIGIN).unwrap();
    run_until(exporter, 30, 30).await;
    let lines: Vec<Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    for l in &lines {
        assert_eq!((l["class_uid"].as_u64(), l["severity"].as_str()), (Some(2004), Some("High")));
        assert_eq!(l["finding_info"]["title"], "ward/scan");
    }
    let cursor = std::fs::read_to_string(ward_export::cursor_path(dir.path(), "alerts")).unwrap();
    assert_eq!(cursor.trim(), "30", "records the filter passed over are not exported again");
}
