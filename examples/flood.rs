//! A brute-force flood for the benchmarks (`bench/flood-cases.sh`): many
//! connections from many loopback source addresses, each sending requests
//! with a bad token as fast as the server answers, reconnecting at once
//! (from the next address) whenever a connection is refused or closed.
//!
//! ```text
//! flood --target 127.0.0.1:18010 --ca ca.pem --token-file bad.jwt \
//!       --sources 127.0.2.1-250 --conns 32 --seconds 12 --rate 2000
//! ```
//!
//! `--rate` caps new connections per second across all of them (default:
//! none), so every server under test faces the same flood: without it, a
//! server that refuses faster is sent more.
//!
//! Prints one JSON line: requests answered by status, and connections
//! that ended before an answer (refused at accept or during TLS).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;

struct Args {
    target: SocketAddr,
    ca: String,
    token: String,
    sources: Vec<Ipv4Addr>,
    conns: usize,
    seconds: u64,
    path: String,
    rate: Option<f64>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut target, mut ca, mut token, mut sources, mut conns, mut seconds, mut path) =
        (None, None, None, Vec::new(), 32, 10, "/api/x".to_owned());
    let mut rate = None;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--target" => target = Some(value.parse().map_err(|_| format!("--target {value}"))?),
            "--ca" => ca = Some(value),
            "--token-file" => {
                token = Some(std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?.trim().to_owned());
            }
            "--sources" => {
                // A.B.C.first-last
                let (net, range) = value.rsplit_once('.').ok_or("--sources A.B.C.first-last")?;
                let (first, last) = range.split_once('-').ok_or("--sources A.B.C.first-last")?;
                let (first, last): (u8, u8) =
                    (first.parse().map_err(|_| "--sources")?, last.parse().map_err(|_| "--sources")?);
                for i in first..=last {
                    sources.push(format!("{net}.{i}").parse().map_err(|_| format!("--sources {value}"))?);
                }
            }
            "--conns" => conns = value.parse().map_err(|_| "--conns")?,
            "--seconds" => seconds = value.parse().map_err(|_| "--seconds")?,
            "--path" => path = value,
            "--rate" => rate = Some(value.parse::<f64>().map_err(|_| "--rate")?).filter(|r| *r > 0.0),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if sources.is_empty() {
        sources.push(Ipv4Addr::new(127, 0, 0, 2));
    }
    Ok(Args {
        target: target.ok_or("--target is required")?,
        ca: ca.ok_or("--ca is required")?,
        token: token.ok_or("--token-file is required")?,
        sources,
        conns,
        seconds,
        path,
        rate,
    })
}

#[derive(Default)]
struct Counts {
    by_status: std::sync::Mutex<BTreeMap<u16, u64>>,
    cut: AtomicU64,
    next_source: AtomicU64,
}

async fn one_connection(
    args: &Args,
    tls: &tokio_rustls::TlsConnector,
    counts: &Counts,
    deadline: Instant,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let i = counts.next_source.fetch_add(1, Ordering::Relaxed);
    let source = args.sources[usize::try_from(i).unwrap_or(0) % args.sources.len()];
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = socket.connect(args.target).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let stream = tls.connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    while Instant::now() < deadline {
        let request = http::Request::get(&args.path)
            .header(http::header::HOST, "localhost")
            .header(http::header::AUTHORIZATION, format!("Bearer {}", args.token))
            .body(Empty::<bytes::Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        if let Ok(mut m) = counts.by_status.lock() {
            *m.entry(status).or_insert(0) += 1;
        }
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let args = Arc::new(args()?);
    let ca = rustls_pki_types::CertificateDer::pem_file_iter(&args.ca)
        .map_err(|e| format!("{}: {e}", args.ca))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", args.ca))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.conns {
            let (args, tls, counts) = (Arc::clone(&args), tls.clone(), Arc::clone(&counts));
            tasks.push(tokio::spawn(async move {
                #[allow(clippy::cast_precision_loss)]
                let mut pace = args.rate.map(|r| {
                    let mut t = tokio::time::interval(Duration::from_secs_f64(args.conns as f64 / r));
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                while Instant::now() < deadline {
                    if let Some(p) = pace.as_mut() {
                        p.tick().await;
                    }
                    if one_connection(&args, &tls, &counts, deadline).await.is_err() {
                        counts.cut.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let by_status = counts.by_status.lock().map(|m| m.clone()).unwrap_or_default();
    let answered: u64 = by_status.values().sum();
    let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("\"{s}\":{n}")).collect();
    println!(
        "{{\"answered\":{answered},\"by_status\":{{{}}},\"connections_cut\":{},\"sources\":{},\"seconds\":{}}}",
        statuses.join(","),
        counts.cut.load(Ordering::Relaxed),
        args.sources.len(),
        args.seconds
    );
    Ok(())
}
