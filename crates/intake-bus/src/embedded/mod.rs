//! The `embedded` driver: a durable bus in one SQLite database on local disk, for single-host
//! deployments and tests. Several processes may open the same directory at once (WAL mode, busy
//! timeouts, consumers poll for new rows).
//!
//! Model, as Kafka's: a topic has a fixed number of partitions, chosen when it is created
//! ([`TopicSpec::partitions`], or [`EmbeddedOptions::default_partitions`] for a topic created on
//! first publish or with Kafka's "broker default" -1). A keyed message goes to the partition of its
//! key's murmur2 hash (Kafka's default partitioner, so one key keeps its order); keyless messages
//! take the partitions in turn. Each partition's offsets start at 0 and only grow, also across
//! retention. A publish is committed with `synchronous=FULL` before it returns, and concurrent
//! publishes share one transaction (group commit).
//!
//! Consumer groups: a member announces itself on each topic it reads and renews that announcement
//! and its leases with a heartbeat. The live members of a group on a topic, in the order they
//! joined, split its partitions round-robin (partition `p` goes to member `p % members`, so a
//! one-partition topic stays with its oldest member). A member reads a partition only while it holds
//! the exclusive lease row of (group, topic, partition); it gives up partitions that are no longer
//! its own the next time it asks for a message, and takes its own once they are released (the holder
//! left or moved on) or expired (its process died), reading on from the group's committed offset.
//! What a member was handed but did not commit before giving a partition up is delivered again to
//! the next holder (at-least-once), and its late commit is refused with [`BusError::NotOwned`].
//!
//! Schema version 2 (partitions); a version-1 directory is upgraded when opened, its messages,
//! offsets and leases becoming partition 0 of one-partition topics.

mod codec;
mod consumer;
mod groups;
mod partitioner;
mod schema;
mod store;
mod write;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::Instrument;

use crate::{Bus, BusError, Consumer, Delivery, OutgoingMessage, Subscription, TopicSpec};

/// How long messages are kept: older ones are deleted by the retention sweep.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the retention sweep runs (it also runs when the bus is opened).
pub const RETENTION_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Partitions of a topic created without a count (on first publish, or asked for with -1), like a
/// Kafka broker's `num.partitions` default (`BUS_PARTITIONS`).
pub const DEFAULT_PARTITIONS: i32 = 1;
pub use store::MAX_PARTITIONS;
/// How long a group member's lease on a partition lasts without a heartbeat; a member whose process
/// died is replaced after at most this long. Heartbeats renew it every third of it.
pub const DEFAULT_LEASE_EXPIRY: Duration = Duration::from_secs(10);
/// How often consumers look for messages published by other processes (publishes in this process
/// wake them at once).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Default longest wait for a durable publish (`BUS_PUBLISH_TIMEOUT`).
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The database file inside the bus directory.
pub const DATABASE_FILE: &str = "bus.sqlite3";

/// Settings of the embedded bus. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Longest wait for a publish to be committed to disk, then [`BusError::Timeout`].
    pub publish_timeout: Duration,
    /// Messages older than this are deleted ([`DEFAULT_RETENTION`], 7 days).
    pub retention: Duration,
    /// A group member's lease lifetime without heartbeat ([`DEFAULT_LEASE_EXPIRY`]).
    pub lease_expiry: Duration,
    /// Polling period for other processes' publishes and for waiting members ([`DEFAULT_POLL_INTERVAL`]).
    pub poll_interval: Duration,
    /// How long a statement waits for another connection's write lock before failing.
    pub busy_timeout: Duration,
    /// Partitions of a topic created on first publish or with -1 partitions
    /// ([`DEFAULT_PARTITIONS`], 1; at most [`MAX_PARTITIONS`]).
    pub default_partitions: i32,
    /// Size the write-ahead log is cut back to once it has been copied into the database
    /// ([`DEFAULT_WAL_SIZE_LIMIT`]). While consumers read without a pause, a burst of publishes
    /// grows the log past what the background checkpoint has copied; without a limit the file
    /// keeps that size for good (gigabytes after a burst of millions of messages).
    pub wal_size_limit: u64,
}

/// Default [`EmbeddedOptions::wal_size_limit`]: 64 MiB.
pub const DEFAULT_WAL_SIZE_LIMIT: u64 = 64 << 20;

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            retention: DEFAULT_RETENTION,
            lease_expiry: DEFAULT_LEASE_EXPIRY,
            poll_interval: DEFAULT_POLL_INTERVAL,
            busy_timeout: Duration::from_secs(5),
            default_partitions: DEFAULT_PARTITIONS,
            wal_size_limit: DEFAULT_WAL_SIZE_LIMIT,
        }
    }
}

/// State shared by the bus, its writer, its sweeper and its consumers.
pub(crate) struct Shared {
    pub(crate) pool: sqlx::SqlitePool,
    /// Woken after every local publish and lease release.
    pub(crate) notify: Notify,
    /// Known ends of partitions: per topic, per partition, an offset the partition's end is at
    /// least at (raised by this process's writer after each commit, and by consumers when they
    /// read the ends from the database). A consumer woken by a local publish compares its position
    /// with these instead of asking the database which partitions have something new.
    pub(crate) ends: Mutex<KnownEnds>,
    pub(crate) options: EmbeddedOptions,
}

/// Per topic, per partition, an offset the partition's end has reached.
#[derive(Debug, Default)]
pub(crate) struct KnownEnds(HashMap<String, HashMap<i32, i64>>);

impl KnownEnds {
    /// Raises the known end of a partition to `end` (never lowers it).
    pub(crate) fn raise(&mut self, topic: &str, partition: i32, end: i64) {
        let partitions = match self.0.get_mut(topic) {
            Some(p) => p,
            None => self.0.entry(topic.to_owned()).or_default(),
        };
        let known = partitions.entry(partition).or_insert(end);
        *known = (*known).max(end);
    }

    /// The known end of a partition, if any.
    pub(crate) fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0.get(topic)?.get(&partition).copied()
    }
}

impl Shared {
    pub(crate) fn ends(&self) -> std::sync::MutexGuard<'_, KnownEnds> {
        self.ends.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The embedded bus. Cheap to share behind an `Arc`; dropping it stops its background tasks
/// (consumers already opened keep working).
pub struct EmbeddedBus {
    shared: Arc<Shared>,
    dir: PathBuf,
    writer: mpsc::Sender<writer::Pending>,
    /// Dropping it stops the retention sweeper.
    _sweeper_stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("dir", &self.dir)
            .field("options", &self.shared.options)
            .finish()
    }
}

impl EmbeddedBus {
    /// Opens (creating if needed) the bus stored in `dir`, runs a retention sweep, and starts the
    /// writer and the hourly sweeper. Must be called inside a tokio runtime.
    #[allow(
        clippy::disallowed_methods,
        reason = "the retention sweeper is named and ends when the bus drops its stop sender"
    )]
    pub async fn open(dir: &Path, options: EmbeddedOptions) -> Result<Self, BusError> {
        if !(1..=MAX_PARTITIONS).contains(&options.default_partitions) {
            return Err(BusError::config(format!(
                "{} default partitions; the embedded bus allows 1 to {MAX_PARTITIONS}",
                options.default_partitions
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            BusError::config(format!(
                "cannot create the bus directory {}: {e}",
                dir.display()
            ))
        })?;
        let pool = schema::connect(&dir.join(DATABASE_FILE), &options).await?;
        let shared = Arc::new(Shared {
            pool,
            notify: Notify::new(),
            ends: Mutex::default(),
            options,
        });
        let writer = writer::spawn(shared.clone(), dir.join(DATABASE_FILE))?;
        let deleted = writer::sweep(&writer, shared.options.retention).await?;
        if deleted > 0 {
            tracing::info!(deleted, dir = %dir.display(), "embedded bus retention removed old messages");
        }
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(
            sweep_periodically(shared.clone(), writer.clone(), stopped)
                .instrument(tracing::info_span!("bus.embedded.retention")),
        );
        Ok(Self {
            shared,
            dir: dir.to_owned(),
            writer,
            _sweeper_stop: stop,
        })
    }

    /// The directory holding the bus.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes the messages older than the retention now, in every partition, returning how many
    /// went. Offsets are not reused afterwards.
    pub async fn sweep_retention(&self) -> Result<u64, BusError> {
        writer::sweep(&self.writer, self.shared.options.retention).await
    }
}

async fn sweep_periodically(
    shared: Arc<Shared>,
    writer: mpsc::Sender<writer::Pending>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(RETENTION_SWEEP_INTERVAL) => {}
        }
        match writer::sweep(&writer, shared.options.retention).await {
            Ok(deleted) => tracing::info!(deleted, "embedded bus retention sweep"),
            Err(e) => tracing::warn!(error = %e, "embedded bus retention sweep failed"),
        }
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    /// Topics are created on first publish, with the default partitions. The partition is the
    /// key's (murmur2, as Kafka's) or, without a key, the topic's next in turn. Returns once the
    /// message is committed to disk.
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError> {
        store::validate_topic(&message.topic)?;
        let timeout = self.shared.options.publish_timeout;
        let topic = message.topic.clone();
        let (reply, answer) = oneshot::channel();
        let hand_off = writer::submit(
            &self.writer,
            writer::Pending::Publish { message, reply },
            answer,
        );
        match tokio::time::timeout(timeout, hand_off).await {
            Ok(result) => result,
            Err(_) => Err(BusError::Timeout {
                topic,
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError> {
        for topic in &subscription.topics {
            store::validate_topic(topic)?;
        }
        if subscription.group.is_empty() {
            return Err(BusError::config("a consumer group id must not be empty"));
        }
        let consumer = consumer::EmbeddedConsumer::join(
            self.shared.clone(),
            self.writer.clone(),
            subscription,
        )
        .await?;
        Ok(Box::new(consumer))
    }

    /// Creates missing topics with `partitions` partitions (the configured default when it is 0 or
    /// less; at most [`MAX_PARTITIONS`]). An existing topic keeps its partitions.
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        for spec in topics {
            store::validate_topic(&spec.name)?;
        }
        let mut counts = Vec::with_capacity(topics.len());
        for spec in topics {
            counts.push((
                spec.name.clone(),
                store::partition_count(
                    &spec.name,
                    spec.partitions,
                    self.shared.options.default_partitions,
                )?,
            ));
        }
        let (reply, answer) = oneshot::channel();
        writer::submit(
            &self.writer,
            writer::Pending::CreateTopics {
                topics: counts,
                reply,
            },
            answer,
        )
        .await
    }

    async fn list_topics(&self) -> Result<Vec<String>, BusError> {
        store::list_topics(&self.shared.pool).await
    }

    /// Reads the topic table within 5 s.
    async fn check(&self) -> Result<(), BusError> {
        match tokio::time::timeout(
            Duration::from_secs(5),
            store::list_topics(&self.shared.pool),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BusError::unavailable_from("listing topics", e)),
            Err(_) => Err(BusError::unavailable(
                "the embedded bus database did not answer within 5 s",
            )),
        }
    }
}
