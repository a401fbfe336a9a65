//! One file to `POST /api/ingress/v1/upload`: streamed from disk inside a multipart body with a known
//! `Content-Length` (so an oversized file is refused before it is sent), retried on 503 and on
//! connection errors, under a request id chosen before the first attempt.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
pub use indicatif::ProgressBar;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;
use tokio_util::io::ReaderStream;

use crate::error::{describe, ClientError, ServerRefusal};
use crate::multipart::{random_boundary, Framing};
use crate::retry;

/// The request-id header.
pub const REQUEST_ID_HEADER: &str = "x-rh-insights-request-id";

/// What to upload, and how.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// Base URL of the ingress.
    pub url: url::Url,
    pub file: PathBuf,
    /// The file part's content type; it picks the service.
    pub content_type: String,
    /// The `x-rh-identity` header value, when one is sent.
    pub identity: Option<String>,
    /// A JSON object's text (see [`check_metadata`]).
    pub metadata: Option<String>,
    /// Sent on every attempt, so a retry after a lost answer meets its own upload (409).
    pub request_id: String,
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Longest time an attempt may make no progress: no body bytes taken by the connection, and
    /// once the body is sent, no answer. A stalled attempt counts as a connection failure.
    pub idle_timeout: Duration,
}

/// A stored upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub request_id: String,
    /// 202, 201 (legacy mode), or 409 when a retry found the upload already stored.
    pub status: u16,
    /// The answer's JSON body (for a 409 after a retry, the refusal body).
    pub body: Value,
    pub attempts: u32,
}

/// Checks that `text` is a JSON object, as ingress requires of the metadata part, and returns it
/// compacted.
pub fn check_metadata(text: &str) -> Result<String, ClientError> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v.to_string()),
        Ok(_) => Err(ClientError::BadArgument(
            "metadata is not a JSON object".into(),
        )),
        Err(e) => Err(ClientError::BadArgument(format!(
            "metadata is not JSON: {e}"
        ))),
    }
}

/// The content type for a service and category, e.g. `application/vnd.redhat.advisor.payload+tgz`.
/// The suffix follows the file's extension (`+zip`, `+tar`, `+xz`, `+bz2`, else `+tgz`).
pub fn content_type_for(service: &str, category: &str, file: &std::path::Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let suffix = if name.ends_with(".zip") {
        "zip"
    } else if name.ends_with(".tar") {
        "tar"
    } else if name.ends_with(".tar.xz") || name.ends_with(".txz") || name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".tar.bz2") || name.ends_with(".bz2") {
        "bz2"
    } else {
        "tgz"
    };
    format!("application/vnd.redhat.{service}.{category}+{suffix}")
}

/// Uploads the file, retrying as the module doc says. `progress`, when given, advances with the
/// bytes read from the file (and is reset on a retry).
pub async fn upload(
    client: &reqwest::Client,
    req: &UploadRequest,
    progress: Option<&ProgressBar>,
) -> Result<Accepted, ClientError> {
    let url = crate::route(&req.url, crate::UPLOAD_PATH)?;
    let name = req
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into());
    let framing = Framing::new(
        &random_boundary(),
        &req.content_type,
        &name,
        req.metadata.as_deref(),
    );
    let max_attempts = req.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let activity = Activity::default();
        let (body, len) = file_body(req, &framing, progress, activity.clone()).await?;
        let mut call = client
            .post(url.clone())
            .header(CONTENT_TYPE, framing.content_type())
            .header(CONTENT_LENGTH, len)
            .header(REQUEST_ID_HEADER, &req.request_id)
            .body(body);
        if let Some(identity) = &req.identity {
            call = call.header(intake_core::identity::HEADER, identity);
        }
        let (wait, last) = match activity.watch(call.send(), req.idle_timeout).await {
            Err(stalled) => (retry::backoff(attempt), stalled),
            Ok(sent) => match sent {
                Ok(answer) => {
                    let status = answer.status();
                    let retry_after = retry::retry_after(answer.headers());
                    let body = crate::answer::capped_body(answer).await.unwrap_or_default();
                    if status.is_success() {
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        return Ok(Accepted {
                            request_id: req.request_id.clone(),
                            status: status.as_u16(),
                            body,
                            attempts: attempt,
                        });
                    }
                    let refusal = ServerRefusal::from_body(status, &body);
                    if status == reqwest::StatusCode::CONFLICT && attempt > 1 {
                        // An earlier attempt was stored but its answer was lost: the upload is done.
                        return Ok(Accepted {
                            request_id: req.request_id.clone(),
                            status: status.as_u16(),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            attempts: attempt,
                        });
                    }
                    if !retry::is_retryable_status(status) {
                        return Err(if status.is_client_error() {
                            ClientError::Refused(refusal)
                        } else {
                            ClientError::ServerFailed(refusal)
                        });
                    }
                    (
                        retry_after.unwrap_or_else(|| retry::backoff(attempt)),
                        refusal.to_string(),
                    )
                }
                Err(e) if retry::is_retryable_error(&e) => (retry::backoff(attempt), describe(&e)),
                Err(e) => {
                    return Err(ClientError::GaveUp {
                        attempts: attempt,
                        last: describe(&e),
                    })
                }
            },
        };
        if attempt >= max_attempts {
            return Err(ClientError::GaveUp {
                attempts: attempt,
                last,
            });
        }
        tracing::warn!(attempt, wait = ?wait, problem = %last, "upload not accepted; trying again");
        if let Some(bar) = progress {
            bar.set_position(0);
        }
        tokio::time::sleep(wait).await;
    }
}

/// The multipart body around a fresh read of the file, and its length.
async fn file_body(
    req: &UploadRequest,
    framing: &Framing,
    progress: Option<&ProgressBar>,
    activity: Activity,
) -> Result<(reqwest::Body, u64), ClientError> {
    let file_error = |source| ClientError::File {
        path: req.file.display().to_string(),
        source,
    };
    let file = tokio::fs::File::open(&req.file).await.map_err(file_error)?;
    let file_len = file.metadata().await.map_err(file_error)?.len();
    let bar = progress.cloned();
    let content = ReaderStream::with_capacity(file, 64 * 1024).inspect_ok(move |chunk: &Bytes| {
        activity.touch();
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    });
    let head = futures::stream::once(futures::future::ready(Ok(framing.head.clone())));
    let tail = futures::stream::once(futures::future::ready(Ok(framing.tail.clone())));
    let stream = head.chain(content).chain(tail);
    Ok((
        reqwest::Body::wrap_stream(stream),
        framing.body_len(file_len),
    ))
}

/// Used by callers that want the default attempt count documented in one place.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A client suited to uploads: bounded connect time and no total timeout (a large file over a slow
/// link takes what it takes); stalls are caught by [`UploadRequest::idle_timeout`] instead, because
/// reqwest's read timeout runs from the start of the request, body upload included.
pub fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(ClientError::HttpClient)
}

/// When an attempt last made progress (the connection took a chunk of the body).
#[derive(Debug, Clone)]
struct Activity {
    start: std::time::Instant,
    last_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            start: std::time::Instant::now(),
            last_ms: Default::default(),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Drives `send` to its end, or gives up once nothing has moved for `idle`.
    async fn watch<F: std::future::Future>(
        &self,
        send: F,
        idle: Duration,
    ) -> Result<F::Output, String> {
        tokio::pin!(send);
        loop {
            let check = idle
                .saturating_sub(self.idle())
                .max(Duration::from_millis(10));
            tokio::select! {
                out = &mut send => return Ok(out),
                () = tokio::time::sleep(check) => {
                    if self.idle() >= idle {
                        return Err(format!("no progress for {idle:?}"));
                    }
                }
            }
        }
    }
}

/// Files at least this big get a progress bar (when the caller shows one at all).
pub const PROGRESS_THRESHOLD: u64 = 4 * 1024 * 1024;

/// A progress bar over `len` bytes, with bytes per second and time left, drawn on stderr.
pub fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_must_be_a_json_object() {
        assert_eq!(
            check_metadata(r#"{ "a" : [1, 2] }"#).unwrap(),
            r#"{"a":[1,2]}"#
        );
        for bad in ["[1]", "\"text\"", "3", "{oops"] {
            assert!(
                matches!(check_metadata(bad), Err(ClientError::BadArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn content_type_suffix_follows_the_file() {
        let ct = |name: &str| content_type_for("advisor", "payload", std::path::Path::new(name));
        assert_eq!(
            ct("/tmp/a.tar.gz"),
            "application/vnd.redhat.advisor.payload+tgz"
        );
        assert_eq!(ct("a.ZIP"), "application/vnd.redhat.advisor.payload+zip");
        assert_eq!(ct("a.tar"), "application/vnd.redhat.advisor.payload+tar");
        assert_eq!(ct("a.tar.xz"), "application/vnd.redhat.advisor.payload+xz");
        assert_eq!(
            ct("a.tar.bz2"),
            "application/vnd.redhat.advisor.payload+bz2"
        );
        assert_eq!(ct("archive"), "application/vnd.redhat.advisor.payload+tgz");
    }

    #[tokio::test]
    async fn a_stalled_attempt_is_given_up_after_the_idle_time() {
        let activity = Activity::default();
        let out = activity
            .watch(std::future::pending::<()>(), Duration::from_millis(50))
            .await;
        assert_eq!(out, Err("no progress for 50ms".to_owned()));
        let activity = Activity::default();
        assert_eq!(
            activity.watch(async { 7 }, Duration::from_millis(50)).await,
            Ok(7)
        );
    }
}
