//! The single writer of a bus instance: a thread of its own that takes the writes waiting in its
//! queue (publishes, consumer commits, topic creations, group membership and leases, retention)
//! and applies them together in one
//! transaction on its own connection (group commit), so concurrent publishers and consumers share
//! one fsync and never wait on each other's SQLite write lock (a lock SQLite's busy handler would
//! retry with sleeps of up to 100 ms). A batch costs one hand-off to the thread and one back,
//! whatever its statements ([`super::write`]).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::groups::GroupWrite;
use super::partitioner::Partitioner;
use super::write::{self, Applied, OffsetCommit, Writes};
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
        commit: OffsetCommit,
        reply: oneshot::Sender<Result<bool, BusError>>,
    },
    /// Creates the topics that do not exist yet with the given partition counts (checked).
    CreateTopics {
        topics: Vec<(String, i32)>,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
    /// Changes a group's membership or a lease; the reply is [`super::groups::apply`]'s outcome.
    Group {
        op: GroupWrite,
        reply: oneshot::Sender<Result<bool, BusError>>,
    },
    /// Deletes up to [`write::SWEEP_BATCH`] messages stored before `cutoff` (ms since the epoch);
    /// the reply says how many went.
    Sweep {
        cutoff: i64,
        reply: oneshot::Sender<Result<u64, BusError>>,
    },
}

impl Pending {
    fn fail(self, e: BusError) {
        match self {
            Pending::Publish { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Pending::Commit { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Pending::CreateTopics { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Pending::Group { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Pending::Sweep { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Starts the writer thread on `file` and its checkpointer; both end when every sender is dropped
/// (the bus and its consumers are dropped).
#[allow(
    clippy::disallowed_methods,
    reason = "the checkpointer is named and ends with the writer thread, which drops its stop sender"
)]
pub(crate) fn spawn(shared: Arc<Shared>, file: PathBuf) -> Result<mpsc::Sender<Pending>, BusError> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (stop_checkpoints, stopped) = oneshot::channel::<()>();
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("bus-writer".into())
        .spawn(move || {
            run(&thread_shared, &file, rx);
            drop(stop_checkpoints);
        })
        .map_err(|e| BusError::backend_from("starting the embedded bus writer", e))?;
    tokio::spawn(
        checkpoint_periodically(shared, stopped)
            .instrument(tracing::info_span!("bus.embedded.checkpoint")),
    );
    Ok(tx)
}

fn run(shared: &Shared, file: &std::path::Path, mut queue: mpsc::Receiver<Pending>) {
    let mut conn: Option<rusqlite::Connection> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Keyless messages take each topic's partitions in turn, across batches.
    let mut partitioner = Partitioner::default();
    let default_partitions = shared.options.default_partitions;
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        // A publisher that gave up (timed out) still gets its message written: like a broker, the
        // bus cannot take back what it was handed.
        let mut writes = Writes::default();
        for pending in &batch {
            match pending {
                Pending::Publish { message, .. } => writes.messages.push(message),
                Pending::Commit { commit, .. } => writes.commits.push(commit),
                Pending::CreateTopics { topics, .. } => writes
                    .topics
                    .extend(topics.iter().map(|(name, count)| (name.as_str(), *count))),
                Pending::Group { op, .. } => writes.groups.push(op),
                Pending::Sweep { cutoff, .. } => writes.sweeps.push(*cutoff),
            }
        }
        let published = !writes.messages.is_empty();
        let written = match &mut conn {
            Some(c) => write::apply(c, &writes, &mut partitioner, default_partitions),
            None => match write::open(file, &shared.options) {
                Ok(c) => write::apply(
                    conn.insert(c),
                    &writes,
                    &mut partitioner,
                    default_partitions,
                ),
                Err(e) => Err(BusError::unavailable_from(
                    "no connection to the embedded bus database",
                    e,
                )),
            },
        };
        drop(writes);
        match written {
            Ok(Applied {
                deliveries,
                stored,
                groups,
                swept,
            }) => {
                let (mut deliveries, mut stored, mut groups, mut swept) = (
                    deliveries.into_iter(),
                    stored.into_iter(),
                    groups.into_iter(),
                    swept.into_iter(),
                );
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
                        Pending::CreateTopics { reply, .. } => {
                            let _ = reply.send(Ok(()));
                        }
                        Pending::Group { reply, .. } => {
                            let _ = reply.send(groups.next().ok_or(BusError::Closed));
                        }
                        Pending::Sweep { reply, .. } => {
                            let _ = reply.send(swept.next().ok_or(BusError::Closed));
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
                    pending.fail(e.clone());
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

/// Deletes the messages stored more than `retention` ago, [`write::SWEEP_BATCH`] per write;
/// returns how many went.
pub(crate) async fn sweep(
    writer: &mpsc::Sender<Pending>,
    retention: std::time::Duration,
) -> Result<u64, BusError> {
    let cutoff = store::now_ms().saturating_sub(store::millis(retention));
    let mut deleted = 0;
    loop {
        let (reply, answer) = oneshot::channel();
        let went = submit(writer, Pending::Sweep { cutoff, reply }, answer).await?;
        deleted += went;
        if went < write::SWEEP_BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// Hands a group change to the writer and waits for its outcome.
pub(crate) async fn change_group(
    writer: &mpsc::Sender<Pending>,
    op: GroupWrite,
) -> Result<bool, BusError> {
    let (reply, answer) = oneshot::channel();
    submit(writer, Pending::Group { op, reply }, answer).await
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
