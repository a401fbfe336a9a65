//! Streaming a payload from its announce URL into a temporary file, with the size cap enforced
//! while bytes arrive, a deadline, and retries for transient failures.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Attempts at one download while failures are transient.
pub(crate) const ATTEMPTS: u32 = 4;
/// First pause between attempts; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

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

    /// Whether another attempt may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            DownloadError::Unavailable(_)
                | DownloadError::Timeout
                | DownloadError::Connection(_)
                | DownloadError::Io(_)
        )
    }
}

fn from_reqwest(e: reqwest::Error) -> DownloadError {
    if e.is_timeout() {
        DownloadError::Timeout
    } else {
        DownloadError::Connection(e.without_url().to_string())
    }
}

/// Downloads `url` into `dest` (truncated first), retrying transient failures with backoff until
/// [`ATTEMPTS`] or `deadline`. Returns the bytes written.
pub(crate) async fn download(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    max_size: u64,
    deadline: Instant,
) -> Result<u64, DownloadError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(DownloadError::NotHttp);
    }
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout_at(
            deadline,
            attempt_once(client, url, dest, max_size),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(DownloadError::Timeout),
        };
        match result {
            Err(e)
                if e.is_transient()
                    && attempt < ATTEMPTS
                    && Instant::now() + backoff < deadline =>
            {
                tracing::info!(attempt, error = %e, "download failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    max_size: u64,
) -> Result<u64, DownloadError> {
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
    let mut file = tokio::fs::File::create(dest).await?;
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
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.sync_all().await?;
    if written == 0 {
        return Err(DownloadError::Empty);
    }
    Ok(written)
}
