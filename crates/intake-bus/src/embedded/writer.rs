//! The single writer of a bus instance: it takes the publishes waiting in its queue and commits them
//! together in one transaction (group commit), so concurrent publishers share one fsync.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{store, Shared};
use crate::{BusError, Delivery, OutgoingMessage};

/// Publishes queued before the writer blocks publishers (backpressure).
const QUEUE: usize = 1024;
/// Most messages committed in one transaction.
const MAX_BATCH: usize = 256;

pub(crate) struct PendingPublish {
    pub(crate) message: OutgoingMessage,
    pub(crate) reply: oneshot::Sender<Result<Delivery, BusError>>,
}

/// Starts the writer; it ends when every sender is dropped (the bus is dropped).
pub(crate) fn spawn(shared: Arc<Shared>) -> mpsc::Sender<PendingPublish> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(shared, rx).instrument(tracing::info_span!("bus.embedded.writer")));
    tx
}

async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<PendingPublish>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A publisher that gave up (timed out) still gets its message written: like a broker, the
        // bus cannot take back what it was handed.
        let messages: Vec<&OutgoingMessage> = batch.iter().map(|p| &p.message).collect();
        let result = store::append(&shared.pool, &messages).await;
        match result {
            Ok(deliveries) => {
                for (pending, delivery) in batch.drain(..).zip(deliveries) {
                    let _ = pending.reply.send(Ok(delivery));
                }
                shared.notify.notify_waiters();
            }
            Err(e) => {
                tracing::warn!(error = %e, messages = batch.len(), "embedded bus publish failed");
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(copy_error(&e)));
                }
            }
        }
    }
}

/// `BusError` is not `Clone` (it is part of the seam); every waiting publisher gets the same error.
fn copy_error(e: &BusError) -> BusError {
    match e {
        BusError::Timeout { topic, timeout_ms } => BusError::Timeout {
            topic: topic.clone(),
            timeout_ms: *timeout_ms,
        },
        BusError::UnknownTopic(t) => BusError::UnknownTopic(t.clone()),
        BusError::Unavailable(t) => BusError::Unavailable(t.clone()),
        BusError::Closed => BusError::Closed,
        BusError::Config(t) => BusError::Config(t.clone()),
        BusError::Backend(t) => BusError::Backend(t.clone()),
    }
}
