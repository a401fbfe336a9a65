//! Reaching a verdict on one announced payload: by mode, or by downloading and inspecting it.

use intake_archive::{inspect, inspect_bytes, Limits, SpecialFiles};
use intake_core::config::{ValidatorConfig, ValidatorMode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::announce::AnnounceView;
use crate::download::{download, Bounds, DownloadError, Downloaded};

/// The outcome for one payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `validation: success`; `detail` describes what was checked.
    Valid { detail: String },
    /// `validation: failure`: the payload's content is bad.
    Invalid { reason: String },
    /// No verdict at all: the payload could not be fetched (past the retries), its announce has
    /// no URL, or a local failure stopped the check. Only status `error` is sent; the payload
    /// stays in quarantine.
    Unchecked { reason: String },
}

impl Verdict {
    /// The `validation` value, `None` when there is no verdict to send.
    pub(crate) fn validation(&self) -> Option<&'static str> {
        match self {
            Verdict::Valid { .. } => Some("success"),
            Verdict::Invalid { .. } => Some("failure"),
            Verdict::Unchecked { .. } => None,
        }
    }

    /// The `reason` of a failure.
    pub(crate) fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Valid { .. } => None,
            Verdict::Invalid { reason } | Verdict::Unchecked { reason } => Some(reason),
        }
    }
}

/// A failure reason: the sentence for a person, then the stable code in parentheses.
fn reason(sentence: &dyn std::fmt::Display, code: &str) -> String {
    format!("{sentence} ({code})")
}

fn from_download(e: DownloadError) -> Verdict {
    let reason = reason(&e, e.code());
    if e.is_content() {
        Verdict::Invalid { reason }
    } else {
        Verdict::Unchecked { reason }
    }
}

/// Decides on `announce` according to the configured mode; `None` when `cancel` fired while the
/// payload could not be fetched yet.
pub(crate) async fn decide(
    config: &ValidatorConfig,
    client: &reqwest::Client,
    announce: &AnnounceView,
    cancel: &CancellationToken,
) -> Option<Verdict> {
    match config.mode {
        ValidatorMode::PassAll => Some(Verdict::Valid {
            detail: "pass-all mode".into(),
        }),
        ValidatorMode::FailAll => Some(Verdict::Invalid {
            reason: "fail-all mode".into(),
        }),
        ValidatorMode::Check => check(config, client, announce, cancel).await,
    }
}

async fn check(
    config: &ValidatorConfig,
    client: &reqwest::Client,
    announce: &AnnounceView,
    cancel: &CancellationToken,
) -> Option<Verdict> {
    Some(match check_inner(config, client, announce, cancel).await? {
        Ok(verdict) => verdict,
        Err(e) if e.is_content() => from_download(e),
        Err(e) => Verdict::Unchecked {
            reason: format!(
                "the payload could not be fetched within {:?}: {}",
                config.download_retry_for,
                reason(&e, e.code())
            ),
        },
    })
}

async fn check_inner(
    config: &ValidatorConfig,
    client: &reqwest::Client,
    announce: &AnnounceView,
    cancel: &CancellationToken,
) -> Option<Result<Verdict, DownloadError>> {
    if let Some(size) = announce.size {
        if size > config.max_download_size {
            return Some(Err(DownloadError::TooLarge {
                limit: config.max_download_size,
                seen: size,
            }));
        }
    }
    let Some(url) = announce.url.as_deref() else {
        return Some(Ok(from_download(DownloadError::NotHttp)));
    };
    let bounds = Bounds {
        max_size: config.max_download_size,
        attempt_timeout: config.timeout,
        retry_for: config.download_retry_for,
    };
    let fetch_started = Instant::now();
    let fetched = download(client, url, bounds, cancel).await?;
    crate::metrics::get()
        .download_duration
        .with_label_values(&[if fetched.is_ok() { "ok" } else { "error" }])
        .observe(fetch_started.elapsed().as_secs_f64());
    let (downloaded, bytes, started) = match fetched {
        Ok(done) => done,
        Err(DownloadError::NotHttp) => return Some(Ok(from_download(DownloadError::NotHttp))),
        Err(e) => return Some(Err(e)),
    };
    // `VALIDATOR_TIMEOUT` bounds the successful attempt and the inspection together.
    let deadline = started + config.timeout;
    tracing::debug!(bytes, "payload downloaded");
    let limits = Limits {
        max_unpacked_size: config.max_unpacked_size,
        max_files: config.max_files,
        max_file_size: config.max_unpacked_size,
        timeout: deadline.saturating_duration_since(Instant::now()),
        special_files: SpecialFiles::Refuse,
        ..Limits::default()
    };
    // A temporary file is removed when `downloaded` is dropped, after the inspection.
    let inspected = tokio::task::spawn_blocking(move || match downloaded {
        Downloaded::Memory(bytes) => inspect_bytes(bytes, &limits),
        Downloaded::File(path) => inspect(&path, &limits),
    })
    .await;
    Some(Ok(match inspected {
        Ok(Ok(s)) => Verdict::Valid {
            detail: format!(
                "{}, {} files, {} bytes unpacked",
                s.format, s.files, s.unpacked_bytes
            ),
        },
        Ok(Err(e)) if e.is_transient() => Verdict::Unchecked {
            reason: reason(&e, e.code()),
        },
        Ok(Err(e)) => Verdict::Invalid {
            reason: reason(&e, e.code()),
        },
        Err(e) => Verdict::Unchecked {
            reason: reason(&format!("inspection did not finish: {e}"), "internal"),
        },
    }))
}
