//! Ingestion: batches from `platform.payload-status`, checked, stored in one transaction, bad ones
//! dead-lettered with their reason, offsets committed only after the database commit (at-least-once).
//! A database outage pauses consumption (nothing committed or dead-lettered) with backoff 1 s → 30 s.

mod dlq;
pub mod maintenance;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use intake_bus::{Bus, BusError, Consumer, ReceivedMessage};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

use crate::check::{check, DateWindow, Rejection};
use crate::metrics::Metrics;
use crate::model::{BatchOutcome, NewStatus};
use crate::store::{StatusStore, StoreError};

/// First and longest wait between retries while the database or the bus is down.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the ingest loop needs to know.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Dead-letter topic wire name.
    pub dlq_topic: String,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub retention: Duration,
    pub future_skew: Duration,
}

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
    #[error("database unavailable: {0}")]
    Store(String),
    #[error("dead-letter topic cannot be written: {0}")]
    DeadLetter(BusError),
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

    /// Processes one batch: checks every message, stores the good ones in one transaction (halving a
    /// batch the database refuses until the culprit is isolated), dead-letters the bad ones. Commits
    /// nothing: the caller commits offsets after this returns `Ok`.
    pub async fn process(&self, batch: &[ReceivedMessage]) -> Result<BatchReport, BatchError> {
        let window = self.window();
        let mut valid: Vec<(usize, NewStatus)> = Vec::with_capacity(batch.len());
        let mut rejected: Vec<(usize, Rejection)> = Vec::new();
        for (i, message) in batch.iter().enumerate() {
            match check(&message.value, window) {
                Ok(status) => valid.push((i, status)),
                Err(rejection) => rejected.push((i, rejection)),
            }
        }
        let started = Instant::now();
        let (outcomes, refused) = match self.store_isolating(&valid).await {
            Ok(stored) => {
                self.health.set(None);
                stored
            }
            Err(e) => {
                self.health.set(Some(e.to_string()));
                return Err(BatchError::Store(e.to_string()));
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
        for outcome in &outcomes {
            self.record(outcome, &mut report);
        }
        Ok(report)
    }

    fn record(&self, outcome: &BatchOutcome, report: &mut BatchReport) {
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
        for s in &outcome.stored {
            let (service, status) = self.metrics.bounded_pair(&s.service, &s.status);
            self.metrics
                .service_status
                .with_label_values(&[&service, &status])
                .inc();
        }
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

    /// Stores `items`; a sub-batch the database refuses is halved until single statuses are isolated,
    /// which are returned as `store_rejected`. An outage fails the whole call.
    async fn store_isolating(
        &self,
        items: &[(usize, NewStatus)],
    ) -> Result<(Vec<BatchOutcome>, Vec<(usize, Rejection)>), StoreError> {
        let mut outcomes = Vec::new();
        let mut refused = Vec::new();
        let mut pending: Vec<&[(usize, NewStatus)]> = vec![items];
        while let Some(part) = pending.pop() {
            if part.is_empty() {
                continue;
            }
            let statuses: Vec<NewStatus> = part.iter().map(|(_, s)| s.clone()).collect();
            match self.store.store_batch(&statuses).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(StoreError::Rejected(detail)) if part.len() == 1 => {
                    refused.push((
                        part[0].0,
                        Rejection {
                            reason: "store_rejected",
                            detail,
                        },
                    ));
                }
                Err(StoreError::Rejected(_)) => {
                    let (first, second) = part.split_at(part.len() / 2);
                    // Stack order: the first half is stored first, keeping message order.
                    pending.push(second);
                    pending.push(first);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((outcomes, refused))
    }
}

/// Waits for the first message, then fills the batch until it is full or `wait` has passed.
/// Returns an empty batch when `cancel` fires.
pub async fn next_batch(
    consumer: &mut dyn Consumer,
    size: usize,
    wait: Duration,
    cancel: &CancellationToken,
) -> Result<Vec<ReceivedMessage>, BusError> {
    let first = tokio::select! {
        _ = cancel.cancelled() => return Ok(Vec::new()),
        m = consumer.next() => m?,
    };
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < size {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = cancel.cancelled() => break,
            m = consumer.next() => match m {
                Ok(m) => batch.push(m),
                Err(e) => {
                    warn!(error = %e, "bus read failed while filling a batch");
                    break;
                }
            },
        }
    }
    Ok(batch)
}

/// Commits the last offset of each partition in `batch`.
pub async fn commit(
    consumer: &mut dyn Consumer,
    batch: &[ReceivedMessage],
) -> Result<(), BusError> {
    let mut last: BTreeMap<(&str, i32), &ReceivedMessage> = BTreeMap::new();
    for m in batch {
        let entry = last.entry((m.topic.as_str(), m.partition)).or_insert(m);
        if m.offset > entry.offset {
            *entry = m;
        }
    }
    for m in last.values() {
        match consumer.commit(m).await {
            // Reassigned since delivery: retrying cannot succeed, and the new owner receives the
            // batch again (deduplicated).
            Err(BusError::NotOwned(why)) => {
                tracing::info!(topic = %m.topic, partition = m.partition, %why, "not committing")
            }
            other => other?,
        }
    }
    Ok(())
}

async fn backoff(delay: &mut Duration, cancel: &CancellationToken) -> bool {
    let wait = *delay;
    *delay = (*delay * 2).min(BACKOFF_MAX);
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// The ingest loop: until `cancel` fires, read a batch, process it (retrying with backoff while the
/// database or the dead-letter topic is down), then commit its offsets (retrying too).
pub async fn run_loop(
    ingestor: Ingestor,
    mut consumer: Box<dyn Consumer>,
    cancel: CancellationToken,
) {
    let settings = ingestor.settings.clone();
    let mut delay = BACKOFF_FIRST;
    let mut lag_read: Option<std::time::Instant> = None;
    ingestor.record_lag(consumer.as_mut()).await;
    loop {
        let batch = match next_batch(
            consumer.as_mut(),
            settings.batch_size,
            settings.batch_wait,
            &cancel,
        )
        .await
        {
            Ok(batch) if batch.is_empty() => return,
            Ok(batch) => batch,
            Err(e) => {
                warn!(error = %e, "bus read failed; retrying");
                if !backoff(&mut delay, &cancel).await {
                    return;
                }
                continue;
            }
        };
        delay = BACKOFF_FIRST;
        let span = info_span!("batch", size = batch.len(), first_offset = batch[0].offset);
        loop {
            match ingestor.process(&batch).instrument(span.clone()).await {
                Ok(report) => {
                    tracing::debug!(parent: &span, stored = report.stored, duplicates = report.duplicates, dead_letters = report.dead_letters.len(), "batch stored");
                    break;
                }
                Err(e) => {
                    warn!(parent: &span, error = %e, retry_in = ?delay, "batch not stored; consumption paused");
                    if !backoff(&mut delay, &cancel).await {
                        return;
                    }
                }
            }
        }
        delay = BACKOFF_FIRST;
        while let Err(e) = commit(consumer.as_mut(), &batch).await {
            warn!(error = %e, "offset commit failed; retrying (the batch may be delivered again, and is deduplicated)");
            if !backoff(&mut delay, &cancel).await {
                return;
            }
        }
        delay = BACKOFF_FIRST;
        if lag_read.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            lag_read = Some(std::time::Instant::now());
            ingestor.record_lag(consumer.as_mut()).await;
        }
    }
}

/// How often the lag gauge is refreshed while batches flow (each refresh asks the bus).
const LAG_EVERY: Duration = Duration::from_secs(5);

impl Ingestor {
    /// Sets `payload_tracker_consumer_lag` for every partition the consumer holds; a failed read
    /// leaves the gauge as it was.
    async fn record_lag(&self, consumer: &mut dyn Consumer) {
        match consumer.lag().await {
            Ok(partitions) => {
                for p in partitions {
                    let lag = i64::try_from(p.lag()).unwrap_or(i64::MAX);
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&p.partition.to_string()])
                        .set(lag);
                }
            }
            Err(e) => warn!(error = %e, "cannot read the consumer lag"),
        }
    }
}
