//! A Kafka client of the test's own (rdkafka directly): reads a topic from its beginning in a fresh
//! consumer group, and produces validation replies as a validator would.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;

use super::engines::unique;

/// One message as read off the wire.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub value: Value,
}

/// Reads one topic from its earliest offset, in a consumer group nobody else uses.
pub struct Reader {
    consumer: StreamConsumer,
    topic: String,
}

impl Reader {
    pub fn new(brokers: &str, topic: &str) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique("test-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Self {
            consumer,
            topic: topic.to_owned(),
        }
    }

    /// The next message, or `None` once `timeout` has passed without one.
    pub async fn next(&self, timeout: Duration) -> Option<Record> {
        let received = tokio::time::timeout(timeout, self.consumer.recv()).await;
        let message = match received {
            Err(_) => return None,
            Ok(Err(e)) => panic!("reading {}: {e}", self.topic),
            Ok(Ok(m)) => m,
        };
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let value = h.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                        (h.key.to_owned(), value.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let value = message
            .payload()
            .map(|p| serde_json::from_slice(p).expect("every message is one JSON object"))
            .unwrap_or(Value::Null);
        Some(Record {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8(k.to_vec()).unwrap()),
            headers,
            value,
        })
    }

    /// The first message `wanted` accepts, failing the test after `timeout`.
    pub async fn find(
        &self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&Record) -> bool,
    ) -> Record {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(r) if wanted(&r) => return r,
                Some(_) => continue,
                None => panic!(
                    "timed out after {timeout:?} waiting for {what} on {}",
                    self.topic
                ),
            }
        }
    }

    /// Every message until `done` says the collection is complete, failing after `timeout`.
    pub async fn collect(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Record]) -> bool,
    ) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while !done(&seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(r) => seen.push(r),
                None => panic!(
                    "timed out after {timeout:?} waiting for {what} on {} ({} messages seen)",
                    self.topic,
                    seen.len()
                ),
            }
        }
        seen
    }

    /// Whatever arrives until `quiet` passes with nothing new: the tail end of a topic.
    pub async fn drain(&self, quiet: Duration) -> Vec<Record> {
        let mut seen = Vec::new();
        while let Some(r) = self.next(quiet).await {
            seen.push(r);
        }
        seen
    }
}

/// An idempotent producer with acks=all, as validators are asked to use.
pub struct Writer {
    producer: FutureProducer,
}

impl Writer {
    pub fn new(brokers: &str) -> Self {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            // One record per batch: tansu 0.6.0 returns nothing to a fetch that starts inside a
            // batch, so a consumer resuming from a committed offset mid-batch would wait forever.
            .set("batch.num.messages", "1")
            .create()
            .unwrap();
        Self { producer }
    }

    /// Produces `value` with `key` (and `headers`) and waits for the acknowledgement.
    pub async fn send(&self, topic: &str, key: &str, value: &Value, headers: &[(&str, &str)]) {
        let body = serde_json::to_vec(value).unwrap();
        let mut owned = OwnedHeaders::new();
        for (name, v) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(v.as_bytes()),
            });
        }
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(&body)
            .headers(owned);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("producing to {topic}: {e}"));
    }
}

/// Whether a broker at `brokers` answers a metadata request within a second.
pub async fn answers(brokers: &str) -> bool {
    let client: Result<rdkafka::consumer::BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("reconnect.backoff.max.ms", "200")
        .create();
    let Ok(client) = client else {
        return false;
    };
    tokio::task::spawn_blocking(move || client.fetch_metadata(None, Duration::from_secs(1)).is_ok())
        .await
        .unwrap_or(false)
}

/// Every topic in the cluster's metadata (empty when the broker does not answer).
pub async fn topics(brokers: &str) -> Vec<String> {
    let client: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        client
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.topics().iter().map(|t| t.name().to_owned()).collect())
            .unwrap_or_default()
    })
    .await
    .unwrap()
}
