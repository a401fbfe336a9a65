//! The announce: built from the stored object, handed off durably to the per-service topic, the
//! announce topic, or both (messages.md, "Announce mode").

use std::time::Instant;

use futures::future::try_join_all;
use intake_bus::{BusError, OutgoingMessage};
use intake_core::config::AnnounceMode;
use intake_core::messages::{Announce, HEADER_REQUEST_ID, HEADER_SERVICE};

use crate::state::AppState;

/// The Kafka key: `metadata.queue_key` when it is a non-empty string, else the request id.
pub fn key_for(
    metadata: Option<&serde_json::Map<String, serde_json::Value>>,
    request_id: &str,
) -> String {
    metadata
        .and_then(|m| m.get("queue_key"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(request_id)
        .to_owned()
}

/// Why an upload's announce was not handed off.
#[derive(Debug, thiserror::Error)]
pub enum HandOffError {
    #[error("recording the payload for a later announce failed: {0}")]
    Record(std::io::Error),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// An upload's first announce: recorded (so that it can be announced again while the payload
/// waits for its verdict, [`crate::pending`]) and handed off ([`hand_off`]) at the same time, so
/// that an upload waits for one sync, not two in a row; the record is marked announced once the
/// bus acknowledged (queued, not waited for: [`crate::pending::Pending::announced_later`]).
///
/// The hand-off decides: once the bus acknowledged, the payload is announced and stored, so a
/// failed record only costs the re-announce safety net (logged). A crash before both finished
/// leaves at worst a record not marked announced of an announced payload (announced once more at the next
/// start, which validators tolerate), or an announce without a record (no 202 was sent; the
/// verdict comes as usual).
pub async fn hand_off_recorded(state: &AppState, announce: &Announce) -> Result<(), HandOffError> {
    let Some(pending) = &state.pending else {
        return Ok(hand_off(state, announce).await?);
    };
    let (recorded, published) = tokio::join!(pending.record(announce), hand_off(state, announce));
    published?;
    match recorded {
        Ok(()) => pending.announced_later(&announce.request_id),
        Err(e) => tracing::warn!(
            request_id = %announce.request_id,
            error = %HandOffError::Record(e),
            "the payload is announced but has no pending record: it will not be announced again if no verdict comes"
        ),
    }
    Ok(())
}

/// Publishes `announce` per the configured mode and waits for every acknowledgement (the bus applies
/// `BUS_PUBLISH_TIMEOUT`). In `both` mode the hand-off succeeds only when both are acknowledged.
pub async fn hand_off(state: &AppState, announce: &Announce) -> Result<(), BusError> {
    let mode = state.config.announce_mode;
    let value =
        serde_json::to_vec(announce).map_err(|e| BusError::backend_from("encoding announce", e))?;
    let key = key_for(announce.metadata.as_ref(), &announce.request_id);
    let mut topics = Vec::with_capacity(2);
    if matches!(mode, AnnounceMode::PerService | AnnounceMode::Both) {
        topics.push(state.bus_config.service_topic(&announce.service));
    }
    if matches!(mode, AnnounceMode::Announce | AnnounceMode::Both) {
        topics.push(state.bus_config.topic(&state.bus_config.topics.announce));
    }
    let started = Instant::now();
    let publishes = topics.into_iter().map(|topic| {
        let message = OutgoingMessage::new(topic, value.clone())
            .key(key.clone())
            .header(HEADER_SERVICE, announce.service.clone())
            .header(HEADER_REQUEST_ID, announce.request_id.clone());
        state.bus.publish(message)
    });
    try_join_all(publishes).await?;
    state
        .metrics
        .handoff_seconds
        .with_label_values(&[mode.as_str()])
        .observe(started.elapsed().as_secs_f64());
    Ok(())
}
