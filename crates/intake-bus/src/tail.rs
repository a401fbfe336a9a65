//! Reading a topic for a person (`intake topics tail`), on every driver. [`tail()`] joins a fresh,
//! unique consumer group (`intake-tail-<uuid>`) that never commits, so it disturbs no other group,
//! and hands each message on as a [`TailRecord`], printed as one JSON line:
//!
//! ```json
//! {"topic":"platform.upload.advisor","partition":0,"offset":7,"key":"web01",
//!  "headers":{"service":"advisor","request_id":"2439a2974ff44273afcd8b1d18077bf1"},
//!  "value":{"request_id":"2439a2974ff44273afcd8b1d18077bf1","service":"advisor"}}
//! ```
//!
//! `key` is the key as text (lossy UTF-8) or `null`; `headers` maps each name to its value as text
//! (lossy UTF-8; a repeated name shows its last value); `value` is the parsed JSON when the value is
//! JSON, else the value as a string (lossy UTF-8).

use serde::Serialize;

use crate::{Bus, BusError, ReceivedMessage, StartFrom, Subscription};

/// One message as `tail` shows it; [`TailRecord::to_json_line`] gives the line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TailRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub value: serde_json::Value,
}

impl TailRecord {
    pub fn from_message(message: &ReceivedMessage) -> Self {
        let headers = message
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    serde_json::Value::String(String::from_utf8_lossy(&h.value).into_owned()),
                )
            })
            .collect();
        let value = serde_json::from_slice(&message.value).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&message.value).into_owned())
        });
        Self {
            topic: message.topic.clone(),
            partition: message.partition,
            offset: message.offset,
            key: message
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            value,
        }
    }

    /// The record as one line of JSON, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing strings, numbers and parsed JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Reads `topic` in a fresh group that never commits: from the oldest retained message when
/// `from_beginning`, else only what is published from now on. Calls `out` for each message and
/// returns after `count` messages (runs until cancelled when `count` is `None`; drop the future to
/// stop). Returns how many were passed on.
pub async fn tail(
    bus: &dyn Bus,
    topic: &str,
    from_beginning: bool,
    count: Option<usize>,
    out: impl FnMut(TailRecord),
) -> Result<usize, BusError> {
    read(bus, topic, from_beginning, count, false, out).await
}

/// [`tail`] that also returns once it has read up to the end of every partition of `topic` (kcat's
/// `-e`): what was published before it caught up is passed on, later messages may be too.
pub async fn tail_until_end(
    bus: &dyn Bus,
    topic: &str,
    from_beginning: bool,
    count: Option<usize>,
    out: impl FnMut(TailRecord),
) -> Result<usize, BusError> {
    read(bus, topic, from_beginning, count, true, out).await
}

/// How long a read waits before looking at the partitions' ends again (on Kafka the group is only
/// joined, and the ends known, once reading started).
const END_CHECK: std::time::Duration = std::time::Duration::from_millis(300);

async fn read(
    bus: &dyn Bus,
    topic: &str,
    from_beginning: bool,
    count: Option<usize>,
    until_end: bool,
    mut out: impl FnMut(TailRecord),
) -> Result<usize, BusError> {
    if count == Some(0) {
        return Ok(0);
    }
    let subscription = Subscription {
        group: format!("intake-tail-{}", uuid::Uuid::new_v4().simple()),
        topics: vec![topic.to_owned()],
        start: if from_beginning {
            StartFrom::Earliest
        } else {
            StartFrom::Latest
        },
    };
    let mut consumer = bus.subscribe(subscription).await?;
    let mut seen = 0;
    // Per partition: the next offset to read, once known.
    let mut next: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    loop {
        let message = if until_end {
            let partitions = consumer.lag().await?;
            let caught_up = !partitions.is_empty()
                && partitions.iter().all(|p| {
                    let from = *next.entry(p.partition).or_insert(if from_beginning {
                        p.start
                    } else {
                        p.end
                    });
                    from.max(p.start) >= p.end
                });
            if caught_up {
                return Ok(seen);
            }
            match tokio::time::timeout(END_CHECK, consumer.next()).await {
                Ok(message) => message?,
                Err(_) => continue,
            }
        } else {
            consumer.next().await?
        };
        next.insert(message.partition, message.offset + 1);
        out(TailRecord::from_message(&message));
        seen += 1;
        if count.is_some_and(|n| seen >= n) {
            return Ok(seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Header;

    fn message(value: &[u8]) -> ReceivedMessage {
        ReceivedMessage {
            topic: "t".into(),
            partition: 1,
            offset: 42,
            key: Some(b"k\xff".to_vec()),
            headers: vec![
                Header {
                    name: "service".into(),
                    value: b"advisor".to_vec(),
                },
                Header {
                    name: "Bin".into(),
                    value: vec![0x41, 0xff],
                },
            ],
            value: value.to_vec(),
            timestamp_ms: Some(1),
        }
    }

    #[test]
    fn json_values_are_embedded_and_others_become_strings() {
        let line = TailRecord::from_message(&message(br#"{"b":1,"a":[true]}"#)).to_json_line();
        assert_eq!(
            line,
            r#"{"topic":"t","partition":1,"offset":42,"key":"k\ufffd","headers":{"service":"advisor","Bin":"A\ufffd"},"value":{"b":1,"a":[true]}}"#
                .replace("\\ufffd", "\u{fffd}")
        );
        let record = TailRecord::from_message(&message(b"not json \xff"));
        assert_eq!(
            record.value,
            serde_json::Value::String("not json \u{fffd}".into())
        );
        let mut keyless = message(b"1");
        keyless.key = None;
        let line = TailRecord::from_message(&keyless).to_json_line();
        assert!(
            line.contains(r#""key":null"#) && line.ends_with(r#""value":1}"#),
            "{line}"
        );
    }
}
