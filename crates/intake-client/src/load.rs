//! The load generator: `concurrency` workers post uploads to one ingress until a count or a
//! duration is reached, and the run is summed up as throughput, latency percentiles and answers.
//!
//! The client is kept cheap so the numbers describe the server: payload bytes are generated once
//! and shared (a fixed size is one prebuilt body per service holding a well-formed gzipped tar, so
//! validators accept it; a range is one random buffer sliced per request, between prebuilt
//! framings), each worker records into its own histogram, and the
//! connection pool holds one idle connection per worker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::{RngCore, SeedableRng};
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};

use crate::error::{error_kind, ClientError};
use crate::multipart::Framing;
use crate::size::SizeSpec;

mod report;

pub use report::{Latency, LoadReport};

/// A fixed boundary: the payload is random bytes from a seeded generator, checked not to hold it.
const BOUNDARY: &str = "intake-load-0f8e7d6c5b4a39281706f5e4d3c2b1a0";

/// Longest latency the histogram holds, in microseconds (one hour); longer ones are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many requests have been answered or failed.
    Count(u64),
    /// No new request starts after this long; requests in flight finish.
    Duration(Duration),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Base URL of the ingress.
    pub url: url::Url,
    pub concurrency: usize,
    pub size: SizeSpec,
    pub payload: PayloadKind,
    pub stop: Stop,
    /// Services the uploads are spread over, round-robin per worker.
    pub services: Vec<String>,
    /// The `x-rh-identity` header value sent with every upload.
    pub identity: String,
    /// Timeout of each request, from connect to the end of the answer.
    pub request_timeout: Duration,
}

/// What a fixed-size file part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// A well-formed gzipped tar of about the size: validators accept it.
    Archive,
    /// Random bytes: validators reject them.
    Random,
}

/// The content type a load upload for `service` carries.
pub fn content_type(service: &str) -> String {
    format!("application/vnd.redhat.{service}.load+tgz")
}

/// A body to send: prebuilt whole, or framing around a slice of the shared payload.
enum Bodies {
    Whole(Vec<Bytes>),
    Framed {
        framings: Vec<Framing>,
        payload: Bytes,
    },
}

/// Live counts of a run, for a progress line while it goes (`intake load --progress`).
#[derive(Debug, Default)]
pub struct Progress {
    sent: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
}

impl Progress {
    /// Requests started, answered 2xx, and answered otherwise or failed, so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

struct Shared {
    progress: Arc<Progress>,
    client: reqwest::Client,
    upload_url: url::Url,
    identity: HeaderValue,
    form_type: HeaderValue,
    bodies: Bodies,
    size: SizeSpec,
    /// The file part's length for a fixed size (the archive may be a little under `size`), else
    /// the longest a drawn size can be.
    file_len: u64,
    stop: Stop,
    deadline: Instant,
    issued: AtomicU64,
}

impl Shared {
    /// Whether another request may start.
    fn claim(&self) -> bool {
        match self.stop {
            Stop::Count(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            Stop::Duration(_) => Instant::now() < self.deadline,
        }
    }
}

impl Shared {
    /// Waits `wait`, but not past the end of a timed run.
    async fn pause(&self, wait: Duration) {
        let wait = match self.stop {
            Stop::Duration(_) => wait.min(self.deadline.saturating_duration_since(Instant::now())),
            Stop::Count(_) => wait,
        };
        tokio::time::sleep(wait).await;
    }
}

/// One worker's tally, merged into the report at the end.
struct Tally {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    accepted: u64,
    accepted_bytes: u64,
}

/// Runs the plan to its end and sums it up.
pub async fn run(plan: &LoadPlan) -> Result<LoadReport, ClientError> {
    run_with_progress(plan, Arc::default()).await
}

/// [`run`], counting into `progress` as it goes.
pub async fn run_with_progress(
    plan: &LoadPlan,
    progress: Arc<Progress>,
) -> Result<LoadReport, ClientError> {
    if plan.concurrency == 0 {
        return Err(ClientError::BadArgument(
            "concurrency must be at least 1".into(),
        ));
    }
    if plan.services.is_empty() {
        return Err(ClientError::BadArgument(
            "at least one service is needed".into(),
        ));
    }
    let max = usize::try_from(plan.size.max())
        .map_err(|_| ClientError::BadArgument("payload size too large".into()))?;
    let payload = match (plan.size, plan.payload) {
        (SizeSpec::Fixed(_), PayloadKind::Archive) => archive_payload(max),
        _ => random_payload(max),
    };
    let file_len = payload.len() as u64;
    let framings: Vec<Framing> = plan
        .services
        .iter()
        .map(|s| Framing::new(BOUNDARY, &content_type(s), "load.tar.gz", None))
        .collect();
    let bodies = match plan.size {
        SizeSpec::Fixed(_) => Bodies::Whole(framings.iter().map(|f| f.whole(&payload)).collect()),
        SizeSpec::Uniform { .. } => Bodies::Framed { framings, payload },
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .tcp_nodelay(true)
        .connect_timeout(plan.request_timeout.min(Duration::from_secs(10)))
        .timeout(plan.request_timeout)
        .http1_only()
        .build()
        .map_err(ClientError::HttpClient)?;
    let identity = HeaderValue::from_str(&plan.identity)
        .map_err(|_| ClientError::BadArgument("identity is not a valid header value".into()))?;
    let form_type = HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}"))
        .map_err(|_| ClientError::BadArgument("bad boundary".into()))?;
    let started = Instant::now();
    let deadline = match plan.stop {
        Stop::Duration(d) => started + d,
        Stop::Count(_) => started,
    };
    let shared = Arc::new(Shared {
        progress,
        client,
        upload_url: crate::route(&plan.url, crate::UPLOAD_PATH)?,
        identity,
        form_type,
        bodies,
        size: plan.size,
        file_len,
        stop: plan.stop,
        deadline,
        issued: AtomicU64::new(0),
    });
    let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .map_err(|e| ClientError::BadArgument(format!("latency histogram: {e}")))?;
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..plan.concurrency {
        let shared = Arc::clone(&shared);
        workers.spawn(worker(shared, index, histogram.clone()));
    }
    let mut tallies = Vec::with_capacity(plan.concurrency);
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(t) => tallies.push(t),
            Err(e) => return Err(ClientError::BadAnswer(format!("a load worker failed: {e}"))),
        }
    }
    Ok(LoadReport::sum(plan, started.elapsed(), tallies))
}

async fn worker(shared: Arc<Shared>, index: usize, latency: Histogram<u64>) -> Tally {
    let mut tally = Tally {
        latency,
        statuses: BTreeMap::new(),
        errors: BTreeMap::new(),
        accepted: 0,
        accepted_bytes: 0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(index as u64);
    let services = match &shared.bodies {
        Bodies::Whole(b) => b.len(),
        Bodies::Framed { framings, .. } => framings.len(),
    };
    let mut turn = index;
    while shared.claim() {
        let which = turn % services;
        turn += 1;
        let size = shared.size.draw(&mut rng);
        let request = shared
            .client
            .post(shared.upload_url.clone())
            .header(CONTENT_TYPE, shared.form_type.clone())
            .header(intake_core::identity::HEADER, shared.identity.clone());
        let request = match &shared.bodies {
            Bodies::Whole(bodies) => request.body(bodies[which].clone()),
            Bodies::Framed { framings, payload } => {
                let f = &framings[which];
                // `size` never exceeds the payload, which was made `size.max()` long.
                let file = payload.slice(..(size as usize).min(payload.len()));
                let len = f.body_len(file.len() as u64);
                let chunks = [f.head.clone(), file, f.tail.clone()];
                let stream =
                    futures::stream::iter(chunks.map(Ok::<Bytes, std::convert::Infallible>));
                request
                    .header(CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(stream))
            }
        };
        let sent = Instant::now();
        shared.progress.sent.fetch_add(1, Ordering::Relaxed);
        let failed = || shared.progress.failed.fetch_add(1, Ordering::Relaxed);
        let mut pause = None;
        match request.send().await {
            Ok(answer) => {
                let status = answer.status();
                // Back-pressure (503 or 429 with `Retry-After`): this worker waits as asked
                // before its next request, so the run offers what the server can take.
                if matches!(status.as_u16(), 429 | 503) {
                    pause = crate::retry::retry_after(answer.headers());
                }
                // Read the (small) answer to the end so the connection goes back to the pool.
                match crate::answer::capped_body(answer).await {
                    Ok(_) => {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        tally
                            .latency
                            .saturating_record(micros.clamp(1, MAX_LATENCY_US));
                        *tally.statuses.entry(status.as_u16()).or_default() += 1;
                        if status.is_success() {
                            tally.accepted += 1;
                            tally.accepted_bytes += size.min(shared.file_len);
                            shared.progress.accepted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed();
                        }
                    }
                    Err(e) => {
                        failed();
                        *tally.errors.entry(error_kind(&e)).or_default() += 1;
                    }
                }
            }
            Err(e) => {
                failed();
                *tally.errors.entry(error_kind(&e)).or_default() += 1;
            }
        }
        if let Some(pause) = pause {
            shared.pause(pause).await;
        }
    }
    tally
}

/// `len` bytes from a seeded generator (incompressible, like real archives), never holding the
/// fixed boundary.
fn random_payload(len: usize) -> Bytes {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x001a_7a1e);
    let mut bytes = vec![0u8; len];
    loop {
        rng.fill_bytes(&mut bytes);
        if !holds_boundary(&bytes) {
            return Bytes::from(bytes);
        }
    }
}

fn holds_boundary(bytes: &[u8]) -> bool {
    bytes
        .windows(BOUNDARY.len())
        .any(|w| w == BOUNDARY.as_bytes())
}

/// A well-formed gzipped tar of at most `len` bytes (within a few hundred of it): one file of
/// random bytes, stored uncompressed, so that validators accept it and a load run measures the
/// whole round-trip. Sizes too small for an archive get random bytes.
fn archive_payload(len: usize) -> Bytes {
    // tar: a header block, the content padded to 512, two end blocks; gzip stored blocks: 18 bytes
    // of header and trailer plus 5 per block of up to 64 KiB.
    let overhead = 3 * 512 + 18 + 5 * len.div_ceil(65_535) + 512;
    let Some(content) = len.checked_sub(overhead).map(|n| n / 512 * 512) else {
        return random_payload(len);
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x001a_7a1e);
    let mut data = vec![0u8; content];
    loop {
        rng.fill_bytes(&mut data);
        let mut tar = tar::Builder::new(Vec::with_capacity(content + 2048));
        let mut header = tar::Header::new_gnu();
        header.set_size(content as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        let built = tar
            .append_data(&mut header, "load/payload.bin", data.as_slice())
            .and_then(|()| tar.into_inner());
        let gz = built.and_then(|tar| {
            use std::io::Write;
            let mut gz =
                flate2::write::GzEncoder::new(Vec::with_capacity(len), flate2::Compression::none());
            gz.write_all(&tar)?;
            gz.finish()
        });
        match gz {
            Ok(bytes) if !holds_boundary(&bytes) => return Bytes::from(bytes),
            Ok(_) => continue,
            Err(_) => return random_payload(len),
        }
    }
}

#[cfg(test)]
mod tests;
