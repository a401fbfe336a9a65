//! The consumer of `platform.upload.validation` (messages.md, "How ingress processes a response"):
//! responses in order, the offset committed only once every step succeeded, bad responses to the
//! dead-letter topic, a pause with nothing committed while storage or the bus is down.

mod dlq;
mod process;

use std::time::Duration;

use intake_bus::{BusError, Consumer, ReceivedMessage, StartFrom, Subscription};
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
    loop {
        let message = tokio::select! {
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
        // A message is fully processed (or dead-lettered) before its offset is committed; a step in
        // progress is not interrupted by shutdown, so a verdict is never left half done. Shutdown
        // does end a wait (outage, retry backoff, unwritable DLQ): the message stays uncommitted
        // and is delivered again, which is safe because every step is idempotent.
        match process::handle(&state, &message, &cancel).await {
            process::Handled::Done => commit(&mut *consumer, &message, &cancel).await,
            process::Handled::Interrupted => {
                tracing::info!(
                    offset = message.offset,
                    "shutdown while a validation response waited; it will be delivered again"
                );
                break;
            }
        }
    }
    Ok(())
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
            Err(e) => {
                tracing::warn!(offset = message.offset, attempt, error = %e, "commit failed");
                if cancel.is_cancelled() {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(OUTAGE_BACKOFF_MAX);
            }
        }
    }
    tracing::warn!(
        offset = message.offset,
        "giving up on this commit; the message will be redelivered"
    );
}

/// Waits until storage and the bus both answer (as `/readyz` sees them): true then, false if
/// `cancel` fired first.
pub(crate) async fn wait_until_healthy(state: &AppState, cancel: &CancellationToken) -> bool {
    let mut wait = Duration::from_secs(1);
    loop {
        let storage = state.store.check().await;
        let bus = state.bus.check().await;
        if storage.is_ok() && bus.is_ok() {
            return true;
        }
        tracing::warn!(
            storage = ?storage.err().map(|e| e.to_string()),
            bus = ?bus.err().map(|e| e.to_string()),
            "storage or bus unavailable; validation processing paused"
        );
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(OUTAGE_BACKOFF_MAX);
    }
}
