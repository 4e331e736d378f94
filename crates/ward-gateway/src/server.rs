//! The accept loop: connection limit, plaintext detection, TLS handshake
//! with a deadline, then HTTP/1.1 or HTTP/2 with header and idle timeouts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use ward_config::Limits;

use crate::handler::{Peer, Worker, handle};
use crate::idle::IdleTimeout;

/// The first byte of every TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

const PLAINTEXT_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 24\r\nconnection: close\r\n\r\n{\"error\":\"tls_required\"}";

pub(crate) fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits are a backstop set well above Ward's, so that
    // ordinary oversized requests reach the pipeline, get a 431 and an audit
    // record; only grossly oversized heads are cut off by hyper itself.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size((limits.max_header_bytes * 4).max(64 * 1024))
        .max_headers((limits.max_headers * 2).max(128));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 4).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// The TLS side of a listener, shared by its workers.
#[derive(Clone)]
pub(crate) struct TlsDoor {
    pub(crate) acceptor: TlsAcceptor,
    /// Resumed sessions' client certificates, judged again as of now.
    pub(crate) recheck: ward_pki::verify::PeerRecheck,
    /// PERMISSIVE: plain HTTP is served too.
    pub(crate) plaintext_allowed: bool,
}

/// One worker's accept loop. Every worker accepts from its own copy of the
/// listening socket; `permits` (shared by all workers) caps the connections.
pub(crate) async fn serve(
    listener: TcpListener,
    door: TlsDoor,
    worker: Arc<Worker>,
    permits: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = worker.shared.limits.clone();
    let builder = Arc::new(http_builder(&limits));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Blocked addresses and addresses at their connection cap are cut
        // off here, before any TLS work.
        let Ok(slot) = worker.shared.protect.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (door, worker, builder, limits) = (door.clone(), Arc::clone(&worker), Arc::clone(&builder), limits.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let (_permit, _slot) = (permit, slot);
            let hasher = &worker.shared.pii_hasher;
            match handshake(stream, &door, &limits).await {
                Accepted::Refused => {}
                Accepted::Tls(tls) => {
                    let tls = *tls;
                    let (tcp, session) = tls.get_ref();
                    // The verifier accepted the chain and its one SPIFFE URI SAN.
                    let leaf = session.peer_certificates().and_then(|certs| certs.first());
                    let svid = leaf.and_then(|l| ward_pki::verify::spiffe_id_of(l).ok());
                    let x5t = leaf.map(|l| ward_pki::verify::x5t_s256(l));
                    // Unreadable: judged expired (fail closed).
                    let cert = leaf.map(|l| {
                        let serial = ward_pki::verify::serial_of(l).unwrap_or_default();
                        (serial, ward_pki::verify::validity_of(l).map_or(i64::MIN, |(_, not_after)| not_after))
                    });
                    let local = tcp.local_addr().ok();
                    let client =
                        Arc::new(Peer::with_cert(peer, local, session.server_name(), svid, x5t, cert, true, hasher));
                    let io = TokioIo::new(IdleTimeout::new(tls, limits.idle_timeout));
                    serve_connection(io, &builder, worker, client, watcher).await;
                }
                Accepted::Plain(tcp) => {
                    let client = Arc::new(Peer::new(peer, tcp.local_addr().ok(), None, None, None, false, hasher));
                    let io = TokioIo::new(IdleTimeout::new(tcp, limits.idle_timeout));
                    serve_connection(io, &builder, worker, client, watcher).await;
                }
            }
        });
    }
    drop(listener);
    // Let in-flight requests finish, but not forever.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("connections still open after 10 s; closing"),
    }
}

/// Serve HTTP on one accepted connection (TLS or, in PERMISSIVE mode, plaintext).
async fn serve_connection<I>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    worker: Arc<Worker>,
    client: Arc<Peer>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle(Arc::clone(&worker), request, Arc::clone(&client)));
    let connection = builder.serve_connection(io, service);
    if let Err(e) = watcher.watch(connection.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// What became of a new connection.
enum Accepted {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Plain HTTP, accepted in PERMISSIVE mode.
    Plain(TcpStream),
    Refused,
}

/// Complete the TLS handshake within the deadline, then judge a resumed
/// session's client certificate as of now; plain HTTP is served when
/// `door.plaintext_allowed` (PERMISSIVE), else refused politely.
async fn handshake(mut stream: TcpStream, door: &TlsDoor, limits: &Limits) -> Accepted {
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.handshake_timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1)) if door.plaintext_allowed => return Accepted::Plain(stream),
        Ok(Ok(1)) => {
            // Plain HTTP (or anything else) on the TLS port.
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(PLAINTEXT_REFUSAL)).await;
            let _ = stream.shutdown().await;
            return Accepted::Refused;
        }
        _ => return Accepted::Refused,
    }
    match tokio::time::timeout(limits.handshake_timeout, door.acceptor.accept(stream)).await {
        Ok(Ok(tls)) => match door.recheck.check(tls.get_ref().1) {
            Ok(()) => Accepted::Tls(Box::new(tls)),
            Err(e) => {
                let peer = tls.get_ref().0.peer_addr().ok();
                tracing::warn!(error = %e, ?peer, "resumed TLS session refused: its client certificate is no longer valid");
                Accepted::Refused
            }
        },
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            Accepted::Refused
        }
        Err(_) => Accepted::Refused,
    }
}

/// The address a listener is bound to, for logs and tests.
pub(crate) fn bound(listener: &TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}
