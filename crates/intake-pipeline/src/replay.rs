//! `intake pipeline replay` (spec pipeline.md §11): dead letters matching a reason/class/time
//! filter are produced again to their source topic, without the dead-letter headers and with
//! `intake-replay-count` incremented. Nothing is committed.
//!
//! A replay reads each partition of the dead-letter topic up to the end it had when the replay
//! first saw it, so dead letters made while it runs (a replayed record failing again) wait for the
//! next replay instead of feeding this one forever.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use intake_bus::{Bus, Header, OutgoingMessage, ReceivedMessage, StartFrom, Subscription};

use crate::dead_letter::is_dead_letter_header;
use crate::error::PipelineError;

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub reason: Option<String>,
    pub class: Option<String>,
    /// Only records dead-lettered at or after this time (RFC3339).
    pub since: Option<String>,
    pub limit: Option<usize>,
    pub dry_run: bool,
    /// How long without a new record ends the replay when the topic's ends are not known yet
    /// (an empty topic whose partitions were never assigned) or a partition stops short of its
    /// end (default 2 s).
    pub idle: Option<Duration>,
}

/// One dead letter replayed (or listed, with `dry_run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub source_topic: String,
    pub reason: String,
    pub class: String,
    pub request_id: Option<String>,
    pub offset: i64,
}

/// The replayed form of a dead letter; `None` when it has no source topic.
pub fn replay_message(dl: &ReceivedMessage) -> Option<OutgoingMessage> {
    let topic = dl
        .header_str("intake-source-topic")
        .or_else(|| dl.header_str("dlq_source_topic"))?
        .to_owned();
    let count: u64 = dl
        .header_str("intake-replay-count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers: Vec<Header> = dl
        .headers
        .iter()
        .filter(|h| {
            !is_dead_letter_header(&h.name) && !h.name.eq_ignore_ascii_case("intake-replay-count")
        })
        .cloned()
        .collect();
    headers.push(Header {
        name: "intake-replay-count".into(),
        value: (count + 1).to_string().into_bytes(),
    });
    Some(OutgoingMessage {
        topic,
        key: dl.key.clone(),
        headers,
        value: dl.value.clone(),
    })
}

/// Replays the dead letters of `dlq_topic` (a wire name) on the same bus.
pub async fn replay(
    bus: Arc<dyn Bus>,
    dlq_topic: &str,
    options: &ReplayOptions,
) -> Result<Vec<Replayed>, PipelineError> {
    replay_between(bus.clone(), bus, dlq_topic, options).await
}

/// Replays the dead letters of `dlq_topic`, read from `from`, onto `to`.
pub async fn replay_between(
    from: Arc<dyn Bus>,
    to: Arc<dyn Bus>,
    dlq_topic: &str,
    options: &ReplayOptions,
) -> Result<Vec<Replayed>, PipelineError> {
    let group = format!("intake-pipeline-replay-{}", uuid::Uuid::new_v4().simple());
    let mut consumer = from
        .subscribe(Subscription {
            group,
            topics: vec![dlq_topic.to_owned()],
            start: StartFrom::Earliest,
        })
        .await?;
    let since = options
        .since
        .as_deref()
        .and_then(intake_core::time::parse_rfc3339);
    let idle = options.idle.unwrap_or(Duration::from_secs(2));
    let mut reading = Reading::default();
    let mut out = Vec::new();
    while options.limit.is_none_or(|l| out.len() < l) {
        if reading.ends.is_none() {
            reading.learn_ends(consumer.lag().await?);
        }
        if reading.done() {
            break;
        }
        let dl = match tokio::time::timeout(idle, consumer.next()).await {
            Err(_) => {
                if reading.ends.is_none() {
                    // Joining may have happened while waiting (Kafka assigns on the first poll).
                    reading.learn_ends(consumer.lag().await?);
                    if reading.done() {
                        break;
                    }
                }
                tracing::info!("no dead letter for {idle:?}; the replay ends here");
                break;
            }
            Ok(r) => r?,
        };
        if !reading.take(&dl) {
            continue;
        }
        let reason = dl
            .header_str("intake-error-reason")
            .or_else(|| dl.header_str("dlq_reason"))
            .unwrap_or_default()
            .to_owned();
        let class = dl
            .header_str("intake-error-class")
            .unwrap_or_default()
            .to_owned();
        if options.reason.as_ref().is_some_and(|r| *r != reason)
            || options.class.as_ref().is_some_and(|c| *c != class)
        {
            continue;
        }
        if let Some(since) = since {
            let at = dl
                .header_str("intake-error-time")
                .and_then(intake_core::time::parse_rfc3339);
            if at.is_some_and(|t| t < since) {
                continue;
            }
        }
        let Some(message) = replay_message(&dl) else {
            tracing::warn!(
                offset = dl.offset,
                "dead letter without a source topic, skipped"
            );
            continue;
        };
        let item = Replayed {
            source_topic: message.topic.clone(),
            reason,
            class,
            request_id: dl.header_str("request_id").map(str::to_owned),
            offset: dl.offset,
        };
        if !options.dry_run {
            to.publish(message).await?;
        }
        out.push(item);
    }
    Ok(out)
}

/// How far a replay has read each partition, against the ends it will stop at.
#[derive(Debug, Default)]
struct Reading {
    /// Per (topic, partition): the end seen when the replay first held it; `None` until known.
    ends: Option<HashMap<(String, i32), i64>>,
    /// Per (topic, partition): the next offset to read.
    next: HashMap<(String, i32), i64>,
}

impl Reading {
    /// Fixes the ends once the consumer holds partitions (an empty list teaches nothing).
    fn learn_ends(&mut self, held: Vec<intake_bus::PartitionLag>) {
        if held.is_empty() {
            return;
        }
        let mut ends = HashMap::new();
        for p in held {
            let key = (p.topic, p.partition);
            self.next.entry(key.clone()).or_insert(p.start);
            ends.insert(key, p.end);
        }
        self.ends = Some(ends);
    }

    /// Every partition read to its end.
    fn done(&self) -> bool {
        self.ends.as_ref().is_some_and(|ends| {
            ends.iter()
                .all(|(key, end)| self.next.get(key).is_some_and(|n| n >= end))
        })
    }

    /// Records `dl` as read; false when it lies past its partition's end (made during the replay).
    fn take(&mut self, dl: &ReceivedMessage) -> bool {
        let key = (dl.topic.clone(), dl.partition);
        let next = self.next.entry(key.clone()).or_insert(dl.offset + 1);
        *next = (*next).max(dl.offset + 1);
        match self.ends.as_ref().and_then(|ends| ends.get(&key)) {
            Some(end) => dl.offset < *end,
            None => true,
        }
    }
}
