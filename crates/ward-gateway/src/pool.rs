//! Upstream connections: one pool per upstream per worker thread.
//!
//! Built on hyper's connection-level client rather than hyper-util's pooled
//! `Client`, which for every request builds (and drops) a connect future
//! next to the pool checkout and spawns a task to put the connection back:
//! on the anchor benchmark that was several microseconds per request. Here a
//! request takes an idle HTTP/1.1 connection (last in, first out, so the
//! warmest one), sends, and hands the connection back when the response body
//! has been read to its end. HTTP/2 upstreams share one multiplexed
//! connection per worker.
//!
//! A pooled connection the upstream closed while it sat idle fails before the
//! request is written; that request (and only such a request, never one that
//! reached the upstream) is retried once on a new connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::upstream::UpstreamBody;

/// Idle HTTP/1.1 connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an upstream request failed. The client only ever sees a generic 502/504.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be opened.
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The TCP connection was not open within the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The TLS handshake with the upstream failed (including its certificate).
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
    /// HTTP failed on an open connection (including a request body over the limit).
    #[error("HTTP: {0}")]
    Http(#[source] hyper::Error),
}

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Target {
    /// `host:port`, resolved at connect time.
    pub authority: String,
    /// TLS with this server name, or plain TCP.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    pub http2: bool,
    pub connect_timeout: Duration,
    pub max_idle: usize,
}

struct Idle {
    sender: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

/// The connections of one worker thread to one upstream.
pub(crate) struct Pool {
    target: Target,
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<http2::SendRequest<UpstreamBody>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("authority", &self.target.authority).finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(target: Target) -> Arc<Self> {
        Arc::new(Self { target, idle: Mutex::new(Vec::new()), h2: Mutex::new(None) })
    }

    /// Send `request` (origin-form URI and `Host` header for HTTP/1.1,
    /// absolute URI for HTTP/2) and return the response with a body that
    /// returns the connection to the pool once read.
    pub(crate) async fn send(
        self: &Arc<Self>,
        request: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        if self.target.http2 {
            return self.send_h2(request).await;
        }
        let mut request = request;
        if let Some(mut sender) = self.checkout().await {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lease(response, sender)),
                Err(mut e) => match e.take_message() {
                    // Never written: the idle connection had been closed. Retry once, fresh.
                    Some(unsent) => request = unsent,
                    None => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
        let mut sender = self.connect_h1().await?;
        let response = sender.send_request(request).await.map_err(UpstreamError::Http)?;
        Ok(self.lease(response, sender))
    }

    /// The most recently returned idle connection that is still open.
    async fn checkout(&self) -> Option<http1::SendRequest<UpstreamBody>> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
            if idle.sender.is_closed() || idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            let mut sender = idle.sender;
            if sender.is_ready() {
                return Some(sender);
            }
            // Its last response was read to the end, so the connection task
            // is about to turn idle; wait for that rather than open another.
            if let Ok(Ok(())) = tokio::time::timeout(self.target.connect_timeout, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    fn lease(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: http1::SendRequest<UpstreamBody>,
    ) -> Response<PooledBody> {
        response.map(|inner| PooledBody { inner, lease: Some((sender, Arc::clone(self))) })
    }

    fn give_back(&self, sender: http1::SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.target.max_idle {
            idle.push(Idle { sender, since: Instant::now() });
        }
    }

    async fn send_h2(&self, request: Request<UpstreamBody>) -> Result<Response<PooledBody>, UpstreamError> {
        let shared =
            self.h2.lock().unwrap_or_else(PoisonError::into_inner).as_ref().filter(|s| !s.is_closed()).cloned();
        let mut sender = match shared {
            Some(s) => s,
            None => {
                let fresh = self.connect_h2().await?;
                *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
                fresh
            }
        };
        sender.ready().await.map_err(UpstreamError::Http)?;
        let response = sender.send_request(request).await.map_err(UpstreamError::Http)?;
        Ok(response.map(|inner| PooledBody { inner, lease: None }))
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<UpstreamBody>, UpstreamError> {
        match self.tcp().await? {
            Stream::Plain(tcp) => handshake_h1(tcp).await,
            Stream::Tls(tls) => handshake_h1(tls).await,
        }
    }

    async fn connect_h2(&self) -> Result<http2::SendRequest<UpstreamBody>, UpstreamError> {
        match self.tcp().await? {
            Stream::Plain(tcp) => handshake_h2(tcp).await,
            Stream::Tls(tls) => handshake_h2(tls).await,
        }
    }

    async fn tcp(&self) -> Result<Stream, UpstreamError> {
        let deadline = self.target.connect_timeout;
        let connect = async {
            let tcp = TcpStream::connect(self.target.authority.as_str()).await.map_err(UpstreamError::Connect)?;
            tcp.set_nodelay(true).map_err(UpstreamError::Connect)?;
            match &self.target.tls {
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await.map_err(UpstreamError::Tls)?;
                    Ok(Stream::Tls(Box::new(tls)))
                }
            }
        };
        tokio::time::timeout(deadline, connect).await.map_err(|_| UpstreamError::ConnectTimeout)?
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn handshake_h1<T>(io: T) -> Result<http1::SendRequest<UpstreamBody>, UpstreamError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await.map_err(UpstreamError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

async fn handshake_h2<T>(io: T) -> Result<http2::SendRequest<UpstreamBody>, UpstreamError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

/// An upstream response body. Read to its end, it returns its HTTP/1.1
/// connection to the pool; dropped early, the connection is closed (its
/// unread remainder makes it unusable).
pub struct PooledBody {
    inner: Incoming,
    lease: Option<(http1::SendRequest<UpstreamBody>, Arc<Pool>)>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").finish_non_exhaustive()
    }
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, pool)) = self.lease.take() {
            pool.give_back(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
