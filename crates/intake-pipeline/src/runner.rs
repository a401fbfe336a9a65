//! The consumer loop (spec pipeline.md §4): bounded workers, at most `max_in_flight` fetched and
//! uncommitted (fetching pauses beyond), offsets committed in order per partition once every
//! earlier message has ended, graceful drain on cancellation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use intake_bus::{Consumer, ReceivedMessage, StartFrom, Subscription};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::PipelineError;
use crate::flow::{Ended, Shared};

/// Per partition: offsets in flight, `Some` once ended (and committable).
#[derive(Default)]
pub struct CommitTracker {
    partitions: HashMap<(String, i32), BTreeMap<i64, Option<ReceivedMessage>>>,
}

impl CommitTracker {
    pub fn start(&mut self, msg: &ReceivedMessage) {
        self.partitions
            .entry((msg.topic.clone(), msg.partition))
            .or_default()
            .insert(msg.offset, None);
    }

    /// Marks `msg` ended; returns the message to commit, if the partition's prefix advanced.
    pub fn finish(&mut self, msg: ReceivedMessage) -> Option<ReceivedMessage> {
        let part = self
            .partitions
            .get_mut(&(msg.topic.clone(), msg.partition))?;
        part.insert(msg.offset, Some(msg));
        let mut last = None;
        while let Some(entry) = part.first_entry() {
            if entry.get().is_none() {
                break;
            }
            last = entry.remove();
        }
        last
    }

    /// Forgets a message that will not be committed (cancelled); later ones stay uncommitted too.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(BTreeMap::len).sum()
    }
}

/// Runs the consumer loop until `cancel` fires, then drains for `grace`.
#[allow(
    clippy::disallowed_methods,
    reason = "a spawn site older than the ban (listed in clippy.toml); to move to a named, tracked spawn"
)]
pub async fn consume(
    shared: Arc<Shared>,
    mut consumer: Box<dyn Consumer>,
    cancel: CancellationToken,
    grace: Duration,
) -> Result<(), PipelineError> {
    let c = &shared.config.consumer;
    let workers = Arc::new(Semaphore::new(c.workers));
    let (done_tx, mut done_rx) = mpsc::channel::<(ReceivedMessage, Ended)>(c.max_in_flight.max(1));
    let work_cancel = CancellationToken::new();
    let mut tracker = CommitTracker::default();
    let mut owed = OwedCommits::default();
    let mut retry = tokio::time::interval(COMMIT_RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = crate::metrics::get();
    let mut lag_every = tokio::time::interval(intake_bus::lag::READ_EVERY);
    lag_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let room = tracker.in_flight() < c.max_in_flight;
        tokio::select! {
            biased;
            _ = lag_every.tick() => intake_bus::lag::read(consumer.as_mut(), |topic, partition, lag| {
                crate::metrics::get().consumer_lag.with_label_values(&[topic, partition]).set(lag);
            })
            .await,
            Some((msg, ended)) = done_rx.recv() => {
                // What else ended meanwhile shares the commit: one per partition, not per message.
                let mut ready = vec![(msg, ended)];
                while let Ok(more) = done_rx.try_recv() {
                    ready.push(more);
                }
                settle(&mut tracker, &mut owed, consumer.as_mut(), ready).await;
            }
            _ = cancel.cancelled() => break,
            _ = retry.tick(), if !owed.is_empty() => owed.retry(consumer.as_mut()).await,
            next = consumer.next(), if room => {
                let msg = match next {
                    Ok(m) => m,
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "fetch failed, retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                tracker.start(&msg);
                metrics.in_flight.set(tracker.in_flight() as i64);
                let permit = workers.clone().acquire_owned().await.map_err(|e| PipelineError::Setup(e.to_string()))?;
                let shared = shared.clone();
                let tx = done_tx.clone();
                let token = work_cancel.clone();
                tokio::spawn(async move {
                    let ended = shared.handle(&msg, &token).await;
                    drop(permit);
                    let mut slim = msg;
                    slim.value = Vec::new();
                    let _ = tx.send((slim, ended)).await;
                });
            }
        }
    }
    // Drain: in-flight messages get `grace`, then are cancelled and left uncommitted.
    drop(done_tx);
    let drain = async {
        while tracker.in_flight() > 0 {
            match done_rx.recv().await {
                Some(ended) => {
                    settle(&mut tracker, &mut owed, consumer.as_mut(), vec![ended]).await
                }
                None => break,
            }
        }
        Ok::<_, PipelineError>(())
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("shutdown grace passed; cancelling in-flight messages");
        work_cancel.cancel();
    }
    // One last try for commits the bus refused; what still fails is delivered again after restart.
    owed.retry(consumer.as_mut()).await;
    metrics.in_flight.set(0);
    Ok(())
}

/// Books messages that ended and commits each partition's newest finished prefix once.
async fn settle(
    tracker: &mut CommitTracker,
    owed: &mut OwedCommits,
    consumer: &mut dyn Consumer,
    ended: Vec<(ReceivedMessage, Ended)>,
) {
    let mut commits: HashMap<(String, i32), ReceivedMessage> = HashMap::new();
    for (msg, ended) in ended {
        if ended == Ended::Cancelled {
            continue;
        }
        if let Some(commit) = tracker.finish(msg) {
            commits.insert((commit.topic.clone(), commit.partition), commit);
        }
    }
    for commit in commits.into_values() {
        owed.commit(consumer, commit).await;
    }
    crate::metrics::get()
        .in_flight
        .set(tracker.in_flight() as i64);
}

/// How often commits the bus refused are tried again.
const COMMIT_RETRY_EVERY: Duration = Duration::from_secs(1);

/// Per partition, the newest finished message whose commit the bus refused (a broker outage, a
/// commit timeout). A refused commit never stops the pipeline: it is tried again every
/// [`COMMIT_RETRY_EVERY`] and by the partition's next commit, which covers it; until then a restart
/// delivers those messages again (at-least-once).
#[derive(Default)]
struct OwedCommits {
    partitions: HashMap<(String, i32), ReceivedMessage>,
}

impl OwedCommits {
    fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    async fn commit(&mut self, consumer: &mut dyn Consumer, msg: ReceivedMessage) {
        let key = (msg.topic.clone(), msg.partition);
        match consumer.commit(&msg).await {
            Ok(()) => {
                if self
                    .partitions
                    .get(&key)
                    .is_some_and(|o| o.offset <= msg.offset)
                {
                    self.partitions.remove(&key);
                }
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(topic = %msg.topic, partition = msg.partition, offset = msg.offset, error = %e,
                    "commit refused; trying again while the pipeline goes on");
                self.partitions.insert(key, msg);
            }
            Err(e) => {
                tracing::warn!(topic = %msg.topic, partition = msg.partition, offset = msg.offset, error = %e,
                    "commit refused for good; the message will be delivered again");
            }
        }
    }

    async fn retry(&mut self, consumer: &mut dyn Consumer) {
        for (_, msg) in std::mem::take(&mut self.partitions) {
            self.commit(consumer, msg).await;
        }
    }
}

/// The subscription of the consumer section (wire names).
pub fn subscription(shared: &Shared, topic: impl Fn(&str) -> String) -> Subscription {
    Subscription {
        group: shared.config.consumer.group_id.clone(),
        topics: shared
            .config
            .consumer
            .topics
            .iter()
            .map(|t| topic(t))
            .collect(),
        start: StartFrom::Earliest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(partition: i32, offset: i64) -> ReceivedMessage {
        ReceivedMessage {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            headers: vec![],
            value: vec![],
            timestamp_ms: None,
        }
    }

    #[test]
    fn commits_follow_the_finished_prefix() {
        let mut t = CommitTracker::default();
        for o in 0..3 {
            t.start(&msg(0, o));
        }
        t.start(&msg(1, 7));
        assert_eq!(t.finish(msg(0, 1)), None);
        assert_eq!(t.finish(msg(1, 7)).map(|m| m.offset), Some(7));
        assert_eq!(t.finish(msg(0, 0)).map(|m| m.offset), Some(1));
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.finish(msg(0, 2)).map(|m| m.offset), Some(2));
        assert_eq!(t.in_flight(), 0);
    }
}
