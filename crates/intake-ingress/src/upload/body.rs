//! The request body as a stream with an idle timeout, and the file part as a stream with the size
//! limit enforced while it flows. Their failures are typed ([`BodyAbort`]) and travel inside
//! `io::Error` through the storage driver, so the handler can tell a 413 from a vanished client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Why a body stopped before its end.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyAbort {
    #[error("file part exceeds the {limit}-byte limit for service {service:?} ({received} bytes received)")]
    TooLarge {
        limit: u64,
        service: String,
        received: u64,
    },
    #[error("no body bytes arrived for {0:?}; the upload was aborted")]
    Idle(Duration),
    #[error("the client closed the connection before the body ended: {0}")]
    ClientGone(String),
    #[error("malformed multipart body: {0}")]
    Malformed(String),
}

impl BodyAbort {
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }

    /// Finds a `BodyAbort` inside an error chain (io::Error payloads and sources).
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyAbort> {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            if let Some(abort) = e.downcast_ref::<BodyAbort>() {
                return Some(abort);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(inner) = io.get_ref() {
                    if let Some(abort) = inner.downcast_ref::<BodyAbort>() {
                        return Some(abort);
                    }
                }
            }
            current = e.source();
        }
        None
    }
}

type Inner = Pin<Box<dyn Stream<Item = Result<Bytes, axum::Error>> + Send>>;

/// The raw request body with an idle timeout between chunks.
pub struct IdleBody {
    inner: Inner,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl IdleBody {
    pub fn new(body: axum::body::Body, idle: Duration) -> Self {
        Self {
            inner: Box::pin(body.into_data_stream()),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            done: false,
        }
    }
}

impl Stream for IdleBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let deadline = tokio::time::Instant::now() + self.idle;
                self.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(BodyAbort::ClientGone(e.to_string()).into_io())))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    let idle = self.idle;
                    Poll::Ready(Some(Err(BodyAbort::Idle(idle).into_io())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A multipart file part, counted against `limit`: the stream fails as soon as the count passes it.
pub struct LimitedPart {
    field: multer::Field<'static>,
    limit: u64,
    service: String,
    received: u64,
    done: bool,
}

impl LimitedPart {
    pub fn new(field: multer::Field<'static>, limit: u64, service: String) -> Self {
        Self {
            field,
            limit,
            service,
            received: 0,
            done: false,
        }
    }
}

impl Stream for LimitedPart {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.field.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                if self.received > self.limit {
                    self.done = true;
                    let abort = BodyAbort::TooLarge {
                        limit: self.limit,
                        service: self.service.clone(),
                        received: self.received,
                    };
                    return Poll::Ready(Some(Err(abort.into_io())));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(multer_abort(e).into_io())))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Classifies a multer error: our own body aborts pass through, the rest is a malformed body.
pub fn multer_abort(e: multer::Error) -> BodyAbort {
    if let multer::Error::StreamReadFailed(inner) = &e {
        if let Some(abort) = BodyAbort::find(inner.as_ref()) {
            return abort.clone();
        }
    }
    BodyAbort::Malformed(e.to_string())
}
