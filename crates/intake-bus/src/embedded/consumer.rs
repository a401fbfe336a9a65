//! A member of a consumer group on the embedded bus. It reads a topic only while it holds the
//! group's lease on that topic; a heartbeat task renews the leases and, when the consumer is dropped,
//! releases them at once so a waiting member takes over from the committed offset.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{store, writer, Shared};
use crate::{BusError, Consumer, PartitionLag, ReceivedMessage, StartFrom, Subscription};

/// Messages read from the database in one query.
const FETCH: i64 = 256;

/// Topics this member holds, each with the instant its lease stops being safe to use.
type Leases = Arc<Mutex<HashMap<String, Instant>>>;

struct TopicState {
    name: String,
    /// The next offset to deliver; `Some` only while the lease is held.
    position: Option<i64>,
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
    /// Where the round-robin over topics resumes.
    turn: usize,
    leases: Leases,
    last_attempt: Option<Instant>,
    /// Dropping it makes the heartbeat task release the leases and stop.
    _heartbeat_stop: oneshot::Sender<()>,
}

impl EmbeddedConsumer {
    /// Joins the group: tries to take the leases at once (so `Latest` means "from now"), then
    /// starts the heartbeat.
    #[allow(
        clippy::disallowed_methods,
        reason = "a spawn site older than the ban (listed in clippy.toml); to move to a named, tracked spawn"
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
        let leases: Leases = Arc::default();
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("bus.embedded.heartbeat", group = %subscription.group, member = %member);
        tokio::spawn(
            heartbeat(
                shared.clone(),
                subscription.group.clone(),
                member.clone(),
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
            topics: names
                .into_iter()
                .map(|name| TopicState {
                    name,
                    position: None,
                    buffer: VecDeque::new(),
                })
                .collect(),
            turn: 0,
            leases,
            last_attempt: None,
            _heartbeat_stop: stop,
        };
        consumer.acquire_free_topics().await?;
        Ok(consumer)
    }

    /// Forgets the position of every topic whose lease was lost or ran out.
    fn drop_lost_leases(&mut self) {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        for topic in &mut self.topics {
            if topic.position.is_none() {
                continue;
            }
            let valid = leases.get(&topic.name).is_some_and(|until| *until > now);
            if !valid {
                tracing::warn!(group = %self.group, topic = %topic.name, "embedded bus lease lost; another member may take over");
                leases.remove(&topic.name);
                topic.position = None;
                topic.buffer.clear();
            }
        }
    }

    /// Tries to take the lease of every topic this member does not hold yet.
    async fn acquire_free_topics(&mut self) -> Result<(), BusError> {
        self.last_attempt = Some(Instant::now());
        let pool = &self.shared.pool;
        let expiry = self.shared.options.lease_expiry;
        for i in 0..self.topics.len() {
            if self.topics[i].position.is_some() {
                continue;
            }
            let name = self.topics[i].name.clone();
            let started = Instant::now();
            if !store::acquire_lease(pool, &self.group, &name, &self.member, expiry).await? {
                continue;
            }
            let position = match store::committed(pool, &self.group, &name).await? {
                Some(committed) => committed,
                None => match self.start {
                    StartFrom::Earliest => 0,
                    StartFrom::Latest => store::end_offset(pool, &name).await?,
                },
            };
            tracing::debug!(group = %self.group, topic = %name, position, "embedded bus lease taken");
            self.leases
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name, started + expiry);
            self.topics[i].position = Some(position);
        }
        Ok(())
    }

    fn pop_buffered(&mut self) -> Option<ReceivedMessage> {
        let n = self.topics.len();
        for k in 0..n {
            let i = (self.turn + k) % n;
            let topic = &mut self.topics[i];
            if let Some(message) = topic.buffer.pop_front() {
                topic.position = Some(message.offset + 1);
                self.turn = (i + 1) % n;
                return Some(message);
            }
        }
        None
    }

    /// Reads more messages for held topics with an empty buffer; true when any arrived.
    async fn fill_buffers(&mut self) -> Result<bool, BusError> {
        let mut any = false;
        for topic in &mut self.topics {
            let Some(from) = topic.position else { continue };
            if !topic.buffer.is_empty() {
                continue;
            }
            let messages = store::fetch(&self.shared.pool, &topic.name, from, FETCH).await?;
            any |= !messages.is_empty();
            topic.buffer.extend(messages);
        }
        Ok(any)
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    /// Cancel-safe: a message leaves the buffer only in the synchronous step that returns it.
    async fn next(&mut self) -> Result<ReceivedMessage, BusError> {
        let poll = self.shared.options.poll_interval;
        loop {
            let shared = self.shared.clone();
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            self.drop_lost_leases();
            if let Some(message) = self.pop_buffered() {
                return Ok(message);
            }
            let waiting = self.topics.iter().any(|t| t.position.is_none());
            if waiting && self.last_attempt.is_none_or(|at| at.elapsed() >= poll) {
                self.acquire_free_topics().await?;
            }
            if self.fill_buffers().await? {
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Stores `offset + 1` for the group. A member that has lost its lease does not overwrite the
    /// new holder's progress: its commit is ignored (logged) and the new holder redelivers.
    async fn commit(&mut self, message: &ReceivedMessage) -> Result<(), BusError> {
        let (reply, answer) = oneshot::channel();
        let commit = store::OffsetCommit {
            group: self.group.clone(),
            topic: message.topic.clone(),
            holder: self.member.clone(),
            next: message.offset + 1,
        };
        let stored = writer::submit(
            &self.writer,
            writer::Pending::Commit { commit, reply },
            answer,
        )
        .await?;
        if !stored {
            tracing::warn!(
                group = %self.group, topic = %message.topic, offset = message.offset,
                "commit ignored: this member no longer holds the topic's lease"
            );
        }
        Ok(())
    }

    /// The topics whose lease this member holds, one partition each.
    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError> {
        self.drop_lost_leases();
        let pool = &self.shared.pool;
        let mut held = Vec::new();
        for topic in self.topics.iter().filter(|t| t.position.is_some()) {
            let end = store::end_offset(pool, &topic.name).await?;
            held.push(PartitionLag {
                topic: topic.name.clone(),
                partition: 0,
                committed: store::committed(pool, &self.group, &topic.name).await?,
                start: store::start_offset(pool, &topic.name).await?.unwrap_or(end),
                end,
            });
        }
        Ok(held)
    }
}

/// Renews this member's leases every third of their lifetime; releases them when told to stop (or
/// when the consumer, holding the other end, is dropped).
async fn heartbeat(
    shared: Arc<Shared>,
    group: String,
    member: String,
    leases: Leases,
    mut stop: oneshot::Receiver<()>,
) {
    let expiry = shared.options.lease_expiry;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(expiry / 3) => {}
        }
        let held: Vec<String> = leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for topic in held {
            let started = Instant::now();
            match store::renew_lease(&shared.pool, &group, &topic, &member, expiry).await {
                Ok(true) => {
                    if let Some(until) = leases
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(&topic)
                    {
                        *until = started + expiry;
                    }
                }
                Ok(false) => {
                    tracing::warn!(topic = %topic, "embedded bus lease taken over by another member");
                    leases
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&topic);
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, error = %e, "embedded bus lease renewal failed")
                }
            }
        }
    }
    if let Err(e) = store::release_leases(&shared.pool, &group, &member).await {
        tracing::warn!(error = %e, "embedded bus lease release failed; the leases will expire");
    }
    shared.notify.notify_waiters();
}
