//! The probe the outside review ran, kept: both planes of one `ward up`
//! (the gateway and the control plane share one front door) against
//! slowloris, header floods, connection floods and idle connections, each
//! asserting that the offender is cut off, that another client is still
//! served, and that the refusal is in the audit log.
//!
//! Limits are small here (header_timeout 1 s, idle_timeout 4 s, 12
//! connections per address, max_connection_age 5 s) so cut-offs show in
//! seconds; every wait has a generous upper bound that today's defaults
//! (60 s idle, no age) would overrun.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const PER_IP: usize = 12;

struct Planes {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    up: Option<common::WardUp>,
    gateway: SocketAddr,
    control: SocketAddr,
    ca_pem: String,
}

fn port_in(line: &str) -> u16 {
    let at = line.find("https://").unwrap() + "https://".len();
    let authority: String = line[at..].chars().take_while(|c| *c != '/' && !c.is_whitespace()).collect();
    authority.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// `ward up` with the probe's limits on both listeners.
fn start() -> Planes {
    start_edited(|text| text)
}

/// As [`start`], with `edit` applied to `ward.toml` too.
fn start_edited(edit: impl FnOnce(String) -> String) -> Planes {
    let tmp = tempfile::tempdir().unwrap();
    // First run writes the data directory; then the limits are set.
    common::WardUp::start(tmp.path()).stop();
    let data = tmp.path().join("ward-data");
    let path = data.join("ward.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("[gateway.limits]\n").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let limits = format!(
        "header_timeout = \"1s\"\nhandshake_timeout = \"2s\"\nidle_timeout = \"4s\"\n\
         max_connection_age = \"5s\"\nmax_connections_per_ip = {PER_IP}\n"
    );
    let text = format!("{}{}\n\n[gateway.limits]\n{limits}\n[control.limits]\n{limits}", &text[..start], &text[end..]);
    std::fs::write(&path, edit(text)).unwrap();
    let up = common::WardUp::start(tmp.path());
    let gateway = SocketAddr::from(([127, 0, 0, 1], port_in(&up.line("curl --cacert ward-data/ca.crt -H"))));
    let control = SocketAddr::from(([127, 0, 0, 1], port_in(&up.control_url())));
    let ca_pem = std::fs::read_to_string(data.join("ca.crt")).unwrap();
    Planes { _tmp: tmp, data, up: Some(up), gateway, control, ca_pem }
}

impl Planes {
    fn connector(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }

    /// A TCP connection from `from` (another loopback address is another client).
    async fn tcp(&self, to: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        socket.connect(to).await
    }

    async fn tls(&self, to: SocketAddr, from: IpAddr, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp(to, from).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        self.connector(alpn).connect(name, tcp).await
    }

    /// One HTTP/1.1 request on a new TLS connection from `from`: the status.
    async fn status(&self, to: SocketAddr, from: IpAddr, path: &str) -> u16 {
        let mut s = self.tls(to, from, &[b"http/1.1"]).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// Stop `ward up` and read its audit log.
    fn stop(&mut self) -> Vec<Value> {
        if let Some(up) = self.up.take() {
            up.stop();
        }
        common::read_log(&self.data.join("audit"))
    }
}

fn other_client() -> IpAddr {
    IpAddr::from([127, 0, 0, 2])
}

fn me() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// How long until the peer closes `s` (EOF or error), reading and
/// discarding what it sends; `None` if it is still open after `within`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn connection_records<'a>(log: &'a [Value], listener: &str, reason: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|r| r["event"] == "connection" && r["connection"]["listener"] == listener && r["reason"] == reason)
        .collect()
}

const PLANES: [&str; 2] = ["gateway", "control plane"];

fn addr_of(p: &Planes, plane: &str) -> SocketAddr {
    if plane == "gateway" { p.gateway } else { p.control }
}

/// A path each plane answers without a token.
fn probe_path(plane: &str) -> &'static str {
    if plane == "gateway" { "/api/orders" } else { "/.well-known/jwks.json" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_silent_connections_are_cut_off_on_both_planes() {
    let mut p = start();
    for plane in PLANES {
        let to = addr_of(&p, plane);
        // A TLS connection that never sends a request: closed at
        // header_timeout (1 s), not idle_timeout (4 s).
        let mut silent = p.tls(to, me(), &[b"http/1.1"]).await.unwrap();
        let took = closed_within(&mut silent, Duration::from_secs(10)).await;
        assert!(took.is_some_and(|t| t < Duration::from_millis(3500)), "{plane}: silent TLS connection: {took:?}");

        // Slowloris: a request head one byte every 300 ms.
        let mut slow = p.tls(to, me(), &[b"http/1.1"]).await.unwrap();
        let slow_task = tokio::spawn(async move {
            let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let started = Instant::now();
            for byte in head {
                if slow.write_all(&[*byte]).await.is_err() || slow.flush().await.is_err() {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            // Everything was written: was it closed meanwhile?
            closed_within(&mut slow, Duration::from_secs(1)).await.map(|_| started.elapsed())
        });
        // Meanwhile another client is served.
        let status = p.status(to, other_client(), probe_path(plane)).await;
        assert!(status != 0, "{plane}: another client is served");
        let cut = slow_task.await.unwrap();
        assert!(cut.is_some_and(|t| t < Duration::from_secs(8)), "{plane}: slowloris was not cut off: {cut:?}");
    }
    let log = p.stop();
    for plane in PLANES {
        assert!(
            !connection_records(&log, plane, "request_timeout").is_empty(),
            "{plane}: the cut-off connections are audited"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_meets_the_per_address_cap_on_both_planes() {
    let mut p = start();
    for plane in PLANES {
        let to = addr_of(&p, plane);
        let mut held = Vec::new();
        for _ in 0..PER_IP {
            held.push(p.tls(to, me(), &[b"http/1.1"]).await.unwrap());
        }
        // One more from the same address: closed at accept (no handshake).
        let refused = p.tls(to, me(), &[b"http/1.1"]).await;
        assert!(refused.is_err(), "{plane}: connection {} from one address was accepted", PER_IP + 1);
        // Another address is served.
        let status = p.status(to, other_client(), probe_path(plane)).await;
        assert!(status != 0, "{plane}: another client is served");
        // The held connections never sent a request: all cut off.
        for s in &mut held {
            let took = closed_within(s, Duration::from_secs(10)).await;
            assert!(took.is_some(), "{plane}: an idle flood connection stayed open");
        }
        drop(held);
        // Their slots are free again.
        let status = p.status(to, me(), probe_path(plane)).await;
        assert!(status != 0, "{plane}: the address is served again");
    }
    let log = p.stop();
    for plane in PLANES {
        assert!(
            !connection_records(&log, plane, "connection_limited").is_empty(),
            "{plane}: the cap's refusal is audited"
        );
    }
}

/// `x-big: a…a` of `n` bytes.
fn big_header(n: usize) -> String {
    "a".repeat(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_and_a_record_over_http1_and_http2_on_both_planes() {
    let mut p = start();
    for plane in PLANES {
        let to = addr_of(&p, plane);
        // HTTP/1.1, 100 KB: past hyper's buffer, refused by the codec — still
        // answered 431, and audited as a connection-level refusal.
        let mut s = p.tls(to, me(), &[b"http/1.1"]).await.unwrap();
        let head = format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", big_header(100_000));
        let _ = s.write_all(head.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(out.starts_with(b"HTTP/1.1 431"), "{plane}: {}", String::from_utf8_lossy(&out));

        // HTTP/2, 100 KB: a 431 response on the stream (not a dead
        // connection), from the listener itself, with its JSON body.
        let tls = p.tls(to, me(), &[b"h2"]).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let request = http::Request::get(format!("https://localhost:{}{}", to.port(), probe_path(plane)))
            .header("x-big", big_header(100_000))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 431, "{plane}");
        use http_body_util::BodyExt;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "request_header_fields_too_large", "{plane}");
        assert!(v["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    let log = p.stop();
    for plane in PLANES {
        let codec = connection_records(&log, plane, "headers_too_large");
        assert!(
            codec.iter().any(|r| r["status"] == 431 && r["protocol"] == "HTTP/1.1"),
            "{plane}: the codec's 431 is audited"
        );
    }
    let h2: Vec<_> = log
        .iter()
        .filter(|r| r["event"] != "connection" && r["reason"] == "headers_too_large" && r["status"] == 431)
        .collect();
    assert!(h2.len() >= 2, "both planes audit their HTTP/2 431: {h2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_close_despite_pings_and_old_connections_are_retired() {
    let mut p = start();
    for plane in PLANES {
        let to = addr_of(&p, plane);
        // HTTP/2 with the client PINGing every 300 ms: bytes flow, but no
        // request after the first; the server closes it at idle_timeout.
        let tls = p.tls(to, me(), &[b"h2"]).await.unwrap();
        let mut builder = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(300))
            .keep_alive_while_idle(true);
        let (mut sender, conn) = builder.handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
        let ended = tokio::spawn(async move {
            let started = Instant::now();
            let _ = conn.await;
            started.elapsed()
        });
        let request = http::Request::get(format!("https://localhost:{}{}", to.port(), probe_path(plane)))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let status = sender.send_request(request).await.unwrap().status().as_u16();
        assert!(status != 0, "{plane}");
        let took = tokio::time::timeout(Duration::from_secs(15), ended).await;
        assert!(took.is_ok(), "{plane}: an HTTP/2 connection kept alive by PINGs alone was never closed");

        // HTTP/1.1 keep-alive with a request every 500 ms never idles, but
        // is retired at max_connection_age (5 s): a `connection: close`.
        let mut s = p.tls(to, me(), &[b"http/1.1"]).await.unwrap();
        let started = Instant::now();
        let mut retired = None;
        while started.elapsed() < Duration::from_secs(20) {
            let request = format!("GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n", probe_path(plane));
            if s.write_all(request.as_bytes()).await.is_err() {
                retired = Some(started.elapsed());
                break;
            }
            let mut buf = vec![0u8; 65536];
            match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) | Err(_) => {
                    retired = Some(started.elapsed());
                    break;
                }
                Ok(Ok(n)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    if text.contains("connection: close") {
                        retired = Some(started.elapsed());
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let retired = retired.unwrap_or(Duration::MAX);
        assert!(
            retired >= Duration::from_secs(4) && retired < Duration::from_secs(18),
            "{plane}: a busy connection is retired at its maximum age: {retired:?}"
        );
    }
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_on_a_tls_port_and_failed_handshakes_are_audited() {
    let mut p = start();
    for plane in PLANES {
        let to = addr_of(&p, plane);
        let mut s = p.tcp(to, me()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(out.starts_with(b"HTTP/1.1 400"), "{plane}: {}", String::from_utf8_lossy(&out));
        // A client that does not trust Ward's CA fails the handshake.
        let tcp = p.tcp(to, me()).await.unwrap();
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        assert!(TlsConnector::from(Arc::new(config)).connect(name, tcp).await.is_err());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = p.stop();
    for plane in PLANES {
        let plain = connection_records(&log, plane, "tls_required");
        assert!(plain.iter().any(|r| r["status"] == 400), "{plane}: plaintext refusal audited");
        assert!(
            !connection_records(&log, plane, "tls_handshake_failed").is_empty(),
            "{plane}: handshake failure audited"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_answers_errors_as_generic_json_with_security_headers() {
    let mut p = start();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", p.control.port());
    // A form over the body limit: axum's plain-text 413 no more.
    let big = "a".repeat(40 * 1024);
    let r = client
        .post(format!("{base}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&x={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let headers = r.headers().clone();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "payload_too_large");
    let id = v["request_id"].as_str().unwrap().to_owned();
    for (name, want) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(headers.get(name).and_then(|v| v.to_str().ok()), Some(want), "{name}");
    }
    assert!(headers.contains_key("strict-transport-security"));
    // An unknown route and a wrong method: JSON too.
    let r = client.get(format!("{base}/no/such/route")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-content-type-options"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_found");
    let r = client.delete(format!("{base}/oauth2/token")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "method_not_allowed");
    // A success carries them as well.
    let r = client.get(format!("{base}/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
    let log = p.stop();
    let record = log.iter().find(|r| r["request_id"] == id.as_str()).expect("the 413 is audited under its request id");
    assert_eq!(record["reason"], "body_too_large");
    assert_eq!(record["status"], 413);
}

#[test]
fn limits_are_read_per_listener() {
    // The probe's configuration itself: both sections are accepted and
    // kept apart (a wrong field is named with its full path).
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}[control]\nlisten = \"127.0.0.1:0\"\nadmin_token_file = \"t\"\n[control.limits]\nidle_timeout = \"7s\"\n",
        common::gateway_toml("127.0.0.1:0")
    );
    let path: &Path = &dir.path().join("ward.toml");
    std::fs::write(path, &text).unwrap();
    let c = ward_config::load(path).unwrap();
    assert_eq!(c.control.as_ref().unwrap().limits.idle_timeout, Duration::from_secs(7));
    assert_eq!(c.gateway.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.control.as_ref().unwrap().limits.max_connections_per_ip, 64);
    std::fs::write(path, text.replace("idle_timeout = \"7s\"", "idle_timeout = 7")).unwrap();
    let e = ward_config::load(path).unwrap_err().to_string();
    assert!(e.contains("control.limits.idle_timeout"), "{e}");
    // The control plane buffers bodies whole: 0 (every token request
    // refused) and huge values are configuration errors.
    for bad in ["0", "1073741824"] {
        std::fs::write(path, text.replace("idle_timeout = \"7s\"", &format!("max_body_bytes = {bad}"))).unwrap();
        let e = ward_config::load(path).unwrap_err().to_string();
        assert!(e.contains("control.limits.max_body_bytes"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_and_trickled_is_cut_off_with_a_record() {
    let mut p = start();
    // The token endpoint reads the whole form before anything else; a client
    // announcing 16,000 bytes and sending one every 2 s keeps bytes moving
    // (under idle_timeout, 4 s) but never completes its request.
    let mut s = p.tls(p.control, me(), &[b"http/1.1"]).await.unwrap();
    let head = "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 16000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut cut = None;
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        if s.write_all(b"a").await.is_err() || s.flush().await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                cut = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(cut.is_some_and(|t| t < Duration::from_secs(15)), "a trickled body held the connection: {cut:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408") && text.contains("request_timeout"), "{text}");
    let status = p.status(p.control, other_client(), "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let log = p.stop();
    assert!(
        log.iter().any(|r| r["reason"] == "request_timeout" && r["status"] == 408 && r["path"] == "/oauth2/token"),
        "the cut-off request is audited"
    );
}

/// The records on disk now, up to the first incomplete frame (the writer
/// may be mid-batch).
fn records_on_disk(data: &Path) -> Vec<Value> {
    ward_audit::segments::SegmentReader::new(&data.join("audit").join("segments"), 0)
        .unwrap()
        .map_while(|item| match item {
            ward_audit::segments::ReadItem::Record(r) => serde_json::from_slice(&r.payload).ok(),
            ward_audit::segments::ReadItem::Problem(_) => None,
        })
        .collect()
}

/// Issue 18, item 6: a refusal is answered only once its record is on
/// disk, on both planes. With group commit gathering for a whole second,
/// a refusal answered at once would arrive long before its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_answered_only_once_their_records_are_durable() {
    let mut p = start_edited(|t| t.replace("commit_interval = \"1ms\"", "commit_interval = \"1s\""));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = client.get(format!("https://localhost:{}/api/orders", p.gateway.port())).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(
            records_on_disk(&p.data).iter().any(|r| r["request_id"] == id.as_str()),
            "the gateway's 401 was answered before its record was durable"
        );
        let r = client
            .post(format!("https://localhost:{}/oauth2/token", p.control.port()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=nobody&client_secret=x")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        let body: Value = r.json().await.unwrap();
        let id = body["request_id"].as_str().expect("refusals carry a request id").to_owned();
        assert!(
            records_on_disk(&p.data).iter().any(|r| r["request_id"] == id.as_str()),
            "the control plane's refusal was answered before its record was durable"
        );
    }
    p.stop();
}

/// An idle HTTP/1.1 keep-alive connection lasts `idle_timeout`, not
/// `header_timeout`, and its end is not a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_lasts_the_idle_period_and_is_no_refusal() {
    let mut p = start();
    for plane in PLANES {
        let to = addr_of(&p, plane);
        let mut s = p.tls(to, me(), &[b"http/1.1"]).await.unwrap();
        for round in 0..2 {
            let request = format!("GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n", probe_path(plane));
            s.write_all(request.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0 && buf.starts_with(b"HTTP/1.1 "), "{plane} round {round}");
            // Longer than header_timeout (1 s), shorter than idle_timeout (4 s).
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let log = p.stop();
    for plane in PLANES {
        let idle = connection_records(&log, plane, "request_timeout");
        assert!(idle.is_empty(), "{plane}: an idle keep-alive is no refusal: {idle:?}");
    }
}
