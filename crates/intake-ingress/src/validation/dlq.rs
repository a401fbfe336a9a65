//! Dead letters for validation responses: the original key, value and headers, plus `dlq_*` headers.

use intake_bus::{Header, OutgoingMessage, ReceivedMessage};

/// The dead-letter copy of `message` for `topic`.
pub fn dead_letter(
    topic: &str,
    message: &ReceivedMessage,
    reason: &str,
    detail: &str,
) -> OutgoingMessage {
    let mut out = OutgoingMessage {
        topic: topic.to_owned(),
        key: message.key.clone(),
        headers: message.headers.clone(),
        value: message.value.clone(),
    };
    let add = |out: &mut OutgoingMessage, name: &str, value: String| {
        out.headers.push(Header {
            name: name.to_owned(),
            value: value.into_bytes(),
        });
    };
    add(&mut out, "dlq_reason", reason.to_owned());
    add(&mut out, "dlq_detail", detail.to_owned());
    add(&mut out, "dlq_source_topic", message.topic.clone());
    add(
        &mut out,
        "dlq_source_partition",
        message.partition.to_string(),
    );
    add(&mut out, "dlq_source_offset", message.offset.to_string());
    add(&mut out, "dlq_time", intake_core::time::now_string());
    out
}
