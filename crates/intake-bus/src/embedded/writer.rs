//! The single writer of a bus instance: it takes the writes waiting in its queue (publishes and
//! consumer commits) and applies them together in one transaction (group commit), so concurrent
//! publishers and consumers share one fsync and never wait on each other's SQLite write lock (a
//! lock SQLite's busy handler would retry with sleeps of up to 100 ms).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::partitioner::Partitioner;
use super::{store, Shared};
use crate::{BusError, Delivery, OutgoingMessage};

/// Writes queued before the writer blocks their senders (backpressure).
const QUEUE: usize = 1024;
/// Most writes applied in one transaction.
const MAX_BATCH: usize = 256;

/// One write waiting for the writer, with where its outcome goes.
pub(crate) enum Pending {
    Publish {
        message: OutgoingMessage,
        reply: oneshot::Sender<Result<Delivery, BusError>>,
    },
    /// Stores `commit.next` as the group's offset on the partition while `commit.holder` holds its
    /// lease; the reply says whether it was stored.
    Commit {
        commit: store::OffsetCommit,
        reply: oneshot::Sender<Result<bool, BusError>>,
    },
}

/// Starts the writer; it ends when every sender is dropped (the bus and its consumers are dropped).
#[allow(
    clippy::disallowed_methods,
    reason = "the writer is named and ends when every sender is dropped (the bus and its consumers)"
)]
pub(crate) fn spawn(shared: Arc<Shared>) -> mpsc::Sender<Pending> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(shared, rx).instrument(tracing::info_span!("bus.embedded.writer")));
    tx
}

#[allow(
    clippy::disallowed_methods,
    reason = "the checkpointer is named and ends with the writer, which drops its stop sender"
)]
async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<Pending>) {
    // The checkpointer lives as long as the writer: it stops when `_stop_checkpoints` is dropped.
    let (_stop_checkpoints, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        checkpoint_periodically(shared.clone(), stopped)
            .instrument(tracing::info_span!("bus.embedded.checkpoint")),
    );
    // The writer keeps one connection, so no reader can leave it waiting for the pool.
    let mut conn: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Keyless messages take each topic's partitions in turn, across batches.
    let mut partitioner = Partitioner::default();
    let default_partitions = shared.options.default_partitions;
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A publisher that gave up (timed out) still gets its message written: like a broker, the
        // bus cannot take back what it was handed.
        let mut messages = Vec::new();
        let mut commits = Vec::new();
        for pending in &batch {
            match pending {
                Pending::Publish { message, .. } => messages.push(message),
                Pending::Commit { commit, .. } => commits.push(commit),
            }
        }
        let published = !messages.is_empty();
        let written = match &mut conn {
            Some(c) => {
                store::write(c, &messages, &commits, &mut partitioner, default_partitions).await
            }
            None => match shared.pool.acquire().await {
                Ok(c) => {
                    store::write(
                        conn.insert(c),
                        &messages,
                        &commits,
                        &mut partitioner,
                        default_partitions,
                    )
                    .await
                }
                Err(e) => Err(BusError::unavailable_from(
                    "no connection to the embedded bus database",
                    e,
                )),
            },
        };
        match written {
            Ok((deliveries, stored)) => {
                let (mut deliveries, mut stored) = (deliveries.into_iter(), stored.into_iter());
                let mut ends = shared.ends();
                for pending in batch.drain(..) {
                    match pending {
                        Pending::Publish { message, reply } => {
                            let delivery = deliveries.next().ok_or(BusError::Closed);
                            if let Ok(d) = &delivery {
                                ends.raise(&message.topic, d.partition, d.offset + 1);
                            }
                            let _ = reply.send(delivery);
                        }
                        Pending::Commit { reply, .. } => {
                            let _ = reply.send(stored.next().ok_or(BusError::Closed));
                        }
                    }
                }
                drop(ends);
                if published {
                    shared.notify.notify_waiters();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = batch.len(), "embedded bus write failed");
                // A fresh connection for the next batch, in case this one is what broke.
                conn = None;
                for pending in batch.drain(..) {
                    match pending {
                        Pending::Publish { reply, .. } => {
                            let _ = reply.send(Err(e.clone()));
                        }
                        Pending::Commit { reply, .. } => {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// How often committed WAL frames are copied into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Checkpoints the WAL in the background, so that commits never do it themselves.
async fn checkpoint_periodically(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
        }
        match store::checkpoint(&shared.pool).await {
            Ok((log, done)) => tracing::trace!(log, done, "embedded bus checkpoint"),
            Err(e) => tracing::warn!(error = %e, "embedded bus checkpoint failed"),
        }
    }
}

/// Hands `pending` to the writer and waits for its outcome.
pub(crate) async fn submit<T>(
    writer: &mpsc::Sender<Pending>,
    pending: Pending,
    answer: oneshot::Receiver<Result<T, BusError>>,
) -> Result<T, BusError> {
    let stopped = || BusError::unavailable("the embedded bus writer has stopped");
    writer.send(pending).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}
