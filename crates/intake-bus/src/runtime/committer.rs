//! The commit policy: one commit per partition for what finished together; a commit the bus refuses
//! for now (an outage, a timeout) is owed and tried again with the retry policy while consumption
//! goes on (the partition's next commit covers it too); a commit refused because the partition went
//! to another member is dropped at once, never retried.

use std::collections::HashMap;

use tokio::time::Instant;

use super::inflight::PartitionId;
use crate::retry::Backoff;
use crate::{Consumer, ErrorKind, ReceivedMessage};

/// What became of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Committed {
    Yes,
    /// Refused for now; owed and tried again.
    Owed,
    /// The partition is no longer this member's: forget it.
    Revoked,
    /// Refused for good (not retried); the messages are delivered again after a restart.
    Refused,
}

/// Commits owed per partition.
#[derive(Debug, Default)]
pub(crate) struct Committer {
    owed: HashMap<PartitionId, ReceivedMessage>,
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl Committer {
    /// When owed commits are tried again, if any are owed.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.owed.is_empty())
    }

    /// Commits `message` (the last finished one of its partition).
    pub(crate) async fn commit(
        &mut self,
        consumer: &mut dyn Consumer,
        name: &str,
        message: ReceivedMessage,
    ) -> Committed {
        let id = (message.topic.clone(), message.partition);
        match consumer.commit(&message).await {
            Ok(()) => {
                if self
                    .owed
                    .get(&id)
                    .is_some_and(|o| o.offset <= message.offset)
                {
                    self.owed.remove(&id);
                }
                if self.owed.is_empty() {
                    self.backoff.reset();
                    self.retry_at = None;
                }
                Committed::Yes
            }
            Err(e) if e.kind() == ErrorKind::NotOwned => {
                tracing::info!(consumer = name, topic = %message.topic, partition = message.partition, offset = message.offset, why = %e,
                    "partition reassigned; not committing (its next holder receives these messages)");
                self.owed.remove(&id);
                Committed::Revoked
            }
            Err(e) if e.is_transient() => {
                let delay = self.backoff.next_delay();
                tracing::warn!(consumer = name, topic = %message.topic, partition = message.partition, offset = message.offset, error = %e, retry_in = ?delay,
                    "commit refused; trying again while consumption goes on");
                if self
                    .owed
                    .get(&id)
                    .is_none_or(|o| o.offset <= message.offset)
                {
                    self.owed.insert(id, message);
                }
                self.retry_at = Some(Instant::now() + delay);
                Committed::Owed
            }
            Err(e) => {
                tracing::warn!(consumer = name, topic = %message.topic, partition = message.partition, offset = message.offset, error = %e,
                    "commit refused for good; these messages are delivered again after a restart");
                Committed::Refused
            }
        }
    }

    /// Tries every owed commit again; returns the partitions found revoked.
    pub(crate) async fn retry(
        &mut self,
        consumer: &mut dyn Consumer,
        name: &str,
    ) -> Vec<PartitionId> {
        let mut revoked = Vec::new();
        for (id, message) in std::mem::take(&mut self.owed) {
            if self.commit(consumer, name, message).await == Committed::Revoked {
                revoked.push(id);
            }
        }
        revoked
    }
}
