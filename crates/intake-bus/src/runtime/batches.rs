//! The batch form of the runtime, for a part that stores messages in bulk (the tracker): batches of
//! up to `size` messages, closed when full or `wait` after their first message, handled one at a
//! time in delivery order while the next batch fills, each committed (one commit per partition)
//! once it is handled: after the next batch, when one is ready, has been handed to the handler, so
//! that the commit and the next batch's work overlap. Commits stay in order: a batch cannot finish
//! before the commit of the one before it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::committer::Committer;
use super::{panic_text, Handled, LagGauge, RuntimeError};
use crate::retry::Backoff;
use crate::{BusError, Consumer, ReceivedMessage};

/// What a consuming part does with a batch.
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles `batch` (delivery order). [`Handled::Done`] commits all of it; [`Handled::Abandoned`]
    /// (only once `cancel` fired) commits none of it and the runtime stops.
    async fn handle_batch(&self, batch: Vec<ReceivedMessage>, cancel: CancellationToken)
        -> Handled;
}

/// How the runtime runs a [`BatchHandler`].
#[derive(Clone)]
pub struct BatchSettings {
    /// The consuming part, in logs and spans.
    pub name: &'static str,
    /// The batch handed over when the handler is idle: a batch is handed over once it holds this
    /// many messages or `wait` after its first one.
    pub size: usize,
    /// Most messages in a batch: while a batch is being handled the next one keeps filling up to
    /// this, so a backlog is handled in batches of `max` and a trickle in batches of what came
    /// within `wait`. Below `size` it counts as `size`.
    pub max: usize,
    /// Longest wait for a batch to fill after its first message.
    pub wait: Duration,
    /// After `cancel`: how long the batch being handled may go on before the handler's token fires.
    pub grace: Duration,
    /// Where the consumer's lag goes.
    pub lag: Option<LagGauge>,
}

impl std::fmt::Debug for BatchSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSettings")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("max", &self.max)
            .field("wait", &self.wait)
            .field("grace", &self.grace)
            .finish()
    }
}

/// The last message of each partition of `batch`: what committing it means.
fn last_per_partition(batch: &[ReceivedMessage]) -> Vec<ReceivedMessage> {
    let mut last: HashMap<(&str, i32), &ReceivedMessage> = HashMap::new();
    for m in batch {
        let entry = last.entry((m.topic.as_str(), m.partition)).or_insert(m);
        if m.offset > entry.offset {
            *entry = m;
        }
    }
    last.into_values()
        .map(|m| ReceivedMessage {
            value: Vec::new(),
            ..m.clone()
        })
        .collect()
}

/// Runs `handler` over `consumer`'s messages in batches until `cancel` fires (the batch being
/// handled gets `grace`, then its token; what it finished is committed) or an error retrying
/// cannot fix.
pub async fn run_batches(
    mut consumer: Box<dyn Consumer>,
    handler: Arc<dyn BatchHandler>,
    settings: BatchSettings,
    cancel: CancellationToken,
) -> Result<(), RuntimeError> {
    let name = settings.name;
    let size = settings.size.max(1);
    let max = settings.max.max(size);
    let work = CancellationToken::new();
    let mut committer = Committer::default();
    let mut fetch_backoff = Backoff::default();
    let mut lag_every = tokio::time::interval(crate::lag::READ_EVERY);
    lag_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut filling: Vec<ReceivedMessage> = Vec::with_capacity(size);
    let mut closes_at: Option<Instant> = None;
    // At most one batch is handled at a time; the task is tracked here and awaited on shutdown.
    let mut handling: JoinSet<(Vec<ReceivedMessage>, Handled)> = JoinSet::new();
    let mut stopping_at: Option<Instant> = None;
    let mut outcome = Ok(());
    // The last message per partition of the batch handled last, committed once the next batch
    // (when one is ready) is on its way, so the next transaction does not wait for this commit.
    let mut to_commit: Vec<ReceivedMessage> = Vec::new();
    loop {
        let now = Instant::now();
        if handling.is_empty()
            && stopping_at.is_none()
            && !filling.is_empty()
            && (filling.len() >= size || closes_at.is_some_and(|at| at <= now))
        {
            let batch = std::mem::replace(&mut filling, Vec::with_capacity(size));
            closes_at = None;
            let span = tracing::info_span!(
                "batch",
                consumer = name,
                size = batch.len(),
                first_offset = batch[0].offset
            );
            let commits = last_per_partition(&batch);
            let (handler, token) = (handler.clone(), work.clone());
            handling.spawn(
                async move { (commits, handler.handle_batch(batch, token).await) }.instrument(span),
            );
        }
        for message in to_commit.drain(..) {
            // A revoked partition needs nothing more: its messages of the next batch are handled
            // anyway (at-least-once), and their commit is refused the same way.
            committer.commit(consumer.as_mut(), name, message).await;
        }
        if stopping_at.is_some() && handling.is_empty() {
            break;
        }
        let retry_at = committer.retry_at();
        tokio::select! {
            biased;
            _ = cancel.cancelled(), if stopping_at.is_none() => {
                stopping_at = Some(Instant::now() + settings.grace);
                if settings.grace.is_zero() {
                    work.cancel();
                }
            }
            _ = tokio::time::sleep_until(stopping_at.unwrap_or(now)), if stopping_at.is_some() && !work.is_cancelled() => {
                tracing::warn!(consumer = name, "shutdown grace passed; cancelling the batch being handled");
                work.cancel();
            }
            Some(joined) = handling.join_next(), if !handling.is_empty() => match joined {
                Ok((commits, Handled::Done)) => to_commit = commits,
                Ok((_, Handled::Abandoned)) => {
                    tracing::info!(consumer = name, "a batch was left unfinished; it is delivered again");
                    stopping_at.get_or_insert(now);
                    work.cancel();
                }
                Err(e) => {
                    let panic = if e.is_panic() { panic_text(e.into_panic()) } else { "cancelled".to_owned() };
                    tracing::error!(consumer = name, %panic, "the batch handler panicked; stopping");
                    outcome = Err(RuntimeError::Panicked { consumer: name, topic: String::new(), partition: -1, offset: -1, panic });
                    stopping_at.get_or_insert(now);
                    work.cancel();
                }
            },
            _ = tokio::time::sleep_until(retry_at.unwrap_or(now)), if retry_at.is_some() => {
                committer.retry(consumer.as_mut(), name).await;
            }
            _ = lag_every.tick(), if settings.lag.is_some() => {
                if let Some(gauge) = &settings.lag {
                    crate::lag::read(consumer.as_mut(), |t, p, l| gauge(t, p, l)).await;
                }
            }
            _ = tokio::time::sleep_until(closes_at.unwrap_or(now)), if closes_at.is_some() && handling.is_empty() => {}
            next = consumer.next(), if filling.len() < max && stopping_at.is_none() => match next {
                Ok(message) => {
                    fetch_backoff.reset();
                    if filling.is_empty() {
                        closes_at = Some(Instant::now() + settings.wait);
                    }
                    filling.push(message);
                }
                Err(BusError::Closed) => {
                    stopping_at.get_or_insert(now);
                }
                Err(e) if e.is_transient() => {
                    let delay = fetch_backoff.next_delay();
                    tracing::warn!(consumer = name, error = %e, retry_in = ?delay, "reading messages failed; retrying");
                    if !crate::retry::pause(delay, &cancel).await {
                        continue;
                    }
                }
                Err(source) => {
                    outcome = Err(RuntimeError::Bus { consumer: name, source });
                    stopping_at.get_or_insert(now);
                }
            },
        }
    }
    committer.retry(consumer.as_mut(), name).await;
    tracing::info!(consumer = name, unhandled = filling.len(), "stopped");
    outcome
}
