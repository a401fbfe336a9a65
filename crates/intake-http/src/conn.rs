//! Bounds on one client connection (ingress.md, "Time and size bounds on every connection").
//!
//! [`GuardedIo`] wraps the socket hyper reads and writes: it records when bytes move, and it turns
//! the bare answers hyper writes itself for requests it cannot parse (400, 414, 431, no body) into the
//! JSON error body. [`Activity`] counts the requests in flight on the connection (from their head
//! until their response body is dropped), and [`watch`] closes a connection that waits too long:
//! - no complete request head within `header_timeout` of the connection opening or of the first byte
//!   of the next HTTP/1.1 request (408 with the error body when part of a head arrived, else silence);
//! - no request in flight for `idle_timeout` (HTTP/1.1 keep-alive and HTTP/2);
//! - a response the client stops reading for `idle_timeout`.
//!
//! The body of a request in flight is bounded by the handlers (their idle timeouts), not here.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::ApiError;

/// The time and size bounds of one connection. Defaults are those of ingress.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Longest wait for a complete request head.
    pub header_timeout: Duration,
    /// Longest time a connection stays open with no request in flight, and longest stall of a
    /// response the client does not read.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), answered 431 beyond it.
    pub max_header_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 65_536,
        }
    }
}

const NONE: u64 = u64::MAX;

/// What one connection is doing, shared by its socket wrapper, its service and its watchdog.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds since `opened` when the last request ended (its response body was dropped).
    last_end_ms: AtomicU64,
    /// Milliseconds since `opened` of the first byte read while no request was in flight.
    head_started_ms: AtomicU64,
    /// Milliseconds since `opened` since when a write has been waiting for the client.
    write_blocked_ms: AtomicU64,
    http2: AtomicBool,
    first_read: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NONE),
            write_blocked_ms: AtomicU64::new(NONE),
            http2: AtomicBool::new(false),
            first_read: AtomicBool::new(true),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// A request head was parsed; the returned guard ends the request when dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.head_started_ms.store(NONE, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    fn read_bytes(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.first_read.swap(false, Ordering::SeqCst) && bytes.starts_with(b"PRI ") {
            self.http2.store(true, Ordering::SeqCst);
        }
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let now = self.now_ms();
            let _ = self.head_started_ms.compare_exchange(
                NONE,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    fn write_blocked(&self, blocked: bool) {
        if blocked {
            let now = self.now_ms();
            let _ = self.write_blocked_ms.compare_exchange(
                NONE,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        } else {
            self.write_blocked_ms.store(NONE, Ordering::SeqCst);
        }
    }

    /// Why the connection must close now, if it must.
    fn verdict(&self, limits: &ConnLimits) -> Option<Close> {
        let now = self.now_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE - 1);
        let blocked = self.write_blocked_ms.load(Ordering::SeqCst);
        if blocked != NONE && now.saturating_sub(blocked) > ms(limits.idle_timeout) {
            return Some(Close::Silently("the client stopped reading the response"));
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let requests = self.requests.load(Ordering::SeqCst);
        let head_started = self.head_started_ms.load(Ordering::SeqCst);
        let http2 = self.http2.load(Ordering::SeqCst);
        // Before the first request (any protocol) the clock runs from the connection's opening;
        // later (HTTP/1.1 only) from the first byte of the next head.
        let head_clock = if requests == 0 {
            Some(0)
        } else if !http2 && head_started != NONE {
            Some(head_started)
        } else {
            None
        };
        if let Some(since) = head_clock {
            if now.saturating_sub(since) > ms(limits.header_timeout) {
                return Some(if !http2 && head_started != NONE {
                    Close::RequestTimeout
                } else {
                    Close::Silently("no request arrived in time")
                });
            }
        }
        let last_end = self.last_end_ms.load(Ordering::SeqCst);
        if now.saturating_sub(last_end) > ms(limits.idle_timeout) {
            return Some(Close::Silently("idle"));
        }
        None
    }
}

/// How a connection is closed by [`watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Part of a request head arrived, the rest did not: answer 408 and close.
    RequestTimeout,
    /// Nothing to answer: close.
    Silently(&'static str),
}

/// Ends a request on its connection when dropped.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let now = self.0.now_ms();
        self.0.last_end_ms.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that holds its request's [`RequestGuard`] until it is dropped.
pub struct GuardedBody {
    inner: Body,
    _guard: RequestGuard,
}

impl GuardedBody {
    pub fn wrap(inner: Body, guard: RequestGuard) -> Body {
        Body::new(Self {
            inner,
            _guard: guard,
        })
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves when the connection must close, and how.
pub async fn watch(activity: Arc<Activity>, limits: ConnLimits) -> Close {
    let shortest = limits.header_timeout.min(limits.idle_timeout);
    let tick = (shortest / 8).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Some(close) = activity.verdict(&limits) {
            return close;
        }
    }
}

/// The 408 written on a connection whose request head did not arrive in time.
pub fn request_timeout_answer(limits: &ConnLimits) -> Vec<u8> {
    let error = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request headers did not arrive within {:?}",
            limits.header_timeout
        ),
    );
    raw_answer(&error)
}

/// An error answer as raw HTTP/1.1 bytes, closing the connection.
fn raw_answer(error: &ApiError) -> Vec<u8> {
    let body = error.body_json();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The socket of one connection, shared with its watchdog (which may write a 408 after hyper let go).
pub struct GuardedIo {
    stream: Arc<TcpStream>,
    activity: Arc<Activity>,
    limits: ConnLimits,
    /// A replacement answer still being written.
    pending: Vec<u8>,
}

impl GuardedIo {
    pub fn new(stream: Arc<TcpStream>, activity: Arc<Activity>, limits: ConnLimits) -> Self {
        Self {
            stream,
            activity,
            limits,
            pending: Vec::new(),
        }
    }

    /// If `buf` is a bare error answer hyper wrote for a request it could not parse, the JSON one.
    fn replacement(&self, buf: &[u8]) -> Option<Vec<u8>> {
        if self.activity.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        if !(buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.0 4")) || buf.len() < 12 {
            return None;
        }
        let head_end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(buf.len());
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if head.contains("\r\ncontent-type:") {
            return None;
        }
        let status = std::str::from_utf8(&buf[9..12])
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())?;
        let message = match status {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => format!(
                "the request headers exceed {} bytes (or 100 fields)",
                self.limits.max_header_bytes
            ),
            StatusCode::URI_TOO_LONG => "the request URI is too long".to_owned(),
            _ => "the request is not valid HTTP/1.1".to_owned(),
        };
        Some(raw_answer(&ApiError::new(status, message)))
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(self.poll_raw_write(cx, None))?;
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `buf` (or the pending replacement when `None`) to the socket.
    fn poll_raw_write(&self, cx: &mut Context<'_>, buf: Option<&[u8]>) -> Poll<io::Result<usize>> {
        let bytes = buf.unwrap_or(&self.pending);
        loop {
            if self.stream.poll_write_ready(cx).is_pending() {
                self.activity.write_blocked(true);
                return Poll::Pending;
            }
            match self.stream.try_write(bytes) {
                Ok(n) => {
                    self.activity.write_blocked(false);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match self.stream.try_read(unfilled) {
                Ok(n) => {
                    self.activity.read_bytes(&unfilled[..n]);
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(replacement) = self.replacement(buf) {
            self.pending = replacement;
            // The bare answer counts as written; the JSON one goes out in its place.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        self.poll_raw_write(cx, Some(buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_pending(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        // The socket closes when its last owner (this wrapper or the watchdog) drops it.
        Poll::Ready(Ok(()))
    }
}
