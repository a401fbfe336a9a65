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
    #[error("the multipart {what} exceeds {limit} bytes")]
    Framing { what: &'static str, limit: usize },
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

/// Where [`FramingGuard`] is in the multipart body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Preamble,
    Headers,
    Data,
}

/// Bounds what the multipart parser would otherwise buffer whole: the preamble before the first
/// boundary and each part's headers. It follows the framing itself (boundary, then headers up to a
/// blank line, then data up to the next boundary) and fails the stream as soon as one of them
/// passes its limit, before the parser has seen more than one chunk of it.
pub struct FramingGuard<S> {
    inner: S,
    delimiter: memchr::memmem::Finder<'static>,
    blank_line: memchr::memmem::Finder<'static>,
    state: Framing,
    count: usize,
    /// The end of what came before, for a delimiter split across chunks.
    carry: Vec<u8>,
    max_preamble: usize,
    max_part_headers: usize,
    done: bool,
}

impl<S> FramingGuard<S> {
    pub fn new(inner: S, boundary: &str, max_preamble: usize, max_part_headers: usize) -> Self {
        Self {
            inner,
            delimiter: memchr::memmem::Finder::new(format!("\r\n--{boundary}").as_bytes())
                .into_owned(),
            blank_line: memchr::memmem::Finder::new(b"\r\n\r\n").into_owned(),
            state: Framing::Preamble,
            count: 0,
            // The first boundary may open the body, with no line break before it.
            carry: b"\r\n".to_vec(),
            max_preamble,
            max_part_headers,
            done: false,
        }
    }

    /// Follows the framing through `chunk`; an error when a bounded region grew past its limit.
    fn follow(&mut self, chunk: &[u8]) -> Result<(), BodyAbort> {
        let mut pos = 0;
        loop {
            let region = &chunk[pos..];
            let finder = match self.state {
                Framing::Preamble | Framing::Data => &self.delimiter,
                Framing::Headers => &self.blank_line,
            };
            let found = find_end(&self.carry, region, finder);
            let taken = found.unwrap_or(region.len());
            if self.state != Framing::Data {
                self.count += taken;
                let (what, limit) = match self.state {
                    Framing::Preamble => ("preamble before the first boundary", self.max_preamble),
                    _ => ("part headers", self.max_part_headers),
                };
                if self.count > limit + finder.needle().len() {
                    return Err(BodyAbort::Framing { what, limit });
                }
            }
            match found {
                Some(end) => {
                    self.state = match self.state {
                        Framing::Preamble | Framing::Data => Framing::Headers,
                        Framing::Headers => Framing::Data,
                    };
                    self.count = 0;
                    self.carry.clear();
                    pos += end;
                }
                None => {
                    let keep = finder.needle().len().saturating_sub(1);
                    if region.len() >= keep {
                        self.carry.clear();
                        self.carry.extend_from_slice(&region[region.len() - keep..]);
                    } else {
                        self.carry.extend_from_slice(region);
                        let excess = self.carry.len().saturating_sub(keep);
                        self.carry.drain(..excess);
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// Where the first match of `finder` in `carry` followed by `region` ends, as an offset in `region`.
/// `carry` is shorter than the needle, so a match always ends inside `region`.
fn find_end(carry: &[u8], region: &[u8], finder: &memchr::memmem::Finder<'_>) -> Option<usize> {
    let n = finder.needle().len();
    if !carry.is_empty() {
        let take = region.len().min(n.saturating_sub(1));
        let mut joined = Vec::with_capacity(carry.len() + take);
        joined.extend_from_slice(carry);
        joined.extend_from_slice(&region[..take]);
        if let Some(i) = finder.find(&joined) {
            return Some(i + n - carry.len());
        }
    }
    finder.find(region).map(|i| i + n)
}

impl<S> Stream for FramingGuard<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => match self.follow(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(abort) => {
                    self.done = true;
                    Poll::Ready(Some(Err(abort.into_io())))
                }
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]], preamble: usize, headers: usize) -> Result<(), BodyAbort> {
        let mut g = FramingGuard::new(
            futures::stream::empty::<Result<Bytes, std::io::Error>>(),
            "b",
            preamble,
            headers,
        );
        for c in chunks {
            g.follow(c)?;
        }
        Ok(())
    }

    #[test]
    fn follows_parts_across_chunk_edges() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ndata\r\n--b\r\nX: y\r\n\r\nmore data\r\n--b--\r\n";
        // Every way of cutting the body in two, and byte by byte.
        for cut in 0..body.len() {
            assert!(
                run(&[&body[..cut], &body[cut..]], 0, 48).is_ok(),
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert!(run(&bytes, 0, 48).is_ok());
        // The same body with one header too long for the limit.
        assert!(matches!(
            run(&[body], 0, 20),
            Err(BodyAbort::Framing {
                what: "part headers",
                ..
            })
        ));
    }

    #[test]
    fn long_preamble_and_long_headers_fail_early() {
        let preamble = vec![b'x'; 100];
        assert!(run(&[&preamble], 100, 10).is_ok());
        assert!(matches!(
            run(&[&preamble, &preamble], 100, 10),
            Err(BodyAbort::Framing {
                what: "preamble before the first boundary",
                ..
            })
        ));
        // Part headers that never end, sent as many small chunks: refused once past the limit.
        let mut chunks: Vec<Vec<u8>> = vec![b"--b\r\nX: ".to_vec()];
        chunks.extend((0..100).map(|_| vec![b'a'; 10]));
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        assert!(matches!(
            run(&refs, 0, 500),
            Err(BodyAbort::Framing {
                what: "part headers",
                ..
            })
        ));
        // A big data part is never counted.
        let mut big = b"--b\r\n\r\n".to_vec();
        big.extend(vec![b'd'; 100_000]);
        big.extend_from_slice(b"\r\n--b--");
        assert!(run(&[&big], 0, 10).is_ok());
    }
}
