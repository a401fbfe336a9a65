//! A member of a consumer group on the embedded bus. It announces itself on each topic it reads; the
//! live members of a group on a topic, in join order, split the topic's partitions round-robin. It
//! reads a partition only while it holds the group's lease on that partition; a heartbeat task renews
//! its announcements and leases and, when the consumer is dropped, releases them at once so the
//! other members take over from the committed offsets.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::groups::{self, GroupWrite, LeaseKey};
use super::{store, write, writer, Shared};
use crate::{BusError, Consumer, PartitionLag, ReceivedMessage, StartFrom, Subscription};

/// Messages read from the database in one query.
const FETCH: i64 = 256;

/// Partitions (topic, partition) this member holds, each with the instant its lease stops being
/// safe to use.
type Leases = Arc<Mutex<HashMap<(String, i32), Instant>>>;

/// A subscribed topic.
struct TopicState {
    name: String,
    /// Its partition count, once it exists (a topic never changes it).
    partitions: Option<i32>,
    /// It did not exist when this member joined: for a group without a committed offset, `Latest`
    /// then starts at its first message (everything in it was published after the join).
    missing_at_join: bool,
}

/// A partition this member holds.
struct HeldPartition {
    topic: String,
    partition: i32,
    /// The next offset to deliver.
    position: i64,
    buffer: VecDeque<ReceivedMessage>,
}

pub(crate) struct EmbeddedConsumer {
    shared: Arc<Shared>,
    /// Commits go through the bus's writer, in the same transactions as publishes.
    writer: mpsc::Sender<writer::Pending>,
    group: String,
    member: String,
    start: StartFrom,
    topics: Vec<TopicState>,
    /// Sorted by (topic, partition).
    held: Vec<HeldPartition>,
    /// Where the round-robin over held partitions resumes.
    turn: usize,
    leases: Leases,
    last_rebalance: Option<Instant>,
    /// When the partitions' ends were last read from the database (other processes' publishes
    /// are seen then); in between, the ends this process knows are enough.
    last_look: Option<Instant>,
    /// Dropping it makes the heartbeat task leave the group and stop.
    _heartbeat_stop: oneshot::Sender<()>,
}

impl EmbeddedConsumer {
    /// Joins the group: announces the member, takes its partitions that are free at once (so
    /// `Latest` means "from now"), then starts the heartbeat.
    #[allow(
        clippy::disallowed_methods,
        reason = "the heartbeat is named and ends when the consumer drops its stop sender; nothing awaits its result"
    )]
    pub(crate) async fn join(
        shared: Arc<Shared>,
        writer: mpsc::Sender<writer::Pending>,
        subscription: Subscription,
    ) -> Result<Self, BusError> {
        let mut names = subscription.topics;
        names.sort();
        names.dedup();
        let member = uuid::Uuid::new_v4().simple().to_string();
        let expiry = shared.options.lease_expiry;
        writer::change_group(
            &writer,
            GroupWrite::Announce {
                group: subscription.group.clone(),
                topics: names.clone(),
                member: member.clone(),
                expiry,
            },
        )
        .await?;
        let counts = store::partition_counts(&shared.pool).await?;
        let topics = names
            .iter()
            .map(|name| {
                let partitions = counts.get(name).copied();
                TopicState {
                    name: name.clone(),
                    partitions,
                    missing_at_join: partitions.is_none(),
                }
            })
            .collect();
        let leases: Leases = Arc::default();
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("bus.embedded.heartbeat", group = %subscription.group, member = %member);
        tokio::spawn(
            heartbeat(
                shared.clone(),
                writer.clone(),
                subscription.group.clone(),
                member.clone(),
                names,
                leases.clone(),
                stopped,
            )
            .instrument(span),
        );
        let mut consumer = Self {
            shared,
            writer,
            group: subscription.group,
            member,
            start: subscription.start,
            topics,
            held: Vec::new(),
            turn: 0,
            leases,
            last_rebalance: None,
            last_look: None,
            _heartbeat_stop: stop,
        };
        consumer.rebalance().await?;
        Ok(consumer)
    }

    /// Forgets every held partition whose lease was lost or ran out.
    fn drop_lost_leases(&mut self) {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        self.held.retain(|held| {
            let key = (held.topic.clone(), held.partition);
            let valid = leases.get(&key).is_some_and(|until| *until > now);
            if !valid {
                tracing::warn!(group = %self.group, topic = %held.topic, partition = held.partition,
                    "embedded bus lease lost; another member may take over");
                leases.remove(&key);
            }
            valid
        });
    }

    /// This member's lease on a partition.
    fn lease(&self, topic: &str, partition: i32) -> LeaseKey {
        LeaseKey {
            group: self.group.clone(),
            topic: topic.to_owned(),
            partition,
            holder: self.member.clone(),
        }
    }

    fn holds(&self, topic: &str, partition: i32) -> bool {
        self.held
            .iter()
            .any(|h| h.topic == topic && h.partition == partition)
    }

    /// Brings what this member holds in line with its share of each topic: gives up partitions
    /// assigned to another live member, takes its own that are free or expired.
    async fn rebalance(&mut self) -> Result<(), BusError> {
        self.last_rebalance = Some(Instant::now());
        let pool = self.shared.pool.clone();
        let expiry = self.shared.options.lease_expiry;
        if self.topics.iter().any(|t| t.partitions.is_none()) {
            let counts = store::partition_counts(&pool).await?;
            for topic in &mut self.topics {
                topic.partitions = topic.partitions.or(counts.get(&topic.name).copied());
            }
        }
        for t in 0..self.topics.len() {
            let name = self.topics[t].name.clone();
            let Some(partitions) = self.topics[t].partitions else {
                continue;
            };
            let mut members = groups::live_members(&pool, &self.group, &name).await?;
            if !members.contains(&self.member) {
                // The announcement ran out (a stall longer than the lease): announce again, as the
                // newest member.
                writer::change_group(
                    &self.writer,
                    GroupWrite::Announce {
                        group: self.group.clone(),
                        topics: vec![name.clone()],
                        member: self.member.clone(),
                        expiry,
                    },
                )
                .await?;
                members.push(self.member.clone());
            }
            let rank = members.iter().position(|m| *m == self.member).unwrap_or(0);
            let count = members.len();
            let mine = |partition: i32| partition as usize % count == rank;

            let not_mine: Vec<i32> = self
                .held
                .iter()
                .filter(|h| h.topic == name && !mine(h.partition))
                .map(|h| h.partition)
                .collect();
            for partition in not_mine {
                self.release(&name, partition).await;
            }

            let wanted: Vec<i32> = (0..partitions)
                .filter(|p| mine(*p) && !self.holds(&name, *p))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let now = store::now_ms();
            let rows = groups::leases(&pool, &self.group, &name).await?;
            for partition in wanted {
                let taken = rows.iter().any(|r| {
                    r.partition == partition && r.holder != self.member && r.expires_ms >= now
                });
                if taken {
                    continue;
                }
                let started = Instant::now();
                let lease = self.lease(&name, partition);
                if !writer::change_group(&self.writer, GroupWrite::Acquire { lease, expiry })
                    .await?
                {
                    continue;
                }
                let position = match store::committed(&pool, &self.group, &name, partition).await? {
                    Some(committed) => committed,
                    None => match self.start {
                        StartFrom::Earliest => 0,
                        StartFrom::Latest if self.topics[t].missing_at_join => 0,
                        StartFrom::Latest => store::end_offset(&pool, &name, partition).await?,
                    },
                };
                tracing::debug!(group = %self.group, topic = %name, partition, position, "embedded bus lease taken");
                self.leases
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((name.clone(), partition), started + expiry);
                let at = self
                    .held
                    .partition_point(|h| (h.topic.as_str(), h.partition) < (&name, partition));
                self.held.insert(
                    at,
                    HeldPartition {
                        topic: name.clone(),
                        partition,
                        position,
                        buffer: VecDeque::new(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Gives a partition up for another member: forgotten here first (so nothing more of it is
    /// delivered), then its lease row is deleted. Should the delete fail, the lease is no longer
    /// renewed and runs out.
    async fn release(&mut self, topic: &str, partition: i32) {
        self.held
            .retain(|h| !(h.topic == topic && h.partition == partition));
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(topic.to_owned(), partition));
        let lease = self.lease(topic, partition);
        match writer::change_group(&self.writer, GroupWrite::Release { lease }).await {
            Ok(_) => {
                tracing::debug!(group = %self.group, topic, partition, "embedded bus partition handed over");
                self.shared.notify.notify_waiters();
            }
            Err(e) => {
                tracing::warn!(group = %self.group, topic, partition, error = %e,
                    "embedded bus lease release failed; it will expire")
            }
        }
    }

    fn pop_buffered(&mut self) -> Option<ReceivedMessage> {
        let n = self.held.len();
        for k in 0..n {
            let i = (self.turn + k) % n;
            let held = &mut self.held[i];
            if let Some(message) = held.buffer.pop_front() {
                held.position = message.offset + 1;
                self.turn = (i + 1) % n;
                return Some(message);
            }
        }
        None
    }

    /// Reads more messages for held partitions with an empty buffer and something new; true when
    /// any arrived. Which partitions have something new comes from the database (one query per
    /// topic) when `look` is set or the partition's end is not known here, else from the ends
    /// this process knows ([`Shared::ends`]).
    async fn fill_buffers(&mut self, look: bool) -> Result<bool, BusError> {
        let mut any = false;
        let mut read: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
        if look {
            self.last_look = Some(Instant::now());
        }
        for held in &mut self.held {
            if !held.buffer.is_empty() {
                continue;
            }
            let known = match look {
                true => None,
                false => self.shared.ends().get(&held.topic, held.partition),
            };
            let end = match known {
                Some(end) => end,
                None => {
                    if !read.contains_key(&held.topic) {
                        let topic_ends =
                            store::partition_ends(&self.shared.pool, &held.topic).await?;
                        let mut ends = self.shared.ends();
                        for (partition, end) in &topic_ends {
                            ends.raise(&held.topic, *partition, *end);
                        }
                        drop(ends);
                        read.insert(held.topic.clone(), topic_ends);
                    }
                    read.get(&held.topic)
                        .and_then(|e| e.iter().find(|(p, _)| *p == held.partition))
                        .map_or(0, |(_, end)| *end)
                }
            };
            if end <= held.position {
                continue;
            }
            let messages = store::fetch(
                &self.shared.pool,
                &held.topic,
                held.partition,
                held.position,
                FETCH,
            )
            .await?;
            any |= !messages.is_empty();
            held.buffer.extend(messages);
        }
        Ok(any)
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    /// Cancel-safe: a message leaves the buffer only in the synchronous step that returns it.
    /// Every poll interval it also rebalances, so a member that keeps receiving still hands
    /// partitions over to members that joined.
    async fn next(&mut self) -> Result<ReceivedMessage, BusError> {
        let poll = self.shared.options.poll_interval;
        loop {
            let shared = self.shared.clone();
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            if self.last_rebalance.is_none_or(|at| at.elapsed() >= poll) {
                self.rebalance().await?;
            }
            self.drop_lost_leases();
            if let Some(message) = self.pop_buffered() {
                return Ok(message);
            }
            let look = self.last_look.is_none_or(|at| at.elapsed() >= poll);
            if self.fill_buffers(look).await? {
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Stores `offset + 1` for the group on the message's partition. A member that no longer holds
    /// the partition does not overwrite its new holder's progress: the commit is refused with
    /// [`BusError::NotOwned`], and the new holder delivers the message again.
    async fn commit(&mut self, message: &ReceivedMessage) -> Result<(), BusError> {
        let not_owned = || {
            BusError::NotOwned(format!(
                "not committed: partition {} of {:?} was handed to another member since offset {} was delivered; it will be delivered again",
                message.partition, message.topic, message.offset
            ))
        };
        if !self.holds(&message.topic, message.partition) {
            return Err(not_owned());
        }
        let (reply, answer) = oneshot::channel();
        let commit = write::OffsetCommit {
            group: self.group.clone(),
            topic: message.topic.clone(),
            partition: message.partition,
            holder: self.member.clone(),
            next: message.offset + 1,
        };
        let stored = writer::submit(
            &self.writer,
            writer::Pending::Commit { commit, reply },
            answer,
        )
        .await?;
        if stored {
            Ok(())
        } else {
            Err(not_owned())
        }
    }

    /// Every partition whose lease this member holds, in (topic, partition) order.
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError> {
        self.drop_lost_leases();
        let pool = &self.shared.pool;
        let mut lags = Vec::with_capacity(self.held.len());
        for held in &self.held {
            let end = store::end_offset(pool, &held.topic, held.partition).await?;
            lags.push(PartitionLag {
                topic: held.topic.clone(),
                partition: held.partition,
                committed: store::committed(pool, &self.group, &held.topic, held.partition).await?,
                start: store::start_offset(pool, &held.topic, held.partition)
                    .await?
                    .unwrap_or(end),
                end,
            });
        }
        Ok(lags)
    }
}

/// Every third of the lease lifetime, renews this member's announcements and leases; leaves the
/// group (leases and announcements deleted) when told to stop, or when the consumer, holding the
/// other end, is dropped.
async fn heartbeat(
    shared: Arc<Shared>,
    writer: mpsc::Sender<writer::Pending>,
    group: String,
    member: String,
    topics: Vec<String>,
    leases: Leases,
    mut stop: oneshot::Receiver<()>,
) {
    let expiry = shared.options.lease_expiry;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(expiry / 3) => {}
        }
        let announce = GroupWrite::Announce {
            group: group.clone(),
            topics: topics.clone(),
            member: member.clone(),
            expiry,
        };
        if let Err(e) = writer::change_group(&writer, announce).await {
            tracing::warn!(error = %e, "embedded bus group announcement failed");
        }
        let held: Vec<(String, i32)> = leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for key in held {
            let (topic, partition) = (&key.0, key.1);
            let started = Instant::now();
            let lease = LeaseKey {
                group: group.clone(),
                topic: topic.clone(),
                partition,
                holder: member.clone(),
            };
            match writer::change_group(&writer, GroupWrite::Renew { lease, expiry }).await {
                Ok(true) => {
                    if let Some(until) = leases
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(&key)
                    {
                        *until = started + expiry;
                    }
                }
                Ok(false) => {
                    // Absent from the map when the consumer handed it over meanwhile.
                    let lost = leases
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key)
                        .is_some();
                    if lost {
                        tracing::warn!(topic = %topic, partition, "embedded bus lease taken over by another member");
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, partition, error = %e, "embedded bus lease renewal failed")
                }
            }
        }
    }
    if let Err(e) = writer::change_group(&writer, GroupWrite::Leave { group, member }).await {
        tracing::warn!(error = %e, "embedded bus lease release failed; the leases will expire");
    }
    shared.notify.notify_waiters();
}
