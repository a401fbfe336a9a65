//! The consumer of `platform.upload.validation` (messages.md, "How ingress processes a response"):
//! responses in order within a partition and partitions concurrently, the offset committed only once
//! every step succeeded, bad responses to the dead-letter topic, a pause with nothing committed while
//! storage or the bus is down.

mod dlq;
mod process;

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use intake_bus::{BusError, Consumer, ReceivedMessage, StartFrom, Subscription};
use intake_core::messages::{ValidationError, ValidationResponse};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub use process::Verdict;

/// Longest wait between checks while storage or the bus is down.
const OUTAGE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Consumes validation responses until `cancel` fires. Returns an error only if subscribing fails.
pub async fn run(state: AppState, cancel: CancellationToken) -> Result<(), BusError> {
    let topic = state.bus_config.topic(&state.bus_config.topics.validation);
    let mut consumer = loop {
        let subscription = Subscription {
            group: state.config.consumer_group.clone(),
            topics: vec![topic.clone()],
            start: StartFrom::Earliest,
        };
        match state.bus.subscribe(subscription).await {
            Ok(c) => break c,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot subscribe to validation responses yet; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(%topic, group = %state.config.consumer_group, "consuming validation responses");
    // Responses are handled in order within a partition and partitions concurrently
    // (messages.md): one worker per partition, each handing its finished messages back in order,
    // and this loop, which owns the consumer, commits them as they come.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
    let mut workers: HashMap<(String, i32), mpsc::Sender<ReceivedMessage>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut lag_every = tokio::time::interval(intake_bus::lag::READ_EVERY);
    lag_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            biased;
            Some(done) = done_rx.recv() => {
                commit_finished(&mut *consumer, done, &mut done_rx, &cancel).await;
                continue;
            }
            _ = cancel.cancelled() => break,
            _ = lag_every.tick() => {
                intake_bus::lag::read(&mut *consumer, |topic, partition, lag| {
                    state.metrics.consumer_lag.with_label_values(&[topic, partition]).set(lag);
                })
                .await;
                continue;
            }
            m = consumer.next() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(BusError::Closed) => break,
            Err(e) => {
                tracing::warn!(error = %e, "reading validation responses failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        let partition = (message.topic.clone(), message.partition);
        let worker = workers.entry(partition).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
            tasks.spawn(partition_worker(
                state.clone(),
                rx,
                done_tx.clone(),
                cancel.clone(),
            ));
            tx
        });
        // A full queue holds this loop until the partition's worker takes one; meanwhile finished
        // messages wait in the (unbounded) done channel, so the two never wait on each other.
        if worker.send(message).await.is_err() {
            // The worker stopped (shutdown): the message stays uncommitted and comes again.
            continue;
        }
    }
    // Shutdown: workers finish the message in hand and stop; what they finished is committed.
    drop(workers);
    drop(done_tx);
    while let Some(done) = done_rx.recv().await {
        commit_finished(&mut *consumer, done, &mut done_rx, &cancel).await;
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Messages read ahead per partition, beyond the ones in flight.
const PARTITION_QUEUE: usize = 64;

/// A message its worker is done with (its statuses acknowledged).
struct Finished {
    message: ReceivedMessage,
}

/// Handles one partition's responses: up to `INGRESS_VALIDATION_CONCURRENCY` at once, for
/// different payloads (messages.md). A response for a payload that has one in flight waits for it,
/// so that responses for the same request id are applied in the order they arrived. Messages are
/// handed back to be committed in partition order, each only once it and everything before it are
/// fully processed (or dead-lettered), so a commit never passes an unfinished message.
///
/// Running several at once is what batches them: their storage syncs and bus writes land in the
/// same group commits of the storage driver and the bus, and the offsets finished meanwhile are
/// committed together ([`commit_finished`]).
///
/// A step in progress is not interrupted by shutdown, so a verdict is never left half done.
/// Shutdown does end a wait (outage, retry backoff, unwritable DLQ): that message and every later
/// one stay uncommitted and come again, which is safe because every step is idempotent.
async fn partition_worker(
    state: AppState,
    mut queue: mpsc::Receiver<ReceivedMessage>,
    done: mpsc::UnboundedSender<Finished>,
    cancel: CancellationToken,
) {
    let limit = state.config.validation_concurrency.max(1);
    let mut window = Window::default();
    let mut handing_back = true;
    loop {
        let room = window.running.len() < limit && !cancel.is_cancelled();
        tokio::select! {
            biased;
            Some(ended) = window.running.next(), if !window.running.is_empty() => {
                handing_back = window.ended(ended, handing_back, &done);
            }
            received = queue.recv(), if room && handing_back => {
                let Some(message) = received else { break };
                let parsed = ValidationResponse::parse(&message.value);
                let id = match &parsed {
                    Ok(response) => Some(response.request_id.to_string()),
                    Err(_) => None,
                };
                // The same payload's earlier response finishes first.
                while id.as_ref().is_some_and(|id| window.ids.contains_key(id)) {
                    let Some(ended) = window.running.next().await else { break };
                    handing_back = window.ended(ended, handing_back, &done);
                }
                if !handing_back {
                    break;
                }
                window.start(&state, message, id, parsed, &cancel);
            }
            else => break,
        }
    }
    // The responses in flight finish their steps; the ones done before the first that was
    // interrupted are still handed back.
    while let Some(ended) = window.running.next().await {
        handing_back = window.ended(ended, handing_back, &done);
    }
}

/// One response being applied: its message, its request id (when it parsed) and how it ended.
type Ended = (ReceivedMessage, Option<String>, process::Handled);

/// The responses of one partition in flight, in partition order.
#[derive(Default)]
struct Window {
    running: FuturesOrdered<BoxFuture<'static, Ended>>,
    /// Request ids in flight, with how many responses each.
    ids: HashMap<String, usize>,
}

impl Window {
    fn start(
        &mut self,
        state: &AppState,
        message: ReceivedMessage,
        id: Option<String>,
        parsed: Result<ValidationResponse, ValidationError>,
        cancel: &CancellationToken,
    ) {
        if let Some(id) = &id {
            *self.ids.entry(id.clone()).or_default() += 1;
        }
        let (state, cancel) = (state.clone(), cancel.clone());
        self.running.push_back(Box::pin(async move {
            let handled = process::handle(&state, &message, parsed, &cancel).await;
            (message, id, handled)
        }));
    }

    /// Books a response that ended; hands it back if `handing_back` (nothing before it in the
    /// partition was interrupted). Returns whether later ones may still be handed back.
    fn ended(
        &mut self,
        (message, id, handled): Ended,
        handing_back: bool,
        done: &mpsc::UnboundedSender<Finished>,
    ) -> bool {
        if let Some(id) = id {
            if let Some(n) = self.ids.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.ids.remove(&id);
                }
            }
        }
        match handled {
            process::Handled::Done if handing_back => done.send(Finished { message }).is_ok(),
            process::Handled::Done => false,
            process::Handled::Interrupted => {
                tracing::info!(
                    offset = message.offset,
                    "shutdown while a validation response waited; it will be delivered again"
                );
                false
            }
        }
    }
}

/// Commits `first` and the finished messages already waiting behind it, once per partition: a
/// commit covers everything before it in its partition, and workers hand messages back in
/// partition order, so the latest per partition is enough. While one commit waits for the bus
/// (a broker round trip on Kafka), the next ones pile up and are then taken together.
async fn commit_finished(
    consumer: &mut dyn Consumer,
    first: Finished,
    waiting: &mut mpsc::UnboundedReceiver<Finished>,
    cancel: &CancellationToken,
) {
    let mut latest: HashMap<(String, i32), ReceivedMessage> = HashMap::new();
    let mut take = |f: Finished| {
        latest.insert((f.message.topic.clone(), f.message.partition), f.message);
    };
    take(first);
    while let Ok(f) = waiting.try_recv() {
        take(f);
    }
    for message in latest.values() {
        commit(consumer, message, cancel).await;
    }
}

/// Commits, retrying a few times while the bus refuses. Giving up is safe: the message is delivered
/// again and its verdict is then a `repeat` (or it completes an interrupted move).
async fn commit(
    consumer: &mut dyn Consumer,
    message: &ReceivedMessage,
    cancel: &CancellationToken,
) {
    let mut wait = Duration::from_millis(200);
    for attempt in 1..=5 {
        match consumer.commit(message).await {
            Ok(()) => return,
            Err(e) if !e.is_transient() => {
                // A partition reassigned since delivery: its next owner receives the message again.
                tracing::info!(offset = message.offset, error = %e, "not committing");
                return;
            }
            Err(e) => {
                tracing::warn!(offset = message.offset, attempt, error = %e, "commit failed");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(OUTAGE_BACKOFF_MAX);
            }
        }
    }
    tracing::warn!(
        offset = message.offset,
        "giving up on this commit; the message will be redelivered"
    );
}

/// [`AppState::dependencies`], or `None` if `cancel` fires first, so that a dependency that
/// stopped answering holds neither the consumer nor a shutdown waiting for it.
pub(crate) async fn check_health(
    state: &AppState,
    cancel: &CancellationToken,
) -> Option<(Result<(), String>, Result<(), String>)> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        checked = state.dependencies() => Some(checked),
    }
}

/// Waits until storage and the bus both answer (as `/readyz` sees them): true then, false if
/// `cancel` fired first.
pub(crate) async fn wait_until_healthy(state: &AppState, cancel: &CancellationToken) -> bool {
    let mut wait = Duration::from_secs(1);
    loop {
        let Some((storage, bus)) = check_health(state, cancel).await else {
            return false;
        };
        if storage.is_ok() && bus.is_ok() {
            return true;
        }
        tracing::warn!(
            storage = ?storage.err(),
            bus = ?bus.err(),
            "storage or bus unavailable; validation processing paused"
        );
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(OUTAGE_BACKOFF_MAX);
    }
}
