//! Ward's one front door, shared by every listener — the gateway, the
//! control plane and the gateway's admin API — so that none is weaker than
//! another:
//!
//! ```text
//! accept ─▶ admission (blocked address? per-address cap) ─▶ connection limit
//!    ─▶ plaintext check ─▶ TLS handshake (deadline) ─▶ resumed session judged again
//!    ─▶ HTTP/1.1 or HTTP/2 (header timeout, header caps) ─▶ the listener's service
//!    ─▶ first request within header_timeout, then idle_timeout between requests
//!       (requests, not bytes: PINGs keep nothing alive), max_connection_age
//!    ─▶ drain on shutdown
//! ```
//!
//! Every refusal made here — at accept, in the handshake, or by the HTTP
//! codec before a request was formed (oversized heads, malformed requests,
//! header timeouts) — is reported, dampened per source, to the listener's
//! [`RefusalSink`] (the audit log): see [`refusal`].

pub mod activity;
pub mod admission;
pub mod conn;
pub mod headers;
pub mod idle;
pub mod refusal;

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use ward_config::Limits;
use ward_core::ReasonCode;

pub use activity::TrackedBody;
pub use admission::{Admission, Admitted, BlockedAddresses};
pub use conn::{ClientCert, Conn, unix_now};
pub use refusal::{Refusal, RefusalSink, Refusals};

use activity::{Activity, Quiet, Tracked};
use idle::IdleTimeout;

/// The first byte of every TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

const PLAINTEXT_REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 24\r\nconnection: close\r\n\r\n{\"error\":\"tls_required\"}";

/// How long open connections may finish their requests once the listener
/// stops, or once a connection reached its maximum age.
pub const DRAIN: Duration = Duration::from_secs(10);

/// How long an idle connection asked to close may take to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The TLS side of a listener.
#[derive(Clone)]
pub struct TlsDoor {
    /// The handshake (rustls on aws-lc-rs, the listener's certificate and client verifier).
    pub acceptor: TlsAcceptor,
    /// Resumed sessions' client certificates, judged again as of now.
    pub recheck: ward_pki::verify::PeerRecheck,
    /// PERMISSIVE: plain HTTP is served too.
    pub plaintext_allowed: bool,
}

impl std::fmt::Debug for TlsDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDoor").field("plaintext_allowed", &self.plaintext_allowed).finish_non_exhaustive()
    }
}

/// One listener's front door, shared by its workers (each runs
/// [`serve`] on its own copy of the listening socket).
#[derive(Debug, Clone)]
pub struct Door {
    /// The listener's name in logs and records: `gateway`, `control plane`, `admin API`.
    pub name: &'static str,
    /// TLS, or `None` for a plaintext listener (the admin API on loopback).
    pub tls: Option<TlsDoor>,
    /// The listener's limits.
    pub limits: Arc<Limits>,
    /// Blocked addresses and per-address caps.
    pub admission: Arc<Admission>,
    /// Where refusals are reported.
    pub refusals: Arc<Refusals>,
    /// The listener's connection limit, shared by all its workers.
    pub permits: Arc<Semaphore>,
}

impl Door {
    /// A door with `limits.max_connections` permits.
    #[must_use]
    pub fn new(
        name: &'static str,
        tls: Option<TlsDoor>,
        limits: &Limits,
        admission: Arc<Admission>,
        refusals: Arc<Refusals>,
    ) -> Self {
        Self {
            name,
            tls,
            limits: Arc::new(limits.clone()),
            admission,
            refusals,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
        }
    }

    fn refuse(&self, peer: SocketAddr, reason: ReasonCode, status: u16, protocol: &'static str, detail: String) {
        self.refusals.report(Refusal { listener: self.name, peer, reason, status, protocol, detail, repeated: 0 });
    }
}

/// What a listener's per-connection service must be for hyper to serve it
/// on any runtime thread: one name for the bounds `serve` and its
/// connection driver share.
pub trait ConnService:
    hyper::service::Service<
        http::Request<Incoming>,
        Response = http::Response<Self::Body>,
        Future: Send + 'static,
        Error: Into<Box<dyn StdError + Send + Sync>>,
    > + Send
    + 'static
{
    /// The response body.
    type Body: http_body::Body<Data: Send, Error: Into<Box<dyn StdError + Send + Sync>>> + Send + 'static;
}

impl<S, B> ConnService for S
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Body = B;
}

/// The HTTP side of a listener. hyper's own caps are a backstop set above
/// the listener's (`max_header_bytes`, `max_headers`), so that ordinary
/// oversized requests reach the service, which refuses them with its own
/// answer and record; grossly oversized ones are refused by hyper (HTTP/1.1:
/// 431; HTTP/2: 431 on the stream, or GOAWAY past the CONTINUATION limit),
/// and the connection's end is reported as a refusal.
#[must_use]
pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper's head timer also runs while a kept-alive connection waits
        // for its next request: set to the idle period, so an idle
        // keep-alive lasts `idle_timeout`. The first request's head is held to
        // `header_timeout` by the door's own deadline (nothing begun yet).
        .header_read_timeout(limits.header_timeout.max(limits.idle_timeout))
        .max_buf_size((limits.max_header_bytes * 4).max(64 * 1024))
        .max_headers((limits.max_headers * 2).max(128));
    // HTTP/2 header blocks up to 8× max_header_bytes (at least 128 KiB)
    // reach the service (h2 also bounds CONTINUATION frames by this size):
    // a 100 KB block gets the listener's 431 and its record instead of a
    // dead connection, and a connection holding an unfinished block pins at
    // most about that much.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from((limits.max_header_bytes * 8).max(128 * 1024)).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Accept connections on `listener` until `shutdown` resolves, then drain
/// for up to [`DRAIN`]. Each admitted connection is served by the service
/// `make_service` builds from what the door learned about it.
pub async fn serve<F, S>(listener: TcpListener, door: Door, make_service: F, shutdown: impl Future<Output = ()>)
where
    F: Fn(Arc<Conn>) -> S + Send + Sync + 'static,
    S: ConnService,
{
    let builder = Arc::new(http_builder(&door.limits));
    let make_service = Arc::new(make_service);
    let (drain, draining) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender; all dropped = all finished.
    let (alive, mut finished) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    // Refusals counted but not yet recorded come out once their window ends.
    let mut sweep = tokio::time::interval(refusal::WINDOW);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            _ = sweep.tick() => {
                door.refusals.flush(false);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                tracing::warn!(listener = door.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Blocked addresses and addresses at their cap are cut off here,
        // before any TLS work.
        let admitted = match door.admission.admit(peer.ip()) {
            Ok(a) => a,
            Err(reason) => {
                drop(stream);
                let detail = match reason {
                    ReasonCode::AddressBlocked => "address blocked",
                    _ => "per-address connection cap reached",
                };
                door.refuse(peer, reason, 0, "TCP", detail.to_owned());
                continue;
            }
        };
        // Allowlisted addresses (operators, health checkers) are not held
        // to the listener's limit: a flood that fills it must not lock
        // them out.
        let permit = match Arc::clone(&door.permits).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if admitted.allowlisted() => None,
            Err(_) => {
                drop(stream);
                door.refuse(
                    peer,
                    ReasonCode::ConnectionLimited,
                    0,
                    "TCP",
                    "listener connection limit reached".to_owned(),
                );
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (door, builder, make_service, draining, alive) =
            (door.clone(), Arc::clone(&builder), Arc::clone(&make_service), draining.clone(), alive.clone());
        tokio::spawn(async move {
            let _held = (permit, admitted, alive);
            let local = stream.local_addr().ok();
            let accepted = handshake(stream, peer, &door).await;
            // The first request's deadline runs from here, not from accept.
            let started = Instant::now();
            match accepted {
                Accepted::Refused => {}
                Accepted::Tls(tls) => {
                    let tls = *tls;
                    let session = tls.get_ref().1;
                    let leaf = session.peer_certificates().and_then(|certs| certs.first());
                    let conn = Conn {
                        peer,
                        local,
                        sni: session.server_name().map(Box::from),
                        tls: true,
                        cert: leaf.map(|l| ClientCert::from_der(l)),
                    };
                    let service = make_service(Arc::new(conn));
                    drive(tls, &builder, service, &door, peer, started, draining).await;
                }
                Accepted::Plain(tcp) => {
                    let conn = Conn { peer, local, sni: None, tls: false, cert: None };
                    let service = make_service(Arc::new(conn));
                    drive(tcp, &builder, service, &door, peer, started, draining).await;
                }
            }
        });
    }
    drop(listener);
    let _ = drain.send(true);
    drop(alive);
    // Let in-flight requests finish, but not forever.
    if tokio::time::timeout(DRAIN, finished.recv()).await.is_err() {
        tracing::warn!(listener = door.name, "connections still open after the drain period; closing");
    }
    door.refusals.flush(true);
}

/// Why the front door ended a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// No request began within `header_timeout` of the connection's start.
    FirstRequest,
    /// No request for `idle_timeout`.
    Idle,
    /// Requests in flight made no progress for `idle_timeout` (a body never
    /// sent, a stream window never opened).
    Stalled,
    /// `max_connection_age` reached.
    Age,
    /// The listener is stopping.
    Drain,
}

/// Serve one connection: HTTP on `io`, with the request-level deadlines,
/// maximum age and drain; report what the codec refused.
#[allow(clippy::too_many_arguments)]
async fn drive<T, S>(
    io: T,
    builder: &auto::Builder<TokioExecutor>,
    service: S,
    door: &Door,
    peer: SocketAddr,
    started: Instant,
    mut draining: tokio::sync::watch::Receiver<bool>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: ConnService,
{
    let limits = &door.limits;
    let activity = Activity::new(started);
    let io = TokioIo::new(IdleTimeout::new(io, limits.idle_timeout).with_activity(Arc::clone(&activity)));
    let tracked = Tracked { inner: service, activity: Arc::clone(&activity) };
    let connection = builder.serve_connection(io, tracked);
    tokio::pin!(connection);
    let age_limit = started + limits.max_connection_age;
    // Once the connection is asked to close: the instant it is cut off, and
    // whether that was already put off once for a request in flight.
    let mut closing: Option<(Closing, Instant)> = None;
    let mut extended = false;
    let result = loop {
        let wake = match closing {
            Some((_, hard)) => hard,
            None => match activity.quiet(limits.header_timeout, limits.idle_timeout) {
                // A head awaited: look again an idle period later.
                Quiet::Busy(None) => (Instant::now() + limits.idle_timeout).min(age_limit),
                Quiet::Busy(Some(at)) | Quiet::FirstRequest(at) | Quiet::Idle(at) => at.min(age_limit),
            },
        };
        tokio::select! {
            result = connection.as_mut() => break result,
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if let Some((why, _)) = closing {
                    // A request that raced an idle close (sent before the
                    // client saw the GOAWAY or the close) gets the drain
                    // period to finish, once; then the connection is dropped.
                    if activity.in_flight() > 0 && !extended && !matches!(why, Closing::Stalled | Closing::Drain) {
                        extended = true;
                        closing = Some((why, now + DRAIN));
                        continue;
                    }
                    break Ok(());
                }
                let why = match activity.quiet(limits.header_timeout, limits.idle_timeout) {
                    Quiet::FirstRequest(at) if at <= now => Some(Closing::FirstRequest),
                    Quiet::Idle(at) if at <= now => Some(Closing::Idle),
                    Quiet::Busy(Some(at)) if at <= now => Some(Closing::Stalled),
                    _ if age_limit <= now => Some(Closing::Age),
                    _ => None,
                };
                if let Some(why) = why {
                    let grace = if why == Closing::Age { DRAIN } else { CLOSE_GRACE };
                    closing = Some((why, now + grace));
                    connection.as_mut().graceful_shutdown();
                    match why {
                        Closing::FirstRequest => door.refuse(
                            peer,
                            ReasonCode::RequestTimeout,
                            0,
                            "HTTP",
                            "no request within header_timeout".to_owned(),
                        ),
                        Closing::Stalled => door.refuse(
                            peer,
                            ReasonCode::RequestTimeout,
                            0,
                            "HTTP",
                            "requests in flight made no progress for idle_timeout".to_owned(),
                        ),
                        _ => {}
                    }
                }
            }
            changed = draining.changed(), if closing.is_none() => {
                if changed.is_err() || *draining.borrow() {
                    closing = Some((Closing::Drain, Instant::now() + DRAIN));
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    };
    if let Err(e) = result {
        let already = matches!(closing, Some((Closing::FirstRequest | Closing::Stalled, _)));
        match classify(&*e) {
            // hyper's head timer after earlier requests: an idle keep-alive
            // (or a slow next head) ended, not a refusal of anything.
            Some((ReasonCode::RequestTimeout, ..)) if activity.begun() > 0 => {
                tracing::debug!(listener = door.name, %peer, "keep-alive connection ended by the head timer");
            }
            Some((reason, status, protocol, detail)) if !already => door.refuse(peer, reason, status, protocol, detail),
            _ => tracing::debug!(listener = door.name, %peer, error = %e, "connection ended with an error"),
        }
    }
}

/// What the HTTP codec refused, from the error a connection ended with:
/// reason, status sent (0: none), protocol, detail. `None` for ordinary
/// ends (the client went away, an idle timeout).
fn classify(e: &(dyn StdError + 'static)) -> Option<(ReasonCode, u16, &'static str, String)> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            // Only errors the server itself raised against the client.
            if !(h2.is_go_away() && h2.is_library()) {
                return None;
            }
            let reason = h2.reason()?;
            // Only an oversized header block is `headers_too_large`; other
            // GOAWAYs (rapid reset, frame floods) keep h2's own words.
            let text = h2.to_string();
            let code = if text.contains("too_many_continuations") || reason == h2::Reason::COMPRESSION_ERROR {
                ReasonCode::HeadersTooLarge
            } else {
                ReasonCode::BadRequest
            };
            return Some((code, 0, "HTTP/2.0", format!("GOAWAY {reason:?}: {text}")));
        }
        if let Some(hyper_err) = err.downcast_ref::<hyper::Error>() {
            if hyper_err.is_timeout() && hyper_err.to_string().contains("read header") {
                return Some((
                    ReasonCode::RequestTimeout,
                    0,
                    "HTTP/1.1",
                    "request head not received within header_timeout".into(),
                ));
            }
            if hyper_err.is_parse_too_large() {
                let text = hyper_err.to_string();
                return Some(if text.contains("URI too long") {
                    (ReasonCode::UriTooLong, 414, "HTTP/1.1", text)
                } else {
                    (ReasonCode::HeadersTooLarge, 431, "HTTP/1.1", text)
                });
            }
            if hyper_err.is_parse() {
                return Some((ReasonCode::BadRequest, 400, "HTTP/1.1", hyper_err.to_string()));
            }
        }
        source = err.source();
    }
    None
}

/// What became of a new connection.
enum Accepted {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Plain HTTP: a plaintext listener, or PERMISSIVE mode.
    Plain(TcpStream),
    Refused,
}

/// Complete the TLS handshake within the deadline, then judge a resumed
/// session's client certificate as of now; plain HTTP is served when the
/// listener has no TLS or `plaintext_allowed` (PERMISSIVE), else refused
/// with a 400.
async fn handshake(mut stream: TcpStream, peer: SocketAddr, door: &Door) -> Accepted {
    let Some(tls) = &door.tls else { return Accepted::Plain(stream) };
    // One deadline for the first byte and the whole handshake.
    let deadline = Instant::now() + door.limits.handshake_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1)) if tls.plaintext_allowed => return Accepted::Plain(stream),
        Ok(Ok(1)) => {
            // Plain HTTP (or anything else) on the TLS port.
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(PLAINTEXT_REFUSAL)).await;
            let _ = stream.shutdown().await;
            door.refuse(peer, ReasonCode::TlsRequired, 400, "TCP", "plaintext on the TLS port".to_owned());
            return Accepted::Refused;
        }
        Ok(_) => return Accepted::Refused, // closed before sending anything
        Err(_) => {
            door.refuse(peer, ReasonCode::RequestTimeout, 0, "TCP", "nothing sent within handshake_timeout".to_owned());
            return Accepted::Refused;
        }
    }
    match tokio::time::timeout_at(deadline, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => match tls.recheck.check(stream.get_ref().1) {
            Ok(()) => Accepted::Tls(Box::new(stream)),
            Err(e) => {
                tracing::warn!(listener = door.name, %peer, error = %e, "resumed TLS session refused: its client certificate is no longer valid");
                door.refuse(peer, ReasonCode::CertificateDenied, 0, "TLS", format!("resumed session refused: {e}"));
                Accepted::Refused
            }
        },
        Ok(Err(e)) => {
            door.refuse(peer, ReasonCode::TlsHandshakeFailed, 0, "TLS", e.to_string());
            Accepted::Refused
        }
        Err(_) => {
            door.refuse(
                peer,
                ReasonCode::TlsHandshakeFailed,
                0,
                "TLS",
                "handshake not completed within handshake_timeout".to_owned(),
            );
            Accepted::Refused
        }
    }
}
