//! The consumer of `platform.upload.validation` (messages.md, "How ingress processes a response"):
//! responses in order within a partition and partitions concurrently, the offset committed only once
//! every step succeeded, bad responses to the dead-letter topic, a pause with nothing committed while
//! storage or the bus is down.

mod dlq;
mod process;

use std::collections::HashMap;
use std::time::Duration;

use intake_bus::{BusError, Consumer, ReceivedMessage, StartFrom, Subscription};
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
    loop {
        let message = tokio::select! {
            biased;
            Some(done) = done_rx.recv() => {
                commit_finished(&mut *consumer, done, &mut done_rx, &cancel).await;
                continue;
            }
            _ = cancel.cancelled() => break,
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

/// Messages read ahead per partition.
const PARTITION_QUEUE: usize = 8;

/// A message its worker is done with (its statuses acknowledged).
struct Finished {
    message: ReceivedMessage,
}

/// Handles one partition's responses in order. A message is fully processed (or dead-lettered)
/// before it is handed back to be committed; a step in progress is not interrupted by shutdown, so
/// a verdict is never left half done. Shutdown does end a wait (outage, retry backoff, unwritable
/// DLQ): the message stays uncommitted and is delivered again, which is safe because every step is
/// idempotent.
async fn partition_worker(
    state: AppState,
    mut queue: mpsc::Receiver<ReceivedMessage>,
    done: mpsc::UnboundedSender<Finished>,
    cancel: CancellationToken,
) {
    while let Some(message) = queue.recv().await {
        if cancel.is_cancelled() {
            return;
        }
        match process::handle(&state, &message, &cancel).await {
            process::Handled::Done => {
                if done.send(Finished { message }).is_err() {
                    return;
                }
            }
            process::Handled::Interrupted => {
                tracing::info!(
                    offset = message.offset,
                    "shutdown while a validation response waited; it will be delivered again"
                );
                return;
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
