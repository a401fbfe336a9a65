//! Reaching a verdict on one announced payload: by mode, or by downloading and inspecting it.

use intake_archive::{inspect, inspect_bytes, Limits, SpecialFiles};
use intake_core::config::{ValidatorConfig, ValidatorMode};
use tokio::time::Instant;

use crate::announce::AnnounceView;
use crate::download::{download, DownloadError, Downloaded};

/// The outcome for one payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `validation: success`; `detail` describes what was checked.
    Valid { detail: String },
    /// `validation: failure`: the payload itself is bad (or its URL permanently is).
    Invalid { reason: String },
    /// `validation: failure` because the payload could not be checked (transient download
    /// failures that outlasted the retries, local I/O).
    Unchecked { reason: String },
}

impl Verdict {
    /// The `validation` value.
    pub(crate) fn validation(&self) -> &'static str {
        match self {
            Verdict::Valid { .. } => "success",
            Verdict::Invalid { .. } | Verdict::Unchecked { .. } => "failure",
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
    if e.is_transient() {
        Verdict::Unchecked { reason }
    } else {
        Verdict::Invalid { reason }
    }
}

/// Decides on `announce` according to the configured mode.
pub(crate) async fn decide(
    config: &ValidatorConfig,
    client: &reqwest::Client,
    announce: &AnnounceView,
) -> Verdict {
    match config.mode {
        ValidatorMode::PassAll => Verdict::Valid {
            detail: "pass-all mode".into(),
        },
        ValidatorMode::FailAll => Verdict::Invalid {
            reason: "fail-all mode".into(),
        },
        ValidatorMode::Check => check(config, client, announce).await,
    }
}

async fn check(
    config: &ValidatorConfig,
    client: &reqwest::Client,
    announce: &AnnounceView,
) -> Verdict {
    let deadline = Instant::now() + config.timeout;
    if let Some(size) = announce.size {
        if size > config.max_download_size {
            return from_download(DownloadError::TooLarge {
                limit: config.max_download_size,
                seen: size,
            });
        }
    }
    let Some(url) = announce.url.as_deref() else {
        return from_download(DownloadError::NotHttp);
    };
    let (downloaded, bytes) = match download(client, url, config.max_download_size, deadline).await
    {
        Ok(done) => done,
        Err(e) => return from_download(e),
    };
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
    match inspected {
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
    }
}
