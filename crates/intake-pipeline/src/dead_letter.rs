//! Dead-letter records (spec pipeline.md §11): the original key, value and headers unchanged,
//! plus `intake-error-*`, `intake-source-*`, `intake-attempts` and messages.md's `dlq_*` names.

use intake_bus::{Header, OutgoingMessage, ReceivedMessage};

use crate::error::StageError;

/// Longest `intake-error-detail`.
pub const MAX_DETAIL: usize = 1024;

/// Headers replay strips.
pub fn is_dead_letter_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("intake-error-")
        || n.starts_with("intake-source-")
        || n == "intake-attempts"
        || n.starts_with("dlq_")
}

/// The dead-letter record of `msg` failing with `err`.
pub fn record(topic: &str, msg: &ReceivedMessage, err: &StageError) -> OutgoingMessage {
    let detail: String = err.detail.chars().take(MAX_DETAIL).collect();
    let time = intake_core::time::now_string();
    let mut out = OutgoingMessage {
        topic: topic.to_owned(),
        key: msg.key.clone(),
        headers: msg
            .headers
            .iter()
            .filter(|h| !is_dead_letter_header(&h.name))
            .cloned()
            .collect(),
        value: msg.value.clone(),
    };
    let mut add = |name: &str, value: String| {
        out.headers.push(Header {
            name: name.to_owned(),
            value: value.into_bytes(),
        })
    };
    add("intake-error-stage", err.stage.as_str().to_owned());
    add("intake-error-reason", err.reason.to_owned());
    add("intake-error-class", err.class.as_str().to_owned());
    add("intake-error-detail", detail.clone());
    add("intake-error-time", time.clone());
    add("intake-source-topic", msg.topic.clone());
    add("intake-source-partition", msg.partition.to_string());
    add("intake-source-offset", msg.offset.to_string());
    add("intake-attempts", err.attempts.to_string());
    add("dlq_reason", err.reason.to_owned());
    add("dlq_detail", detail);
    add("dlq_source_topic", msg.topic.clone());
    add("dlq_source_partition", msg.partition.to_string());
    add("dlq_source_offset", msg.offset.to_string());
    add("dlq_time", time);
    out
}
