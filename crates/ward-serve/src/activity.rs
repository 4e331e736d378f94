//! Request-level activity of one connection, for its idle and first-request
//! deadlines.
//!
//! Bytes alone cannot say whether a connection is idle: an HTTP/2 client
//! answering PINGs moves bytes forever without a request. A connection is
//! idle when no request is in flight — from the moment its service is
//! called until its response body is dropped (sent or abandoned) — and it
//! is judged by when its last request ended (or, before any request, by
//! when its handshake completed).
//!
//! Nor can bytes say whether a request in flight is stalled (PINGs again):
//! a connection whose requests made no progress — a request begun, a
//! response head ready, a response body frame taken by the client's flow
//! control — for `idle_timeout` is stalled, whatever its PINGs say: a
//! client that never sends the body it announced, or never opens its
//! stream window, holds nothing for long.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// The activity of one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    in_flight: AtomicU32,
    /// Requests whose service has not produced a response head yet: the
    /// service bounds those itself (the gateway's upstream timeout, the
    /// control plane's request deadline), so they are never judged stalled
    /// here — a slow upstream is a 504 with its record, not a cut connection.
    awaiting_head: AtomicU32,
    /// Requests begun on the connection.
    begun: AtomicU64,
    /// When the last request ended, in milliseconds after `started`.
    last_end_ms: AtomicU64,
    /// When a request in flight last made progress, in milliseconds after `started`.
    progress_ms: AtomicU64,
}

/// What the connection is waiting for when nothing is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// A request is in flight: with every response head produced, it must
    /// make progress by this instant (`idle_timeout`); `None` while a head
    /// is awaited (the service's own deadlines apply).
    Busy(Option<Instant>),
    /// No request yet: the first must begin by this instant (`header_timeout`).
    FirstRequest(Instant),
    /// Between requests: the next must begin by this instant (`idle_timeout`).
    Idle(Instant),
}

impl Activity {
    pub(crate) fn new(started: Instant) -> Arc<Self> {
        Arc::new(Self {
            started,
            in_flight: AtomicU32::new(0),
            awaiting_head: AtomicU32::new(0),
            begun: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
            progress_ms: AtomicU64::new(0),
        })
    }

    fn since_start(&self) -> u64 {
        let since = Instant::now().saturating_duration_since(self.started);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// A request in flight moved.
    pub(crate) fn progress(&self) {
        self.progress_ms.fetch_max(self.since_start(), Ordering::Release);
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests whose response head is not ready yet.
    pub(crate) fn awaiting_head(&self) -> u32 {
        self.awaiting_head.load(Ordering::Acquire)
    }

    /// Requests begun on the connection so far.
    pub(crate) fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// A request begins; the guard ends it when dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.progress();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.awaiting_head.fetch_add(1, Ordering::Relaxed);
        self.begun.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self), false)
    }

    /// The connection's deadline from activity, as of now.
    pub(crate) fn quiet(&self, header_timeout: Duration, idle_timeout: Duration) -> Quiet {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            if self.awaiting_head.load(Ordering::Acquire) > 0 {
                return Quiet::Busy(None);
            }
            let moved = Duration::from_millis(self.progress_ms.load(Ordering::Acquire));
            return Quiet::Busy(Some(self.started + moved + idle_timeout));
        }
        if self.begun.load(Ordering::Acquire) == 0 {
            return Quiet::FirstRequest(self.started + header_timeout);
        }
        let ended = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        Quiet::Idle(self.started + ended + idle_timeout)
    }
}

/// One request in flight; dropping it ends the request. Until
/// [`InFlight::head_ready`], it also counts as awaiting its response head.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>, bool);

impl InFlight {
    /// The service produced the response head.
    fn head_ready(&mut self) {
        if !self.1 {
            self.1 = true;
            self.0.awaiting_head.fetch_sub(1, Ordering::Release);
        }
        self.0.progress();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.1 {
            self.0.awaiting_head.fetch_sub(1, Ordering::Release);
        }
        let ms = self.0.since_start();
        self.0.last_end_ms.fetch_max(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// A listener's service with its requests counted.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<http::Request<hyper::body::Incoming>> for Tracked<S>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let guard = self.activity.begin();
        TrackedFuture { inner: self.inner.call(request), guard: Some(guard) }
    }
}

pin_project_lite::pin_project! {
    /// The service's future; its response body carries the request's guard.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                let mut guard = this.guard.take();
                if let Some(g) = &mut guard {
                    g.head_ready();
                }
                Poll::Ready(result.map(|response| response.map(|body| TrackedBody { inner: body, _guard: guard })))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it is dropped.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        // hyper polls a body only when the client's flow control has room:
        // a frame taken is progress.
        if let (Poll::Ready(Some(Ok(_))), Some(g)) = (&polled, this._guard.as_ref()) {
            g.0.progress();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_requests_not_bytes() {
        let (header, idle) = (Duration::from_secs(10), Duration::from_secs(60));
        let start = Instant::now();
        let a = Activity::new(start);
        assert_eq!(a.quiet(header, idle), Quiet::FirstRequest(start + header));
        let mut g = a.begin();
        let mut g2 = a.begin();
        assert_eq!(a.quiet(header, idle), Quiet::Busy(None), "heads awaited: the service's deadlines apply");
        g.head_ready();
        g2.head_ready();
        assert_eq!(a.quiet(header, idle), Quiet::Busy(Some(start + idle)));
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(g);
        assert_eq!(a.quiet(header, idle), Quiet::Busy(Some(start + idle)), "one response is still in flight, unmoved");
        a.progress();
        assert_eq!(a.quiet(header, idle), Quiet::Busy(Some(start + Duration::from_secs(5) + idle)), "it moved");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(g2);
        assert_eq!(a.quiet(header, idle), Quiet::Idle(start + Duration::from_secs(10) + idle));
    }
}
