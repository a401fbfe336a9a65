//! The consumer runtime every consuming part runs on (ingress's validation responses, the
//! validator, the pipeline, the tracker): it owns the consumer and everything between a delivery
//! and its commit, and the part implements only a [`Handler`] (one message at a time) or a
//! [`BatchHandler`] (a batch at a time).
//!
//! ```text
//! consumer.next ─▶ in flight (≤ in_flight) ─▶ handler tasks (≤ per_partition each, one per key)
//!      ▲ retry policy                          │ span: consumer, topic, partition, offset, request_id
//!      └──── commit: per partition, the done prefix, once for all that ended within commit_delay
//!                    refused: owed and retried │ not owned: never retried; the partition starts over
//! ```
//!
//! * **At-least-once**: an offset is committed only once it and every earlier offset of its
//!   partition are handled. A message the handler gives up ([`Handled::Abandoned`], at shutdown) is
//!   not committed, nor anything after it: the group delivers them again. A finished message
//!   waits up to `commit_delay` for its commit, which the messages finishing meanwhile share (a
//!   crash delivers that much again); a full in-flight window and shutdown commit at once.
//! * **Rebalances**: a commit refused as not owned (the partition was reassigned since delivery)
//!   is never retried; the partition's bookkeeping starts over with what was delivered and not
//!   started, and with the copies the bus delivered again meanwhile, so a partition given back to
//!   this member is never left waiting for a delivery that already happened.
//! * **Concurrency**: up to `in_flight` messages delivered and not committed (fetching pauses
//!   beyond), up to `per_partition` handled at once in one partition. This is I/O concurrency:
//!   a handler whose work is CPU-bound holds a CPU permit only around that work, so that waiting
//!   on a broker or a download never idles the cores.
//! * **Order**: messages for which [`Handler::key`] gives the same key are handled one after the
//!   other in partition order (and what comes after such a message in the partition waits too).
//! * **Retries**: fetch errors and refused commits follow [`crate::retry`]; every pause ends when
//!   the cancel signal fires.
//! * **Shutdown**: when `cancel` fires no message is started; running ones get `grace`, then the
//!   handlers' token fires; the runtime waits for every task it spawned, commits what finished and
//!   returns.
//! * **Spans**: each handler runs in a `message` span (consumer, topic, partition, offset and
//!   the `request_id` header); a handler that learns the request id from the body records it.
//! * **Lag**: every [`crate::lag::READ_EVERY`], handed to the settings' gauge.

mod batches;
mod committer;
mod inflight;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use batches::{run_batches, BatchHandler, BatchSettings};
use committer::{Committed, Committer};
use inflight::{InFlight, PartitionId, Start, Ticket};

use crate::retry::Backoff;
use crate::{BusError, Consumer, ReceivedMessage};

/// How a handler ended with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Fully processed (or dead-lettered): it may be committed.
    Done,
    /// Left unfinished because the handlers' token fired: it is not committed, nor anything after
    /// it in its partition, so the group delivers them again.
    Abandoned,
}

/// What a consuming part does with one message.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Messages of one partition with the same key are handled one at a time, in partition order.
    /// `None` (the default): no constraint beyond the partition limit.
    fn key(&self, _message: &ReceivedMessage) -> Option<String> {
        None
    }

    /// Handles `message`. `cancel` fires when the runtime stops waiting for it (shutdown after the
    /// grace period): a handler then ends its waits and returns [`Handled::Abandoned`] for work it
    /// did not finish.
    async fn handle(&self, message: ReceivedMessage, cancel: CancellationToken) -> Handled;
}

/// Sets a lag gauge: topic, partition (as a label), messages not yet committed.
pub type LagGauge = Arc<dyn Fn(&str, &str, i64) + Send + Sync>;

/// How the runtime runs a [`Handler`].
#[derive(Clone)]
pub struct Settings {
    /// The consuming part, in logs and spans (`validator`, `pipeline`, ...).
    pub name: &'static str,
    /// Messages delivered and not yet committed, over all partitions; fetching pauses beyond.
    pub in_flight: usize,
    /// Messages handled at once within one partition.
    pub per_partition: usize,
    /// After `cancel`: how long running handlers may go on before their token fires.
    pub grace: Duration,
    /// Where the consumer's lag goes.
    pub lag: Option<LagGauge>,
    /// How long a finished message may wait for its commit, so that the messages that finish
    /// meanwhile share it ([`DEFAULT_COMMIT_DELAY`]; zero commits each time something finishes).
    /// A full in-flight window commits at once, and so does shutdown.
    pub commit_delay: Duration,
}

/// Default [`Settings::commit_delay`]: short enough that a crash delivers again at most a few
/// milliseconds of work (handlers are idempotent, messages.md), long enough that one commit covers
/// the messages a part finishes one after the other at low load, where each would otherwise be a
/// write of its own (on the embedded bus a transaction and an fsync).
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_millis(20);

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("in_flight", &self.in_flight)
            .field("per_partition", &self.per_partition)
            .field("grace", &self.grace)
            .field("lag", &self.lag.is_some())
            .field("commit_delay", &self.commit_delay)
            .finish()
    }
}

impl Settings {
    /// `in_flight` messages at once, all of them in one partition if it comes to that, no grace,
    /// no lag gauge, the default commit delay.
    pub fn new(name: &'static str, in_flight: usize) -> Self {
        Self {
            name,
            in_flight: in_flight.max(1),
            per_partition: in_flight.max(1),
            grace: Duration::ZERO,
            lag: None,
            commit_delay: DEFAULT_COMMIT_DELAY,
        }
    }
}

/// Why the runtime stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bus failed in a way retrying cannot fix (configuration, a closed consumer).
    #[error("{consumer}: reading messages failed")]
    Bus {
        consumer: &'static str,
        #[source]
        source: BusError,
    },
    /// A handler panicked: a defect. The runtime stopped taking messages, let the others finish
    /// and committed what finished before it; the message is delivered again after a restart.
    #[error("{consumer}: the handler of {topic}/{partition}@{offset} panicked: {panic}")]
    Panicked {
        consumer: &'static str,
        topic: String,
        partition: i32,
        offset: i64,
        panic: String,
    },
}

/// What a handler task hands back.
struct Ended {
    ticket: Ticket,
    message: ReceivedMessage,
    handled: Handled,
}

/// Runs `handler` over `consumer`'s messages until `cancel` fires (then drains as the module says
/// and returns `Ok`) or an error retrying cannot fix.
pub async fn run(
    consumer: Box<dyn Consumer>,
    handler: Arc<dyn Handler>,
    settings: Settings,
    cancel: CancellationToken,
) -> Result<(), RuntimeError> {
    let mut runtime = Runtime {
        consumer,
        handler,
        flight: InFlight::default(),
        committer: Committer::default(),
        due: Vec::new(),
        commit_at: None,
        tasks: JoinSet::new(),
        running: std::collections::HashMap::new(),
        work: CancellationToken::new(),
        stopping: false,
        settings,
    };
    let outcome = runtime.consume(&cancel).await;
    runtime.drain().await;
    outcome
}

struct Runtime {
    consumer: Box<dyn Consumer>,
    handler: Arc<dyn Handler>,
    settings: Settings,
    flight: InFlight,
    committer: Committer,
    /// Partitions with finished messages waiting for their commit.
    due: Vec<PartitionId>,
    /// When `due` is committed.
    commit_at: Option<tokio::time::Instant>,
    tasks: JoinSet<Ended>,
    /// Each running task's ticket, to name the message of a task that panicked.
    running: std::collections::HashMap<tokio::task::Id, Ticket>,
    /// The handlers' token.
    work: CancellationToken,
    /// Shutdown began: nothing new starts.
    stopping: bool,
}

impl Runtime {
    async fn consume(&mut self, cancel: &CancellationToken) -> Result<(), RuntimeError> {
        let name = self.settings.name;
        let mut fetch_backoff = Backoff::default();
        let mut lag_every = tokio::time::interval(crate::lag::READ_EVERY);
        lag_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut room = self.flight.len() < self.settings.in_flight;
            if !room && !self.due.is_empty() {
                // Finished messages hold the window: their commit makes room.
                self.commit_due().await;
                room = self.flight.len() < self.settings.in_flight;
            }
            let retry_at = self.committer.retry_at();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(self.commit_at.unwrap_or_else(tokio::time::Instant::now)), if self.commit_at.is_some() => {
                    self.commit_due().await;
                }
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    let mut ended = vec![joined];
                    // Whatever else ended meanwhile shares the commit.
                    while let Some(more) = self.tasks.try_join_next_with_id() {
                        ended.push(more);
                    }
                    self.settle(ended).await?;
                }
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {
                    let revoked = self.committer.retry(self.consumer.as_mut(), name).await;
                    self.forget(revoked);
                }
                _ = lag_every.tick(), if self.settings.lag.is_some() => {
                    if let Some(gauge) = &self.settings.lag {
                        crate::lag::read(self.consumer.as_mut(), |t, p, l| gauge(t, p, l)).await;
                    }
                }
                next = self.consumer.next(), if room => match next {
                    Ok(message) => {
                        fetch_backoff.reset();
                        let key = self.handler.key(&message);
                        let id = self.flight.deliver(message, key);
                        self.start(&id);
                    }
                    Err(BusError::Closed) => return Ok(()),
                    Err(e) if e.is_transient() => {
                        let delay = fetch_backoff.next_delay();
                        tracing::warn!(consumer = name, error = %e, retry_in = ?delay, "reading messages failed; retrying");
                        if !crate::retry::pause(delay, cancel).await {
                            return Ok(());
                        }
                    }
                    Err(source) => return Err(RuntimeError::Bus { consumer: name, source }),
                },
            }
        }
    }

    /// Starts what `id` allows now.
    fn start(&mut self, id: &PartitionId) {
        for Start { message, ticket } in self.flight.startable(id, self.settings.per_partition) {
            let span = tracing::info_span!(
                "message",
                consumer = self.settings.name,
                topic = %message.topic,
                partition = message.partition,
                offset = message.offset,
                request_id = tracing::field::Empty,
            );
            // The `request_id` header every intake topic carries (messages.md); the key is the
            // request id only when no `queue_key` replaced it, so it is not used.
            if let Some(id) = message.header_str("request_id") {
                span.record("request_id", id);
            }
            let handler = self.handler.clone();
            let work = self.work.clone();
            let marker = ReceivedMessage {
                value: Vec::new(),
                ..message.clone()
            };
            let task_ticket = ticket.clone();
            let handle = self.tasks.spawn(
                async move {
                    let handled = handler.handle(message, work).await;
                    Ended {
                        ticket: task_ticket,
                        message: marker,
                        handled,
                    }
                }
                .instrument(span),
            );
            self.running.insert(handle.id(), ticket);
        }
    }

    /// Books ended tasks, starts what they make room for and commits each touched partition once.
    async fn settle(
        &mut self,
        ended: Vec<Result<(tokio::task::Id, Ended), tokio::task::JoinError>>,
    ) -> Result<(), RuntimeError> {
        let mut touched: Vec<PartitionId> = Vec::new();
        let mut panicked = None;
        for joined in ended {
            match joined {
                Ok((id, ended)) => {
                    self.running.remove(&id);
                    let done = ended.handled == Handled::Done;
                    if self.flight.end(&ended.ticket, ended.message, done)
                        && !touched.contains(&ended.ticket.partition)
                    {
                        touched.push(ended.ticket.partition);
                    }
                }
                Err(e) => {
                    let ticket = self.running.remove(&e.id());
                    let panic = if e.is_panic() {
                        panic_text(e.into_panic())
                    } else {
                        "cancelled".to_owned()
                    };
                    tracing::error!(consumer = self.settings.name, ?ticket, %panic, "a handler panicked; stopping");
                    if let Some(t) = ticket {
                        panicked.get_or_insert((t, panic));
                    }
                }
            }
        }
        for id in &touched {
            self.start(id);
        }
        if self.settings.commit_delay.is_zero() || self.stopping {
            self.commit(&touched).await;
        } else if !touched.is_empty() {
            for id in touched {
                if !self.due.contains(&id) {
                    self.due.push(id);
                }
            }
            self.commit_at
                .get_or_insert_with(|| tokio::time::Instant::now() + self.settings.commit_delay);
        }
        match panicked {
            Some((ticket, panic)) => Err(RuntimeError::Panicked {
                consumer: self.settings.name,
                topic: ticket.partition.0,
                partition: ticket.partition.1,
                offset: ticket.offset,
                panic,
            }),
            None => Ok(()),
        }
    }

    /// Commits every partition waiting for its commit.
    async fn commit_due(&mut self) {
        self.commit_at = None;
        let due = std::mem::take(&mut self.due);
        self.commit(&due).await;
    }

    /// Commits the done prefix of each of `partitions`.
    async fn commit(&mut self, partitions: &[PartitionId]) {
        let mut revoked = Vec::new();
        for id in partitions {
            if let Some(message) = self.flight.committable(id) {
                let name = self.settings.name;
                if self
                    .committer
                    .commit(self.consumer.as_mut(), name, message)
                    .await
                    == Committed::Revoked
                {
                    revoked.push(id.clone());
                }
            }
        }
        self.forget(revoked);
    }

    fn forget(&mut self, partitions: Vec<PartitionId>) {
        for id in partitions {
            let again = self.flight.forget(&id);
            tracing::info!(consumer = self.settings.name, topic = %id.0, partition = id.1, again,
                "a commit was refused as not owned: the partition's bookkeeping starts over with what was delivered and not started");
            if !self.stopping {
                self.start(&id);
            }
        }
    }

    /// Shutdown: nothing new starts; running handlers get the grace period, then their token; every
    /// task is awaited; what finished is committed, owed commits get one last try.
    async fn drain(&mut self) {
        let name = self.settings.name;
        self.stopping = true;
        self.commit_due().await;
        let dropped = self.flight.drop_waiting();
        tracing::info!(
            consumer = name,
            running = self.flight.running(),
            dropped,
            "stopping; finishing running messages"
        );
        if self.settings.grace.is_zero() {
            self.work.cancel();
        }
        let deadline = tokio::time::Instant::now() + self.settings.grace;
        while !self.tasks.is_empty() {
            let joined = tokio::select! {
                joined = self.tasks.join_next_with_id() => joined,
                _ = tokio::time::sleep_until(deadline), if !self.work.is_cancelled() => {
                    tracing::warn!(consumer = name, running = self.tasks.len(), "shutdown grace passed; cancelling running messages");
                    self.work.cancel();
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            // A panic now is logged by settle; the runtime is stopping anyway.
            let _ = self.settle(vec![joined]).await;
        }
        self.work.cancel();
        let revoked = self.committer.retry(self.consumer.as_mut(), name).await;
        self.forget(revoked);
        tracing::info!(consumer = name, "stopped");
    }
}

/// A panic's message.
fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
