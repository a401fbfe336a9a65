//! Streaming a payload from its announce URL, with the size cap enforced while bytes arrive, a
//! per-attempt deadline, and retries with backoff for every failure that says nothing about the
//! payload itself (spec messages.md, "A verdict is about content only"). Payloads up to
//! [`IN_MEMORY_MAX`] stay in memory (most do: no file to create, write and remove per payload);
//! larger ones spill to a temporary file.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First pause between attempts; it doubles each time, up to [`MAX_BACKOFF`], with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Largest download kept in memory; each of the `VALIDATOR_CONCURRENCY` checks holds at most this.
pub(crate) const IN_MEMORY_MAX: usize = 1024 * 1024;

/// A downloaded payload, in memory or (past [`IN_MEMORY_MAX`]) in a temporary file that is removed
/// when this is dropped.
#[derive(Debug)]
pub(crate) enum Downloaded {
    Memory(Vec<u8>),
    File(tempfile::TempPath),
}

/// Where the bytes of one attempt go: memory until they outgrow it, then a temporary file.
enum Sink {
    Memory(Vec<u8>),
    File(tempfile::TempPath, tokio::fs::File),
}

impl Sink {
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Memory(buf) if buf.len() + chunk.len() <= IN_MEMORY_MAX => {
                buf.extend_from_slice(chunk);
                Ok(())
            }
            Sink::Memory(buf) => {
                let held = std::mem::take(buf);
                let temp = tokio::task::spawn_blocking(|| {
                    tempfile::Builder::new()
                        .prefix("intake-validator-")
                        .tempfile()
                })
                .await
                .map_err(std::io::Error::other)??;
                let (file, path) = temp.into_parts();
                let mut file = tokio::fs::File::from_std(file);
                file.write_all(&held).await?;
                file.write_all(chunk).await?;
                *self = Sink::File(path, file);
                Ok(())
            }
            Sink::File(_, file) => file.write_all(chunk).await,
        }
    }

    /// The download, its file's bytes handed to the kernel (a temporary file needs no fsync).
    async fn finish(self) -> std::io::Result<Downloaded> {
        match self {
            Sink::Memory(buf) => Ok(Downloaded::Memory(buf)),
            Sink::File(path, mut file) => {
                file.flush().await?;
                Ok(Downloaded::File(path))
            }
        }
    }
}

/// Why a download failed; [`DownloadError::code`] names it in the failure reason (the download
/// codes of spec pipeline.md §11).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    #[error("the announce has no http(s) URL to download")]
    NotHttp,
    #[error("the payload is larger than the {limit}-byte download limit ({seen} bytes)")]
    TooLarge { limit: u64, seen: u64 },
    #[error("the payload is empty")]
    Empty,
    #[error("the download URL answered {0}")]
    Rejected(StatusCode),
    #[error("the download URL answered {0}")]
    Unavailable(StatusCode),
    #[error("the download timed out")]
    Timeout,
    #[error("the download failed: {0}")]
    Connection(String),
    #[error("writing the download failed: {0}")]
    Io(#[from] std::io::Error),
}

impl DownloadError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            DownloadError::NotHttp => "url_not_allowed",
            DownloadError::TooLarge { .. } => "too_large",
            DownloadError::Empty => "empty_archive",
            DownloadError::Rejected(_) => "http_rejected",
            DownloadError::Unavailable(_) => "http_unavailable",
            DownloadError::Timeout => "timeout",
            DownloadError::Connection(_) => "connection",
            DownloadError::Io(_) => "io",
        }
    }

    /// Whether the failure is about the payload's content (its size, or no bytes at all), and so
    /// a verdict. Every other failure only says the payload could not be fetched.
    pub(crate) fn is_content(&self) -> bool {
        matches!(self, DownloadError::TooLarge { .. } | DownloadError::Empty)
    }

    /// Whether another attempt may succeed: any failure to fetch (an answer such as 403 or 404
    /// too, which a restarted or reconfigured server may stop giving), but not a bad payload or an
    /// announce without a URL.
    pub(crate) fn is_retried(&self) -> bool {
        !self.is_content() && !matches!(self, DownloadError::NotHttp)
    }
}

fn from_reqwest(e: reqwest::Error) -> DownloadError {
    if e.is_timeout() {
        DownloadError::Timeout
    } else {
        DownloadError::Connection(e.without_url().to_string())
    }
}

/// How one payload's download is bounded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub max_size: u64,
    /// One attempt, from request to last byte.
    pub attempt_timeout: Duration,
    /// No attempt starts this long after the first one did.
    pub retry_for: Duration,
}

/// A finished download: the payload, its size and when the attempt that fetched it started.
pub(crate) type Fetched = (Downloaded, u64, Instant);

/// Downloads `url`, retrying every failure to fetch with backoff until `bounds.retry_for` has
/// passed. `None` when `cancel` fired first (the retries stop at once).
pub(crate) async fn download(
    client: &reqwest::Client,
    url: &str,
    bounds: Bounds,
    cancel: &CancellationToken,
) -> Option<Result<Fetched, DownloadError>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Some(Err(DownloadError::NotHttp));
    }
    let give_up = Instant::now() + bounds.retry_for;
    let attempt = || async {
        let started = Instant::now();
        match tokio::time::timeout(
            bounds.attempt_timeout,
            attempt_once(client, url, bounds.max_size),
        )
        .await
        {
            Ok(Ok((downloaded, size))) => Ok((downloaded, size, started)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DownloadError::Timeout),
        }
    };
    let backoff = ExponentialBuilder::new()
        .with_min_delay(FIRST_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_jitter()
        .without_max_times();
    let retrying = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &DownloadError| e.is_retried() && Instant::now() < give_up)
        // The last pause ends when the retry time does, so that one last attempt is made then.
        .adjust(|_: &DownloadError, pause: Option<Duration>| {
            pause.map(|p| p.min(give_up.saturating_duration_since(Instant::now())))
        })
        .notify(|e: &DownloadError, pause: Duration| {
            tracing::info!(error = %e, retry_in = ?pause, "download failed; retrying");
        });
    tokio::select! {
        _ = cancel.cancelled() => None,
        result = retrying => Some(result),
    }
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    max_size: u64,
) -> Result<(Downloaded, u64), DownloadError> {
    let response = client.get(url).send().await.map_err(from_reqwest)?;
    let status = response.status();
    if !status.is_success() {
        let transient = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        return Err(if transient {
            DownloadError::Unavailable(status)
        } else {
            DownloadError::Rejected(status)
        });
    }
    if let Some(length) = response.content_length() {
        if length > max_size {
            return Err(DownloadError::TooLarge {
                limit: max_size,
                seen: length,
            });
        }
    }
    let expected = response.content_length().unwrap_or(0);
    let mut sink = Sink::Memory(Vec::with_capacity(
        usize::try_from(expected).map_or(0, |n| n.min(IN_MEMORY_MAX)),
    ));
    let mut body = response.bytes_stream();
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(from_reqwest)?;
        written += chunk.len() as u64;
        if written > max_size {
            return Err(DownloadError::TooLarge {
                limit: max_size,
                seen: written,
            });
        }
        sink.write(&chunk).await?;
    }
    if written == 0 {
        return Err(DownloadError::Empty);
    }
    Ok((sink.finish().await?, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sink_of(chunks: &[Vec<u8>]) -> Downloaded {
        let mut sink = Sink::Memory(Vec::new());
        for chunk in chunks {
            sink.write(chunk).await.unwrap();
        }
        sink.finish().await.unwrap()
    }

    #[tokio::test]
    async fn small_downloads_stay_in_memory_and_large_ones_spill_whole() {
        let small = vec![vec![1u8; IN_MEMORY_MAX / 2], vec![2u8; IN_MEMORY_MAX / 2]];
        match sink_of(&small).await {
            Downloaded::Memory(bytes) => assert_eq!(bytes, small.concat()),
            other => panic!("exactly the limit stays in memory, got {other:?}"),
        }
        let large = vec![
            vec![3u8; IN_MEMORY_MAX - 10],
            vec![4u8; 20],
            vec![5u8; 1000],
        ];
        match sink_of(&large).await {
            Downloaded::File(path) => {
                assert_eq!(std::fs::read(&path).unwrap(), large.concat());
                let kept = path.to_path_buf();
                drop(path);
                assert!(!kept.exists(), "the temporary file goes with the download");
            }
            other => panic!("past the limit spills to a file, got {other:?}"),
        }
    }
}
