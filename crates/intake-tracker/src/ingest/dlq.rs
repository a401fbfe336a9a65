//! Dead letters: the original value, key and headers, plus the `dlq_*` headers of spec/messages.md.

use intake_bus::{Bus, BusError, Header, OutgoingMessage, ReceivedMessage};

use crate::check::Rejection;

/// Publishes `message` to `topic` with the reason; returns once the bus holds it durably.
pub async fn publish(
    bus: &dyn Bus,
    topic: &str,
    message: &ReceivedMessage,
    rejection: &Rejection,
) -> Result<(), BusError> {
    let mut out = OutgoingMessage::new(topic, message.value.clone());
    out.key = message.key.clone();
    out.headers = message
        .headers
        .iter()
        .filter(|h| !h.name.to_ascii_lowercase().starts_with("dlq_"))
        .cloned()
        .collect::<Vec<Header>>();
    let out = out
        .header("dlq_reason", rejection.reason)
        .header("dlq_detail", rejection.detail.as_str())
        .header("dlq_source_topic", message.topic.as_str())
        .header("dlq_source_partition", message.partition.to_string())
        .header("dlq_source_offset", message.offset.to_string())
        .header("dlq_time", intake_core::time::now_string());
    bus.publish(out).await.map(|_| ())
}
