//! Ingestion: batches from `platform.payload-status`, checked, stored in one transaction (a
//! backlog's larger batch in up to `writers` at once, split by request id), bad ones dead-lettered
//! with their reason, offsets committed only after every database commit (at-least-once).
//! A database outage pauses consumption (nothing committed or dead-lettered), retried with
//! intake-bus's one policy (100 ms doubling to 5 s, jittered, until cancelled).

mod dlq;
pub mod maintenance;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use intake_bus::retry::Backoff;
use intake_bus::runtime::{self, BatchHandler, BatchSettings, Handled, RuntimeError};
use intake_bus::{Bus, BusError, Consumer, ReceivedMessage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::check::{check, DateWindow, Rejection};
use crate::metrics::Metrics;
use crate::model::{BatchOutcome, NewStatus};
use crate::store::{StatusStore, StoreError};

/// `TRACKER_BATCH_MAX`'s default: most statuses in one transaction while a backlog is there.
/// Measured (BENCHMARKS.md, tracker section): end to end from a backlog, batches of 5 000 store
/// 1.7 to 2.9 times as many statuses per second as batches of 500 on SQLite and PostgreSQL with
/// fsync on; past 5 000 nothing is gained reliably while each transaction, which a status arriving
/// meanwhile waits for, gets two to seven times longer (80 to 180 ms at 5 000).
pub const DEFAULT_BATCH_MAX: usize = 5_000;

/// What the ingest loop needs to know.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Dead-letter topic wire name.
    pub dlq_topic: String,
    /// `TRACKER_BATCH_SIZE`: the batch stored when the store keeps up (handed over once it holds
    /// this many or `batch_wait` after its first status).
    pub batch_size: usize,
    /// `TRACKER_BATCH_MAX`: most statuses in one batch. While a batch is stored the next keeps
    /// filling up to this, so a backlog is stored in batches of `batch_max`. Below `batch_size` it
    /// counts as `batch_size`.
    pub batch_max: usize,
    /// `TRACKER_WRITERS`: transactions a batch larger than `batch_size` is stored in at once, each
    /// on its own connection and holding the statuses of its own request ids (see
    /// [`Ingestor::process`]). 1 stores every batch in one transaction.
    pub writers: usize,
    pub batch_wait: Duration,
    pub retention: Duration,
    pub future_skew: Duration,
}

/// `TRACKER_WRITERS`' default on PostgreSQL: a backlog's batch goes in two transactions at once.
/// One writer keeps less than one of the server's cores busy (it waits for each statement's round
/// trip and each commit's WAL flush); two overlap those waits (BENCHMARKS.md, tracker section).
pub const DEFAULT_WRITERS_POSTGRES: usize = 2;
/// `TRACKER_WRITERS`' default on SQLite: one writer at a time is all SQLite allows, so more
/// transactions would only queue for its write lock.
pub const DEFAULT_WRITERS_SQLITE: usize = 1;

/// What one batch came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    pub stored: usize,
    pub duplicates: usize,
    /// `(offset, reason)` of each dead-lettered message.
    pub dead_letters: Vec<(i64, &'static str)>,
}

/// Why a batch could not be finished now (it is retried whole; the dedup key makes that safe).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(StoreError),
    #[error("dead-letter topic cannot be written: {0}")]
    DeadLetter(#[source] BusError),
}

/// Why the last attempt to store a batch failed, until one succeeds: a store that answers reads
/// (and pings) can still be unable to write (a full disk, a lock held elsewhere), and readiness must
/// say so. Clones share the state.
#[derive(Debug, Clone, Default)]
pub struct WriteHealth(Arc<Mutex<Option<String>>>);

impl WriteHealth {
    /// The cause of the current write failure, or `None` while writes succeed.
    pub fn failing(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, cause: Option<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = cause;
    }
}

/// Checks, stores and dead-letters batches.
#[derive(Clone)]
pub struct Ingestor {
    store: Arc<dyn StatusStore>,
    bus: Arc<dyn Bus>,
    metrics: Arc<Metrics>,
    settings: IngestSettings,
    health: WriteHealth,
}

impl Ingestor {
    pub fn new(
        store: Arc<dyn StatusStore>,
        bus: Arc<dyn Bus>,
        metrics: Arc<Metrics>,
        settings: IngestSettings,
    ) -> Self {
        Self {
            store,
            bus,
            metrics,
            settings,
            health: WriteHealth::default(),
        }
    }

    /// Whether batches can be stored right now (for readiness).
    pub fn write_health(&self) -> WriteHealth {
        self.health.clone()
    }

    fn window(&self) -> DateWindow {
        let now = Utc::now();
        let retention = chrono::Duration::from_std(self.settings.retention)
            .unwrap_or(chrono::Duration::days(7));
        let skew = chrono::Duration::from_std(self.settings.future_skew)
            .unwrap_or(chrono::Duration::days(1));
        DateWindow {
            earliest: now - retention,
            latest: now + skew,
        }
    }

    /// Processes one batch: checks every message, stores the good ones in one transaction, or in up
    /// to `writers` at once when they are more than `batch_size` (halving a part the database
    /// refuses until the culprit is isolated), dead-letters the bad ones. Commits nothing: the
    /// caller commits offsets after this returns `Ok`, which it does only once every part is stored.
    pub async fn process(&self, batch: &[ReceivedMessage]) -> Result<BatchReport, BatchError> {
        let window = self.window();
        let mut valid = Part::with_capacity(batch.len());
        let mut rejected: Vec<(usize, Rejection)> = Vec::new();
        for (i, message) in batch.iter().enumerate() {
            match check(&message.value, window) {
                Ok(status) => valid.push(i, status),
                Err(rejection) => rejected.push((i, rejection)),
            }
        }
        let started = Instant::now();
        let (stored, refused) = match self.store_in_parts(valid).await {
            Ok(stored) => {
                self.health.set(None);
                stored
            }
            Err(e) => {
                self.health.set(Some(e.to_string()));
                return Err(BatchError::Store(e));
            }
        };
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(batch.len() as f64);
        rejected.extend(refused);
        rejected.sort_by_key(|(i, _)| *i);
        let mut report = BatchReport::default();
        for (i, rejection) in &rejected {
            let message = &batch[*i];
            dlq::publish(
                self.bus.as_ref(),
                &self.settings.dlq_topic,
                message,
                rejection,
            )
            .await
            .map_err(BatchError::DeadLetter)?;
            warn!(
                offset = message.offset,
                partition = message.partition,
                reason = rejection.reason,
                detail = %rejection.detail,
                "status message dead-lettered"
            );
            report.dead_letters.push((message.offset, rejection.reason));
        }
        // Metrics only once the whole batch is through, so a retried batch is not counted twice.
        for (_, rejection) in &rejected {
            self.metrics
                .messages
                .with_label_values(&["dead_letter"])
                .inc();
            self.metrics
                .dead_letters
                .with_label_values(&[rejection.reason])
                .inc();
        }
        self.record(&stored, &mut report);
        Ok(report)
    }

    /// Counts what the batch's transactions stored, in the order the transactions ended. Within
    /// one, a (service, status) pair is counted once with its number of statuses rather than once
    /// a status (the pairs are few, the statuses thousands), in the order of its first status, so
    /// that `bounded_pair` sees the pairs in the same order as status by status.
    fn record(&self, stored: &[(Part, Vec<(usize, BatchOutcome)>)], report: &mut BatchReport) {
        let mut pairs: Vec<((&str, &str), u64)> = Vec::new();
        let mut pair_index: HashMap<(&str, &str), usize> = HashMap::new();
        for (part, outcomes) in stored {
            for (start, outcome) in outcomes {
                report.stored += outcome.stored.len();
                report.duplicates += outcome.duplicates;
                self.metrics
                    .messages
                    .with_label_values(&["stored"])
                    .inc_by(outcome.stored.len() as u64);
                self.metrics
                    .messages
                    .with_label_values(&["duplicate"])
                    .inc_by(outcome.duplicates as u64);
                pairs.clear();
                pair_index.clear();
                for &i in &outcome.stored {
                    let s = &part.statuses[start + i];
                    let pair = (s.service.as_str(), s.status.as_str());
                    let k = *pair_index.entry(pair).or_insert_with(|| {
                        pairs.push((pair, 0));
                        pairs.len() - 1
                    });
                    pairs[k].1 += 1;
                }
                for &((service, status), count) in &pairs {
                    let (service, status) = self.metrics.bounded_pair(service, status);
                    self.metrics
                        .service_status
                        .with_label_values(&[&service, &status])
                        .inc_by(count);
                }
                self.record_outcome(outcome);
            }
        }
    }

    /// The durations and identity conflicts of one transaction.
    fn record_outcome(&self, outcome: &BatchOutcome) {
        for (service, seconds) in &outcome.service_durations {
            let (service, _) = self.metrics.bounded_pair(service, "success");
            self.metrics
                .service_duration
                .with_label_values(&[&service])
                .observe(*seconds);
        }
        for conflict in &outcome.conflicts {
            warn!(
                request_id = %conflict.request_id,
                field = conflict.field,
                kept = %conflict.kept,
                ignored = %conflict.ignored,
                "a later status named another value for a tenant field; the first one is kept"
            );
            self.metrics
                .identity_conflicts
                .with_label_values(&[conflict.field])
                .inc();
        }
    }

    /// Stores `items` in up to `writers` transactions at once when they are more than `batch_size`:
    /// each part holds every status of its request ids (a hash of the request id picks the part), so
    /// no two concurrent transactions touch the same payload row, status or dedup key; a payload's
    /// last status, created_at and durations are decided inside one transaction, as with one part.
    /// Waits for every part before answering, also when one failed, so that a retry of the batch
    /// never runs beside a part of itself. A part that failed fails the call; the parts that were
    /// stored are found again as duplicates when the batch is retried (at-least-once, as a crash
    /// between the database commit and the offset commit).
    async fn store_in_parts(&self, items: Part) -> Result<Stored, StoreError> {
        let parts = self
            .settings
            .writers
            .max(1)
            .min(items.len().div_ceil(self.settings.batch_size.max(1)));
        if parts <= 1 {
            let (outcomes, refused) = store_isolating(self.store.as_ref(), &items).await?;
            return Ok((vec![(items, outcomes)], refused));
        }
        let mut groups: Vec<Part> = (0..parts)
            .map(|_| Part::with_capacity(items.len() / parts + 1))
            .collect();
        for (i, status) in items.indices.into_iter().zip(items.statuses) {
            groups[part_of(&status.request_id, parts)].push(i, status);
        }
        let mut tasks = JoinSet::new();
        for group in groups {
            let store = self.store.clone();
            tasks.spawn(async move {
                store_isolating(store.as_ref(), &group)
                    .await
                    .map(|(o, r)| (group, o, r))
            });
        }
        let (mut stored, mut refused, mut failure) = (Vec::new(), Vec::new(), None);
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok((group, o, r))) => {
                    stored.push((group, o));
                    refused.extend(r);
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                // A part that panicked is the batch handler's panic, as with one part.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {
                    failure.get_or_insert(StoreError::unavailable(
                        "a part of the batch was cancelled",
                    ));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok((stored, refused)),
        }
    }
}

/// Statuses to store, each with its message's index in the batch.
#[derive(Debug, Default)]
struct Part {
    indices: Vec<usize>,
    statuses: Vec<NewStatus>,
}

impl Part {
    fn with_capacity(n: usize) -> Self {
        Part {
            indices: Vec::with_capacity(n),
            statuses: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, index: usize, status: NewStatus) {
        self.indices.push(index);
        self.statuses.push(status);
    }

    fn len(&self) -> usize {
        self.statuses.len()
    }
}

/// What storing a batch came to: each part with the outcome of each of its transactions (with
/// where in the part the statuses of that transaction start), and the statuses the database
/// refused, by index in the batch.
type Stored = (
    Vec<(Part, Vec<(usize, BatchOutcome)>)>,
    Vec<(usize, Rejection)>,
);

/// Which of `parts` parts the statuses of `request_id` go to: the same for every status of a request
/// id, so all of its payload rows are written by one transaction.
fn part_of(request_id: &str, parts: usize) -> usize {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request_id.hash(&mut hasher);
    (hasher.finish() % parts as u64) as usize
}

/// Stores `items`; a sub-batch the database refuses is halved until single statuses are isolated,
/// which are returned as `store_rejected`. An outage fails the whole call. Returns the outcome of
/// each transaction with where its statuses start in `items`.
async fn store_isolating(
    store: &dyn StatusStore,
    items: &Part,
) -> Result<(Vec<(usize, BatchOutcome)>, Vec<(usize, Rejection)>), StoreError> {
    let mut outcomes = Vec::new();
    let mut refused = Vec::new();
    let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
    pending.push(0..items.len());
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        match store.store_batch(&items.statuses[range.clone()]).await {
            Ok(outcome) => outcomes.push((range.start, outcome)),
            Err(e @ StoreError::Rejected { .. }) if range.len() == 1 => {
                refused.push((
                    items.indices[range.start],
                    Rejection {
                        reason: "store_rejected",
                        detail: e.detail(),
                    },
                ));
            }
            Err(StoreError::Rejected { .. }) => {
                let middle = range.start + range.len() / 2;
                // Stack order: the first half is stored first, keeping message order.
                pending.push(middle..range.end);
                pending.push(range.start..middle);
            }
            Err(e) => return Err(e),
        }
    }
    Ok((outcomes, refused))
}

/// Stores one batch, retrying the whole batch (the dedup key makes that safe) with intake-bus's
/// retry policy while the database or the dead-letter topic is down; consumption waits meanwhile.
#[async_trait]
impl BatchHandler for Ingestor {
    async fn handle_batch(
        &self,
        batch: Vec<ReceivedMessage>,
        cancel: CancellationToken,
    ) -> Handled {
        let mut backoff = Backoff::default();
        loop {
            match self.process(&batch).await {
                Ok(report) => {
                    tracing::debug!(
                        stored = report.stored,
                        duplicates = report.duplicates,
                        dead_letters = report.dead_letters.len(),
                        "batch stored"
                    );
                    return Handled::Done;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in = ?delay, "batch not stored; consumption paused");
                    if !intake_bus::retry::pause(delay, &cancel).await {
                        return Handled::Abandoned;
                    }
                }
            }
        }
    }
}

/// The ingest loop on intake-bus's batch runtime until `cancel` fires: batches of `batch_size` or
/// what came within `batch_wait`, up to `batch_max` while a backlog is there (the next batch
/// gathers while one is stored), offsets committed once the database committed. Ends with an error only for a defect (a
/// panic) or a bus failure retrying cannot fix.
pub async fn run_loop(
    ingestor: Ingestor,
    consumer: Box<dyn Consumer>,
    cancel: CancellationToken,
) -> Result<(), RuntimeError> {
    let metrics = ingestor.metrics.clone();
    let settings = BatchSettings {
        name: "tracker",
        size: ingestor.settings.batch_size,
        max: ingestor.settings.batch_max,
        wait: ingestor.settings.batch_wait,
        grace: Duration::ZERO,
        lag: Some(Arc::new(move |_topic, partition, lag| {
            metrics
                .consumer_lag
                .with_label_values(&[partition])
                .set(lag);
        })),
    };
    runtime::run_batches(consumer, Arc::new(ingestor), settings, cancel).await
}
