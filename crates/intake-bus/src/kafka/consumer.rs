//! One member of a Kafka consumer group. Offsets are never committed automatically: [`Consumer::commit`]
//! commits `offset + 1` of a processed message, synchronously, and only while this member still owns
//! the message's partition since it was delivered. A partition revoked in between is left alone, so
//! its next owner resumes from the last commit and receives the message again (at-least-once), and
//! `commit` says so with an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::errors::{is_unknown_topic, other_error};
use super::log::{route_error, route_line, LogLimiter, LINES_PER_SECOND};
use super::settings::ClientSettings;
use crate::{BusError, Consumer, Header, PartitionLag, ReceivedMessage, StartFrom, Subscription};

type Partition = (String, i32);

/// The partitions this member owns. Each assignment gets a new epoch, so a message delivered before
/// a revoke can be told apart from one delivered after the partition came back.
#[derive(Debug, Default)]
struct Ownership {
    next_epoch: u64,
    owned: HashMap<Partition, u64>,
}

/// Tracks assignments as the group rebalances, and routes librdkafka's logs to `tracing`.
pub struct GroupContext {
    group: String,
    ownership: Mutex<Ownership>,
    /// librdkafka's lines and this consumer's own error lines, at most `LINES_PER_SECOND` a
    /// second (a broker that is down otherwise gives hundreds).
    logs: LogLimiter,
}

impl GroupContext {
    fn epoch(&self, partition: &Partition) -> Option<u64> {
        self.ownership
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .owned
            .get(partition)
            .copied()
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        route_line(
            &self.logs,
            "consumer",
            &self.group,
            level,
            facility,
            message,
        );
    }

    fn error(&self, error: KafkaError, reason: &str) {
        route_error(&self.logs, "consumer", &self.group, &error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut ownership = self
            .ownership
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    ownership
                        .owned
                        .remove(&(e.topic().to_owned(), e.partition()));
                }
                tracing::info!(group = %self.group, revoked = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(error) => {
                // librdkafka drops the whole assignment after a rebalance error.
                ownership.owned.clear();
                tracing::warn!(group = %self.group, %error, "rebalance failed; assignment dropped");
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut ownership = self
                .ownership
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            ownership.next_epoch += 1;
            let epoch = ownership.next_epoch;
            for e in tpl.elements() {
                ownership
                    .owned
                    .insert((e.topic().to_owned(), e.partition()), epoch);
            }
            tracing::info!(group = %self.group, assigned = tpl.count(), "partitions assigned");
        }
    }
}

/// A member of a consumer group on Kafka; see the module documentation for the commit rules.
pub struct KafkaConsumer {
    /// `None` only while being dropped (closing happens on the blocking pool).
    consumer: Option<Arc<StreamConsumer<GroupContext>>>,
    group: String,
    /// Per partition: the ownership epoch of the last delivery and the first offset delivered in it.
    delivered: HashMap<Partition, (u64, i64)>,
    commit_timeout: Duration,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KafkaConsumer {
    /// A fresh client that joins `subscription.group`. With [`StartFrom::Latest`], partitions the
    /// group has never committed are first pinned at their current end, so everything published
    /// after this returns is delivered (auto.offset.reset alone would decide only at assignment).
    pub(crate) async fn join(
        settings: &ClientSettings,
        subscription: Subscription,
        op_timeout: Duration,
    ) -> Result<Self, BusError> {
        if subscription.topics.is_empty() {
            return Err(BusError::config("a subscription needs at least one topic"));
        }
        let reset = match subscription.start {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        let context = GroupContext {
            group: subscription.group.clone(),
            ownership: Mutex::default(),
            logs: LogLimiter::new(LINES_PER_SECOND),
        };
        let consumer: StreamConsumer<GroupContext> = settings
            .consumer_config(&[
                ("group.id", subscription.group.clone()),
                ("enable.auto.commit", "false".into()),
                ("enable.auto.offset.store", "false".into()),
                ("auto.offset.reset", reset.into()),
                ("enable.partition.eof", "false".into()),
                ("allow.auto.create.topics", "false".into()),
            ])
            .create_with_context(context)
            .map_err(|e| BusError::config_from("creating a Kafka consumer", e))?;
        let consumer = Arc::new(consumer);
        if subscription.start == StartFrom::Latest {
            let (c, topics) = (Arc::clone(&consumer), subscription.topics.clone());
            tokio::task::spawn_blocking(move || pin_uncommitted_at_end(&c, &topics, op_timeout))
                .await
                .map_err(|e| BusError::backend_from("offset task", e))?;
        }
        let topics: Vec<&str> = subscription.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| other_error("subscribing", &e))?;
        tracing::info!(group = %subscription.group, topics = ?subscription.topics, "joined consumer group");
        Ok(Self {
            consumer: Some(consumer),
            group: subscription.group,
            delivered: HashMap::new(),
            commit_timeout: op_timeout,
        })
    }

    fn client(&self) -> Result<&Arc<StreamConsumer<GroupContext>>, BusError> {
        self.consumer.as_ref().ok_or(BusError::Closed)
    }
}

/// Commits the current end of every partition of `topics` that the group has no offset for. Best
/// effort: when it cannot (an active group refuses commits from non-members), auto.offset.reset
/// decides as usual.
fn pin_uncommitted_at_end(
    consumer: &StreamConsumer<GroupContext>,
    topics: &[String],
    timeout: Duration,
) {
    let result = (|| -> Result<usize, KafkaError> {
        let metadata = consumer.fetch_metadata(None, timeout)?;
        let mut all = TopicPartitionList::new();
        for t in metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|n| n == t.name()))
        {
            for p in t.partitions() {
                all.add_partition(t.name(), p.id());
            }
        }
        if all.count() == 0 {
            return Ok(0);
        }
        let committed = consumer.committed_offsets(all, timeout)?;
        let mut start = TopicPartitionList::new();
        for e in committed
            .elements()
            .iter()
            .filter(|e| e.offset() == Offset::Invalid)
        {
            let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
            start.add_partition_offset(e.topic(), e.partition(), Offset::Offset(high))?;
        }
        if start.count() > 0 {
            consumer.commit(&start, CommitMode::Sync)?;
        }
        Ok(start.count())
    })();
    match result {
        Ok(pinned) => tracing::debug!(
            pinned,
            "partitions without a committed offset start at their end"
        ),
        Err(error) => {
            tracing::debug!(%error, "could not pin the start offsets; auto.offset.reset=latest applies")
        }
    }
}

/// Whether a message at `offset` may be committed: this member has owned its partition without a
/// break since the message was delivered. `now` is the partition's current ownership epoch (`None`:
/// not owned); `delivered` is the epoch of the partition's last delivery and the first offset
/// delivered in that epoch.
fn owned_since_delivery(now: Option<u64>, delivered: Option<(u64, i64)>, offset: i64) -> bool {
    match (now, delivered) {
        (Some(now), Some((epoch, first_offset))) => now == epoch && offset >= first_offset,
        _ => false,
    }
}

fn received(message: &BorrowedMessage<'_>) -> ReceivedMessage {
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    name: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    ReceivedMessage {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        headers,
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn next(&mut self) -> Result<ReceivedMessage, BusError> {
        let consumer = Arc::clone(self.client()?);
        loop {
            // `recv` is cancel-safe, and nothing below awaits, so dropping this future loses nothing.
            match consumer.recv().await {
                Ok(message) => {
                    let partition = (message.topic().to_owned(), message.partition());
                    let Some(epoch) = consumer.context().epoch(&partition) else {
                        tracing::debug!(group = %self.group, topic = %partition.0, partition = partition.1,
                            "skipping a message of a partition this member does not own");
                        continue;
                    };
                    let entry = self
                        .delivered
                        .entry(partition)
                        .or_insert((epoch, message.offset()));
                    if entry.0 != epoch {
                        *entry = (epoch, message.offset());
                    }
                    return Ok(received(&message));
                }
                Err(KafkaError::MessageConsumption(code)) if is_unknown_topic(code) => {
                    tracing::warn!(group = %self.group, %code, "a subscribed topic does not exist (yet)");
                }
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(error @ KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(BusError::backend_from("consuming", error));
                }
                Err(error) => {
                    // librdkafka recovers from the others on its own (reconnects, refetches).
                    if let Some(client) = &self.consumer {
                        route_error(
                            &client.context().logs,
                            "consumer",
                            &self.group,
                            &error,
                            "consumer error",
                        );
                    }
                }
            }
        }
    }

    async fn commit(&mut self, message: &ReceivedMessage) -> Result<(), BusError> {
        let consumer = Arc::clone(self.client()?);
        let partition = (message.topic.clone(), message.partition);
        if !owned_since_delivery(
            consumer.context().epoch(&partition),
            self.delivered.get(&partition).copied(),
            message.offset,
        ) {
            tracing::info!(group = %self.group, topic = %message.topic, partition = message.partition, offset = message.offset,
                "not committing: the partition was revoked since delivery; its next owner receives the message again");
            return Err(BusError::NotOwned(format!(
                "not committed: partition {} of {:?} was reassigned since offset {} was delivered; it will be delivered again",
                message.partition, message.topic, message.offset
            )));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &message.topic,
            message.partition,
            Offset::Offset(message.offset + 1),
        )
        .map_err(|e| other_error("committing", &e))?;
        let commit = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync));
        match tokio::time::timeout(self.commit_timeout, commit).await {
            Err(_) => Err(BusError::unavailable(format!(
                "commit not acknowledged within {:?}",
                self.commit_timeout
            ))),
            Ok(Err(e)) => Err(BusError::backend_from("commit task", e)),
            Ok(Ok(result)) => result.map_err(|e| other_error("committing", &e)),
        }
    }

    /// The assigned partitions, with the group's committed offsets and the watermarks (each a
    /// request to the cluster, on the blocking pool).
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError> {
        let consumer = Arc::clone(self.client()?);
        let timeout = self.commit_timeout;
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<PartitionLag>, KafkaError> {
            let assigned = consumer.assignment()?;
            if assigned.count() == 0 {
                return Ok(Vec::new());
            }
            let committed = consumer.committed_offsets(assigned, timeout)?;
            committed
                .elements()
                .iter()
                .map(|e| {
                    let (start, end) =
                        consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
                    Ok(PartitionLag {
                        topic: e.topic().to_owned(),
                        partition: e.partition(),
                        committed: match e.offset() {
                            Offset::Offset(n) => Some(n),
                            _ => None,
                        },
                        start,
                        end,
                    })
                })
                .collect()
        });
        // Two requests per partition at most, each bounded by `timeout`; this bounds the whole.
        match tokio::time::timeout(timeout * 3, read).await {
            Err(_) => Err(BusError::unavailable(format!(
                "the group's offsets were not read within {:?}",
                timeout * 3
            ))),
            Ok(Err(e)) => Err(BusError::backend_from("lag task", e)),
            Ok(Ok(result)) => result.map_err(|e| other_error("reading the group's lag", &e)),
        }
    }
}

impl Drop for KafkaConsumer {
    /// Leaving the group blocks until the coordinator answers: done on the blocking pool when a
    /// runtime is around, so dropping a consumer never stalls an async task.
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(move || drop(consumer));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owned_since_delivery;

    #[test]
    fn commits_only_what_was_delivered_under_the_current_ownership() {
        // Owned since delivery (epoch 2, deliveries from offset 10 on).
        assert!(owned_since_delivery(Some(2), Some((2, 10)), 10));
        assert!(owned_since_delivery(Some(2), Some((2, 10)), 14));
        // Revoked: not owned any more.
        assert!(!owned_since_delivery(None, Some((2, 10)), 14));
        // Revoked and assigned again: a message from before the break must not be committed.
        assert!(!owned_since_delivery(Some(3), Some((2, 10)), 14));
        assert!(!owned_since_delivery(Some(3), Some((3, 12)), 11));
        // Never delivered here.
        assert!(!owned_since_delivery(Some(1), None, 0));
    }
}
