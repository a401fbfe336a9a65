//! The message-bus seam. [`Bus`] publishes with a durable acknowledgement and opens [`Consumer`]s in
//! consumer groups that commit after processing (at-least-once). Drivers: `embedded` (SQLite on local
//! disk) and `kafka` (rdkafka). Every driver passes the contract suite in `testsuite` (feature
//! `testsuite`).
//!
//! Choose a driver with [`open`] (the factory, from `BusConfig`). [`faults::FaultyBus`] wraps any
//! bus to inject failures in tests; [`tail()`] prints what a topic carries, on every driver.
//! [`runtime`] is the consumer runtime every consuming part runs on (in-flight window, in-order
//! commits, the [`retry`] policy, lag, spans, drain on cancel); its suite runs on every driver
//! with the contract suite.

pub mod embedded;
pub mod error;
mod factory;
pub mod faults;
pub mod kafka;
pub mod lag;
pub mod message;
pub mod retry;
pub mod runtime;
#[cfg(feature = "testsuite")]
pub mod runtime_suite;
pub mod tail;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod topics;

pub use error::{BusError, Cause, ErrorKind};
pub use factory::open;
pub use message::{Header, OutgoingMessage, ReceivedMessage};
pub use tail::{tail, tail_until_end, TailRecord};

use async_trait::async_trait;

/// Where a group with no committed offset starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest retained message (services use this, so nothing published before they first
    /// started is missed).
    Earliest,
    /// Only messages published after the consumer joined.
    Latest,
}

/// What a consumer reads.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Consumer group id; members of one group share the work, each message goes to one member.
    pub group: String,
    /// Topic wire names (prefix already applied).
    pub topics: Vec<String>,
    pub start: StartFrom,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i16,
}

/// Where a published message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// A message bus.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes one message and returns where it landed once it is durably handed off (Kafka:
    /// acknowledged by all in-sync replicas, idempotent producer; embedded: committed to disk). A
    /// keyed message goes to the partition of its key's hash, so one key's messages keep their
    /// order; keyless ones are spread over the partitions. Fails with
    /// [`BusError::Timeout`] if that takes longer than the configured publish timeout, and with
    /// [`BusError::UnknownTopic`] when the topic does not exist and the bus does not create topics.
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError>;

    /// Joins `subscription.group` and returns a consumer of its topics. Offsets committed by earlier
    /// members of the group are honoured; messages delivered but never committed are delivered again
    /// to the group's next member (after a restart, or a rebalance). Members of one group never
    /// both receive a message: the live members split each topic's partitions (Kafka through its
    /// group coordinator; the embedded bus round-robin in join order, a partition changing hands
    /// once its holder gives it up or its lease expires), and a partition has one holder at a time.
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError>;

    /// Creates the topics that do not exist yet, each with `partitions` partitions (-1: the bus's
    /// default, Kafka's `num.partitions` or the embedded bus's `BUS_PARTITIONS`). Idempotent: an
    /// existing topic keeps its partitions.
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError>;

    /// Every topic's wire name.
    async fn list_topics(&self) -> Result<Vec<String>, BusError>;

    /// The bus answers (used by `/readyz`).
    async fn check(&self) -> Result<(), BusError>;
}

/// One member of a consumer group.
#[async_trait]
pub trait Consumer: Send {
    /// Waits for the next message. Within one partition, messages come in offset order. Cancel-safe:
    /// dropping the future loses nothing (the message is delivered by a later call).
    async fn next(&mut self) -> Result<ReceivedMessage, BusError>;

    /// Commits `message`'s offset for its partition: the group will not see it, or anything before
    /// it in that partition, again. Call only after the message is fully processed. Fails with
    /// [`BusError::NotOwned`] when the partition went to another member since the delivery (which
    /// then delivers the message again).
    async fn commit(&mut self, message: &ReceivedMessage) -> Result<(), BusError>;

    /// The partitions this member holds now, each with the group's committed offset and the
    /// partition's bounds: what a lag gauge shows, and where a replay can stop. Empty while the
    /// member holds nothing (on Kafka, before its first `next()` has joined the group).
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError>;
}

/// Where a consumer group stands on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (the next one to process), if it ever committed here.
    pub committed: Option<i64>,
    /// The oldest offset the bus still keeps.
    pub start: i64,
    /// The offset the next message published to the partition will get (its high watermark).
    pub end: i64,
}

impl PartitionLag {
    /// Messages the group has not processed: from its committed offset (the oldest kept one when
    /// it never committed, or when retention removed what it had not read) to the end.
    pub fn lag(&self) -> u64 {
        let from = self.committed.unwrap_or(self.start).max(self.start);
        u64::try_from(self.end - from).unwrap_or(0)
    }
}
