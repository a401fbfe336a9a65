//! Downloaders (spec pipeline.md §5): `http` (URL allow-list, size cap while streaming, timeouts,
//! retries with full-jitter backoff for transient failures only) and `storage` (the storage
//! seam). Both stream into `<tmp_dir>/intake-pipeline-<random>/archive`, removed on drop, or
//! (`max_in_memory`) keep a small archive of known size in memory: no directory, no file, no trip to
//! the blocking pool. A body that passes that bound moves to the work directory at once, so memory
//! never holds more than the bound per download.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use intake_core::RequestId;
use intake_storage::{Bucket, PayloadStore, StorageError};
use rand::Rng;
use regex::RegexSet;
use tokio::io::AsyncWriteExt;

use crate::config::{DownloaderConfig, DownloaderKind, KeyFrom};
use crate::error::{Chain, PipelineError, Stage, StageError};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 8192;
const WORKDIR_PREFIX: &str = "intake-pipeline-";

/// `^(?:…)$` around a pattern that is not anchored at both ends.
pub fn anchor(pattern: &str) -> String {
    if pattern.starts_with('^') && pattern.ends_with('$') {
        pattern.to_owned()
    } else {
        format!("^(?:{pattern})$")
    }
}

/// A URL as it may be logged: `scheme://host[:port]/****`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}/****", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// A message's work directory, removed with everything in it when dropped (panics included).
#[derive(Debug)]
pub struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    pub fn new(tmp_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(tmp_dir)?;
        Ok(WorkDir {
            dir: tempfile::Builder::new()
                .prefix(WORKDIR_PREFIX)
                .tempdir_in(tmp_dir)?,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }
}

/// Removes work directories a crash left behind.
pub fn remove_leftovers(tmp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(WORKDIR_PREFIX) {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %Chain(&err), "cannot remove a leftover work directory");
            }
        }
    }
}

/// A downloaded archive.
#[derive(Debug)]
pub enum Body {
    /// The whole archive, at most the in-memory bound.
    Memory(Vec<u8>),
    /// In the work directory's `archive` file.
    File(WorkDir),
}

/// A finished download.
#[derive(Debug)]
pub struct Downloaded {
    pub body: Body,
    /// Bytes received.
    pub bytes: u64,
}

/// Where a download goes.
enum Dest<'a> {
    /// Always this file.
    File(&'a Path),
    /// Memory when the body's size is known and at most `limit`, else the archive file of a work
    /// directory made on first need (kept across retries).
    Spill {
        limit: u64,
        tmp_dir: &'a Path,
        work: Option<WorkDir>,
    },
}

impl Dest<'_> {
    /// The bound to buffer a body of `size` bytes under, if it is to be buffered at all.
    fn buffer_for(&self, size: Option<u64>) -> Option<u64> {
        match (self, size) {
            (Dest::Spill { limit, .. }, Some(size)) if size <= *limit => Some(*limit),
            _ => None,
        }
    }

    async fn create_file(&mut self) -> std::io::Result<tokio::fs::File> {
        match self {
            Dest::File(path) => tokio::fs::File::create(path).await,
            Dest::Spill { tmp_dir, work, .. } => {
                let path = match work {
                    Some(w) => w.archive(),
                    None => work.insert(WorkDir::new(tmp_dir)?).archive(),
                };
                tokio::fs::File::create(path).await
            }
        }
    }
}

/// Where a body ended.
enum Landed {
    Memory(Vec<u8>),
    File,
}

/// What a download needs from the message.
#[derive(Debug, Clone)]
pub struct Fetch<'a> {
    pub url: &'a str,
    pub request_id: Option<&'a str>,
    pub declared_size: Option<u64>,
}

/// A downloader of either kind.
pub struct Downloader {
    config: DownloaderConfig,
    allowed: RegexSet,
    client: reqwest::Client,
    store: Option<Arc<dyn PayloadStore>>,
}

fn dl(reason: &'static str, detail: impl Into<String>) -> StageError {
    StageError::permanent(Stage::Download, reason, detail)
}

fn transient(reason: &'static str, detail: impl Into<String>) -> StageError {
    StageError::transient(Stage::Download, reason, detail)
}

impl Downloader {
    pub fn new(
        config: &DownloaderConfig,
        store: Option<Arc<dyn PayloadStore>>,
    ) -> Result<Self, PipelineError> {
        let allowed = RegexSet::new(config.allowed_urls.iter().map(|p| anchor(p)))
            .map_err(|e| PipelineError::setup_from("service.downloader.allowed_urls", e))?;
        if config.allow_unsafe_links {
            tracing::warn!("allow_unsafe_links is set: archives are downloaded from any URL");
        }
        if config.kind == DownloaderKind::Storage && store.is_none() {
            return Err(PipelineError::setup(
                "the storage downloader needs the storage seam",
            ));
        }
        let policy_set = allowed.clone();
        let unsafe_links = config.allow_unsafe_links;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 3 {
                attempt.error("more than 3 redirects")
            } else if !unsafe_links && !policy_set.is_match(attempt.url().as_str()) {
                attempt.error("redirect target not allowed")
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(policy)
            .build()
            .map_err(|e| PipelineError::setup_from("HTTP client", e))?;
        std::fs::create_dir_all(&config.tmp_dir)?;
        remove_leftovers(&config.tmp_dir);
        Ok(Downloader {
            config: config.clone(),
            allowed,
            client,
            store,
        })
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.config.tmp_dir
    }

    /// Downloads into `dest`, returning the bytes written.
    pub async fn fetch(&self, fetch: &Fetch<'_>, dest: &Path) -> Result<u64, StageError> {
        let mut dest = Dest::File(dest);
        self.fetch_into(fetch, &mut dest).await.map(|(_, n)| n)
    }

    /// Downloads the archive: into memory when the response gives its size (Content-Length, the
    /// object's size) and that is at most `in_memory` bytes, else into a new work directory. The
    /// size limit, allow-list and timeouts are those of [`Downloader::fetch`].
    pub async fn fetch_body(
        &self,
        fetch: &Fetch<'_>,
        in_memory: u64,
    ) -> Result<Downloaded, StageError> {
        let mut dest = Dest::Spill {
            limit: in_memory,
            tmp_dir: &self.config.tmp_dir,
            work: None,
        };
        let (landed, bytes) = self.fetch_into(fetch, &mut dest).await?;
        let body = match (landed, dest) {
            (Landed::Memory(archive), _) => Body::Memory(archive),
            (Landed::File, Dest::Spill { work: Some(w), .. }) => Body::File(w),
            (Landed::File, _) => {
                return Err(StageError::internal(
                    Stage::Download,
                    "a download landed in no work directory",
                ))
            }
        };
        Ok(Downloaded { body, bytes })
    }

    async fn fetch_into(
        &self,
        fetch: &Fetch<'_>,
        dest: &mut Dest<'_>,
    ) -> Result<(Landed, u64), StageError> {
        if let Some(size) = fetch.declared_size {
            if size > self.config.max_archive_size {
                return Err(dl(
                    "too_large",
                    format!(
                        "declared size {size} exceeds max_archive_size ({} bytes)",
                        self.config.max_archive_size
                    ),
                ));
            }
        }
        let bytes = match self.config.kind {
            DownloaderKind::Http => self.fetch_http(fetch.url, dest).await?,
            DownloaderKind::Storage => self.fetch_storage(fetch, dest).await?,
        };
        if let Some(size) = fetch.declared_size {
            if size != bytes.1 {
                tracing::info!(
                    declared = size,
                    received = bytes.1,
                    "archive size differs from the message's size"
                );
            }
        }
        Ok(bytes)
    }

    /// Checks the URL form and the allow-list.
    pub fn check_url(&self, url: &str) -> Result<(), StageError> {
        if url.len() > MAX_URL_LEN {
            return Err(dl("url_not_allowed", "the URL is longer than 8 KiB"));
        }
        let parsed = url::Url::parse(url)
            .map_err(|e| dl("url_not_allowed", "the URL is not absolute").caused_by(e))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(dl(
                "url_not_allowed",
                format!("{} is not an http(s) URL without userinfo", redact_url(url)),
            ));
        }
        if !self.config.allow_unsafe_links && !self.allowed.is_match(url) {
            return Err(dl(
                "url_not_allowed",
                format!("{} matches no allowed_urls pattern", redact_url(url)),
            ));
        }
        Ok(())
    }

    async fn fetch_http(
        &self,
        url: &str,
        dest: &mut Dest<'_>,
    ) -> Result<(Landed, u64), StageError> {
        self.check_url(url)?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = tokio::time::timeout(
                self.config.total_timeout,
                self.attempt_http(url, &mut *dest),
            )
            .await
            .unwrap_or_else(|_| {
                Err((
                    transient("timeout", "the download took longer than total_timeout"),
                    None,
                ))
            });
            match result {
                Ok(n) => return Ok(n),
                Err((e, retry_after)) if e.is_transient() && attempt <= self.config.retries => {
                    crate::metrics::get()
                        .retries
                        .with_label_values(&["download"])
                        .inc();
                    let delay = retry_after
                        .map(|d| d.min(self.config.max_backoff))
                        .unwrap_or_else(|| self.backoff(attempt));
                    tracing::info!(
                        attempt,
                        reason = e.reason,
                        cause = Chain::sources(&e).map(tracing::field::display),
                        delay_ms = delay.as_millis() as u64,
                        "download failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err((e, _)) => return Err(e.with_attempts(attempt)),
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .config
            .backoff
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.config.max_backoff);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=ms)
        })
    }

    async fn attempt_http(
        &self,
        url: &str,
        dest: &mut Dest<'_>,
    ) -> Result<(Landed, u64), (StageError, Option<Duration>)> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| (classify(e), None))?;
        let status = resp.status();
        if !status.is_success() {
            let code = status.as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(if status.is_server_error() || code == 408 || code == 429 {
                (
                    transient("http_unavailable", format!("HTTP {code}")),
                    retry_after,
                )
            } else {
                (dl("http_rejected", format!("HTTP {code}")), None)
            });
        }
        if let Some(kind) = error_document_type(resp.headers()) {
            return Err((
                dl(
                    "http_rejected",
                    format!(
                        "HTTP {} with Content-Type {kind}: an error document, not an archive",
                        status.as_u16()
                    ),
                ),
                None,
            ));
        }
        if let Some(len) = resp.content_length() {
            if len > self.config.max_archive_size {
                return Err((
                    dl(
                        "too_large",
                        format!(
                            "Content-Length {len} exceeds max_archive_size ({} bytes)",
                            self.config.max_archive_size
                        ),
                    ),
                    None,
                ));
            }
        }
        let size = resp.content_length();
        let stream = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| (classify(e), None)));
        self.write_stream(stream, size, dest).await
    }

    /// Streams the body into `dest` under `max_archive_size` and `read_timeout`. A body of known
    /// `size` within the in-memory bound is gathered in memory; should it pass the bound after all,
    /// what came so far goes to the file and the rest follows it there.
    async fn write_stream<S, E>(
        &self,
        mut stream: S,
        size: Option<u64>,
        dest: &mut Dest<'_>,
    ) -> Result<(Landed, u64), E>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: From<(StageError, Option<Duration>)>,
    {
        let io = |e: std::io::Error| {
            let detail = format!("writing the archive: {e}");
            E::from((transient("io", detail).caused_by(e), None))
        };
        let bound = dest.buffer_for(size);
        let mut memory = match (bound, size) {
            (Some(_), Some(size)) => Some(Vec::with_capacity(usize::try_from(size).unwrap_or(0))),
            _ => None,
        };
        let mut file = match memory {
            Some(_) => None,
            None => Some(dest.create_file().await.map_err(io)?),
        };
        let mut total: u64 = 0;
        loop {
            let next = tokio::time::timeout(self.config.read_timeout, stream.next())
                .await
                .map_err(|_| {
                    E::from((
                        transient("timeout", "no body bytes within read_timeout"),
                        None,
                    ))
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk?;
            total += chunk.len() as u64;
            if total > self.config.max_archive_size {
                return Err(E::from((
                    dl(
                        "too_large",
                        format!(
                            "the body exceeds max_archive_size ({} bytes)",
                            self.config.max_archive_size
                        ),
                    ),
                    None,
                )));
            }
            if let Some(buffer) = &mut memory {
                if total <= bound.unwrap_or(0) {
                    buffer.extend_from_slice(&chunk);
                    continue;
                }
                let mut spilled = dest.create_file().await.map_err(io)?;
                spilled.write_all(buffer).await.map_err(io)?;
                memory = None;
                file = Some(spilled);
            }
            if let Some(f) = &mut file {
                f.write_all(&chunk).await.map_err(io)?;
            }
        }
        if let Some(f) = &mut file {
            f.flush().await.map_err(io)?;
        }
        if total == 0 {
            return Err(E::from((
                dl("empty_archive", "the archive is empty (0 bytes)"),
                None,
            )));
        }
        Ok(match memory {
            Some(buffer) => (Landed::Memory(buffer), total),
            None => (Landed::File, total),
        })
    }

    async fn fetch_storage(
        &self,
        fetch: &Fetch<'_>,
        dest: &mut Dest<'_>,
    ) -> Result<(Landed, u64), StageError> {
        let Some(store) = &self.store else {
            return Err(StageError::internal(
                Stage::Download,
                "no storage configured",
            ));
        };
        let key = match self.config.key_from {
            KeyFrom::RequestId => fetch
                .request_id
                .ok_or_else(|| {
                    StageError::permanent(
                        Stage::Decode,
                        "missing_field",
                        "missing field \"request_id\"",
                    )
                })?
                .to_owned(),
            KeyFrom::Url => {
                let rest = fetch
                    .url
                    .strip_prefix("s3://")
                    .ok_or_else(|| dl("url_not_allowed", "expected s3://<bucket>/<key>"))?;
                let (bucket, key) = rest
                    .split_once('/')
                    .ok_or_else(|| dl("url_not_allowed", "expected s3://<bucket>/<key>"))?;
                if !self.config.allowed_buckets.iter().any(|b| b == bucket)
                    || bucket != self.config.bucket
                {
                    return Err(dl(
                        "bucket_not_allowed",
                        format!("bucket {bucket:?} is not allowed"),
                    ));
                }
                key.to_owned()
            }
        };
        let id = RequestId::parse(&key)
            .map_err(|e| dl("object_not_found", "the key is not a request id").caused_by(e))?;
        let object = store.get(Bucket::Perm, &id).await.map_err(|e| match e {
            StorageError::NotFound { .. } => dl(
                "object_not_found",
                format!("no object {key} in {}", self.config.bucket),
            )
            .caused_by(e),
            other => transient("storage_error", other.to_string()).caused_by(other),
        })?;
        if object.meta.size > self.config.max_archive_size {
            return Err(dl(
                "too_large",
                format!("object size {} exceeds max_archive_size", object.meta.size),
            ));
        }
        let size = Some(object.meta.size);
        let stream = object
            .body
            .map(|r| r.map_err(|e| transient("storage_error", e.to_string()).caused_by(e)));
        self.write_stream::<_, StageErrorOnly>(
            stream.map(|r| r.map_err(StageErrorOnly)),
            size,
            dest,
        )
        .await
        .map_err(|e| e.0)
    }
}

/// Adapter so the storage stream shares `write_stream`.
struct StageErrorOnly(StageError);

impl From<(StageError, Option<Duration>)> for StageErrorOnly {
    fn from(v: (StageError, Option<Duration>)) -> Self {
        StageErrorOnly(v.0)
    }
}

/// The media type of a response that is an error document (JSON, XML, HTML), whatever its status:
/// such a body is never an archive (archives are served as the uploaded type, or
/// `application/octet-stream`).
fn error_document_type(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let value = headers.get(reqwest::header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    let is_error = matches!(
        essence.as_str(),
        "application/json" | "application/xml" | "text/xml" | "text/html"
    ) || essence.ends_with("+json")
        || essence.ends_with("+xml");
    is_error.then_some(essence)
}

/// The stage error of a failed request, caused by `e` without its URL: the error's own text
/// carries the URL, which is never logged, and so does nothing else here.
fn classify(e: reqwest::Error) -> StageError {
    let e = e.without_url();
    let err = if e.is_redirect() {
        dl(
            "url_not_allowed",
            "a redirect target is not allowed, or more than 3 redirects",
        )
    } else if e.is_timeout() {
        transient("timeout", "the request timed out")
    } else if e.is_connect() {
        transient("connection", "cannot connect")
    } else {
        let cause = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown cause".into());
        transient("connection", format!("transfer failed: {cause}"))
    };
    err.caused_by(e)
}
