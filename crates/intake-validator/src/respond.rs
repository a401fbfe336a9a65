//! What the validator publishes: the validation response (acknowledged before the commit) and
//! its own payload-status messages (fire-and-forget).

use std::sync::Arc;
use std::time::Duration;

use intake_bus::{Bus, OutgoingMessage};
use intake_core::messages::PayloadStatus;
use intake_core::status;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::announce::AnnounceView;
use crate::verdict::Verdict;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The validation response: the announce echoed, plus `validation` and, on failure, `reason`;
/// `None` when there is no verdict to send.
pub(crate) fn response(announce: &AnnounceView, verdict: &Verdict) -> Option<Vec<u8>> {
    let mut fields = announce.fields.clone();
    fields.insert("validation".into(), Value::from(verdict.validation()?));
    match verdict.reason() {
        Some(reason) => fields.insert("reason".into(), Value::from(reason)),
        None => fields.remove("reason"),
    };
    Some(Value::Object(fields).to_string().into_bytes())
}

/// The status that ends the validator's time on a payload, with its message:
/// `success` (valid), `rejected` (the payload's content is bad), `error` (it could not be
/// checked, and no verdict was sent).
pub(crate) fn final_status(verdict: &Verdict) -> (&'static str, String) {
    match verdict {
        Verdict::Valid { detail } => (status::SUCCESS, format!("validation success: {detail}")),
        Verdict::Invalid { reason } => (status::REJECTED, format!("validation failure: {reason}")),
        Verdict::Unchecked { reason } => (
            status::ERROR,
            format!("payload not checked, no verdict sent (it stays in quarantine): {reason}"),
        ),
    }
}

/// A payload-status message from the validator about `announce`.
pub(crate) fn status_message(
    topic: &str,
    name: &str,
    announce: &AnnounceView,
    status: &str,
    status_msg: String,
) -> OutgoingMessage {
    let body = PayloadStatus {
        service: name.to_owned(),
        account: announce.account.clone().filter(|a| !a.is_empty()),
        org_id: announce.org_id.clone(),
        request_id: announce.request_id.as_str().to_owned(),
        status: status.to_owned(),
        status_msg: Some(status_msg),
        date: intake_core::time::now_string(),
        ..PayloadStatus::default()
    };
    let value = serde_json::to_vec(&body).unwrap_or_default();
    OutgoingMessage::new(topic, value).key(announce.request_id.as_str())
}

/// Publishes a status; a failure is logged and never holds up the verdict.
pub(crate) async fn publish_status(bus: &Arc<dyn Bus>, message: OutgoingMessage) {
    if let Err(e) = bus.publish(message).await {
        tracing::warn!(error = %e, "publishing a payload status failed");
    }
}

/// Publishes until the bus acknowledges, backing off between attempts. `false` when `cancel`
/// fired first (the message then stays uncommitted and is delivered again).
pub(crate) async fn publish_acknowledged(
    bus: &Arc<dyn Bus>,
    message: OutgoingMessage,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match bus.publish(message.clone()).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(error = %e, topic = %message.topic, "publishing the validation response failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
