//! One validation response: parse, locate the payload, apply the verdict (move + announce + status),
//! retry transient failures, and dead-letter what cannot be processed.

use intake_bus::retry::Backoff;
use intake_bus::{OutgoingMessage, ReceivedMessage};
use intake_core::messages::{
    Available, ValidationError, ValidationResponse, Verdict as Decision, HEADER_REQUEST_ID,
    HEADER_SERVICE,
};
use intake_core::{status, time};
use intake_storage::{Bucket, ObjectMeta, StorageError};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dlq::dead_letter;
use crate::state::AppState;
use crate::statuses::{StatusPublisher, Subject};

/// The `result` label of `ingress_validation_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    Handoff,
    Repeat,
    Conflict,
    DeadLetter,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Failure => "failure",
            Verdict::Handoff => "handoff",
            Verdict::Repeat => "repeat",
            Verdict::Conflict => "conflict",
            Verdict::DeadLetter => "dead_letter",
            Verdict::Error => "error",
        }
    }
}

/// Why applying a verdict did not finish.
enum Failure {
    UnknownId,
    /// A step failed: what was being done, and the error.
    Step {
        what: String,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Failure {
    fn step(what: String, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure::Step {
            what,
            cause: Box::new(cause),
        }
    }
}

/// How handling one message ended.
#[derive(Debug)]
pub(super) enum Handled {
    /// Applied or dead-lettered, its statuses acknowledged: the offset may be committed.
    Done,
    /// Shutdown came while the message waited (an outage, a retry, an unwritable DLQ). Nothing may
    /// be committed: every step is idempotent, so the message is simply delivered again.
    Interrupted,
}

/// Handles one message, `parsed` from its value. Only waits end early on `cancel`; a step in
/// progress always finishes.
pub(super) async fn handle(
    state: &AppState,
    message: &ReceivedMessage,
    parsed: Result<ValidationResponse, ValidationError>,
    cancel: &CancellationToken,
) -> Handled {
    let verdict = match parsed {
        Err(e) => {
            let (id, service) = ValidationResponse::salvage_ids(&message.value);
            tracing::warn!(offset = message.offset, reason = e.reason_code(), error = %e, "invalid validation response");
            if !send_dead_letter(state, message, e.reason_code(), &e.to_string(), cancel).await {
                return Handled::Interrupted;
            }
            if let Some(id) = id {
                let msg = format!(
                    "invalid validation response from {}: {}",
                    service.as_deref().unwrap_or("unknown"),
                    e.reason_code()
                );
                send_error(state, &Subject::of(id.to_string()), msg).await;
            }
            Verdict::DeadLetter
        }
        Ok(response) => {
            let span = tracing::info_span!("validation", request_id = %response.request_id, service = %response.service);
            let processed = process_with_retries(state, message, &response, cancel)
                .instrument(span)
                .await;
            match processed {
                Some(verdict) => verdict,
                None => return Handled::Interrupted,
            }
        }
    };
    state
        .metrics
        .validation_messages
        .with_label_values(&[verdict.as_str()])
        .inc();
    Handled::Done
}

/// Applies a response, retrying failed steps; `None` when shutdown interrupted a wait.
async fn process_with_retries(
    state: &AppState,
    message: &ReceivedMessage,
    response: &ValidationResponse,
    cancel: &CancellationToken,
) -> Option<Verdict> {
    if response.payload_id_mismatch {
        tracing::warn!(request_id = %response.request_id, "request_id and payload_id differ; request_id wins");
    }
    let mut attempts = 0u32;
    let mut backoff = Backoff::default();
    loop {
        match apply(state, response).await {
            Ok(v) => return Some(v),
            Err(Failure::UnknownId) => {
                let detail = format!("no bucket holds request id {}", response.request_id);
                if !send_dead_letter(state, message, "unknown_request_id", &detail, cancel).await {
                    return None;
                }
                let msg = format!(
                    "invalid validation response from {}: unknown_request_id",
                    response.service
                );
                send_error(state, &Subject::of(response.request_id.to_string()), msg).await;
                return Some(Verdict::DeadLetter);
            }
            Err(Failure::Step { what, cause }) => {
                let (storage, bus) = super::check_health(state, cancel).await?;
                if storage.is_err() || bus.is_err() {
                    // An outage is not this message's fault: wait, and do not count the attempt.
                    if !super::wait_until_healthy(state, cancel).await {
                        return None;
                    }
                    continue;
                }
                attempts += 1;
                tracing::warn!(request_id = %response.request_id, attempts, step = %what, error = %intake_core::Chain(cause.as_ref()), "validation step failed");
                if attempts >= state.config.validation_retries.max(1) {
                    // The dead letter and the status say what failed and why, as one line.
                    let what = format!("{what}: {cause}");
                    if !send_dead_letter(state, message, "processing_failed", &what, cancel).await {
                        return None;
                    }
                    send_error(state, &subject_from_store(state, response).await, what).await;
                    return Some(Verdict::Error);
                }
                if !backoff.pause(cancel).await {
                    return None;
                }
            }
        }
    }
}

/// The `error` status that follows a dead letter.
async fn send_error(state: &AppState, subject: &Subject, message: String) {
    let status = StatusPublisher::status(subject, status::ERROR, message, time::now_string());
    state.statuses.send(status).await;
}

/// The stored tenant of a payload, for statuses (never the validator's echo).
async fn subject_from_store(state: &AppState, response: &ValidationResponse) -> Subject {
    let mut subject = Subject {
        request_id: response.request_id.to_string(),
        ..Default::default()
    };
    for bucket in Bucket::ALL {
        if let Ok(meta) = state.store.head(bucket, &response.request_id).await {
            subject.org_id = meta.org_id;
            subject.account = meta.account;
            break;
        }
    }
    subject
}

async fn apply(state: &AppState, response: &ValidationResponse) -> Result<Verdict, Failure> {
    if response.validation == Decision::Handoff {
        tracing::info!(request_id = %response.request_id, "validator handed the payload off");
        return Ok(Verdict::Handoff);
    }
    let found = state
        .store
        .locate(&response.request_id)
        .await
        .map_err(|e| Failure::step("locating the payload failed".into(), e))?;
    let (q, p, r) = (
        found.contains(&Bucket::Quarantine),
        found.contains(&Bucket::Perm),
        found.contains(&Bucket::Reject),
    );
    let success = response.validation == Decision::Success;
    let (same, opposite) = if success { (p, r) } else { (r, p) };
    if q && !opposite {
        return if success {
            accept(state, response).await
        } else {
            reject(state, response).await
        };
    }
    if q || opposite {
        tracing::warn!(request_id = %response.request_id, verdict = response.validation.as_str(), "conflicting verdict ignored; the first verdict wins");
        return Ok(Verdict::Conflict);
    }
    if same {
        tracing::info!(request_id = %response.request_id, "repeated verdict acknowledged");
        return Ok(Verdict::Repeat);
    }
    Err(Failure::UnknownId)
}

fn note_tenant_mismatch(state: &AppState, response: &ValidationResponse, meta: &ObjectMeta) {
    let org_differs = response.org_id.as_deref().is_some_and(|o| o != meta.org_id);
    let account_differs = response
        .account
        .as_deref()
        .is_some_and(|a| a != meta.account);
    if org_differs || account_differs {
        tracing::warn!(request_id = %response.request_id, "validation response echoes another tenant; the stored one is used");
        state.metrics.tenant_mismatches.inc();
    }
}

fn step(what: String) -> impl FnOnce(StorageError) -> Failure {
    move |e| Failure::step(what, e)
}

/// The first half of a move: copy from quarantine to `dst` (idempotent) and read back the stored
/// metadata, which is the tenant of record.
async fn copy_out(
    state: &AppState,
    response: &ValidationResponse,
    dst: Bucket,
) -> Result<ObjectMeta, Failure> {
    let id = &response.request_id;
    let name = state.store.bucket_name(dst).to_owned();
    state
        .store
        .copy(Bucket::Quarantine, dst, id)
        .await
        .map_err(step(format!("moving to {name} failed")))?;
    let meta = state
        .store
        .head(dst, id)
        .await
        .map_err(step(format!("reading {name} metadata failed")))?;
    note_tenant_mismatch(state, response, &meta);
    Ok(meta)
}

/// Success: copy to perm, announce on available, status, delete from quarantine (each acknowledged
/// before the next).
async fn accept(state: &AppState, response: &ValidationResponse) -> Result<Verdict, Failure> {
    let id = &response.request_id;
    let meta = copy_out(state, response, Bucket::Perm).await?;
    let url = state
        .store
        .url(Bucket::Perm, id)
        .await
        .map_err(step("signing the perm URL failed".into()))?;
    let available = available_message(response, &meta, url);
    let key = crate::announce::key_for(response.metadata.as_ref(), id.as_str());
    let value = serde_json::to_vec(&available)
        .map_err(|e| Failure::step("encoding available failed".into(), e))?;
    let topic = state.bus_config.topic(&state.bus_config.topics.available);
    let message = OutgoingMessage::new(topic.clone(), value)
        .key(key)
        .header(HEADER_SERVICE, response.service.clone())
        .header(HEADER_REQUEST_ID, id.to_string());
    state
        .bus
        .publish(message)
        .await
        .map_err(|e| Failure::step(format!("announcing on {topic} failed"), e))?;
    let subject = Subject {
        request_id: id.to_string(),
        org_id: meta.org_id.clone(),
        account: meta.account.clone(),
    };
    let mut s = StatusPublisher::status(
        &subject,
        status::SUCCESS,
        format!(
            "validated by {}; announced on {}",
            response.service, state.bus_config.topics.available
        ),
        time::now_string(),
    );
    s.inventory_id = response.id.clone();
    s.system_id = response
        .extras
        .get("system_id")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    // The status is acknowledged before the quarantine copy goes: a crash after the delete finds
    // the payload in perm alone (a repeat, which sends nothing), so its status must already be out.
    state.statuses.send(s).await;
    leave_quarantine(state, id, Leave::Retire).await?;
    tracing::info!(request_id = %id, "payload validated and announced as available");
    Ok(Verdict::Success)
}

/// Failure: copy to reject, status, delete from quarantine (each acknowledged before the next).
async fn reject(state: &AppState, response: &ValidationResponse) -> Result<Verdict, Failure> {
    let id = &response.request_id;
    let reject = state.store.bucket_name(Bucket::Reject).to_owned();
    let meta = copy_out(state, response, Bucket::Reject).await?;
    let subject = Subject {
        request_id: id.to_string(),
        org_id: meta.org_id,
        account: meta.account,
    };
    let reason = response
        .reason
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or("no reason given");
    let msg = format!(
        "rejected by {}: {reason}; moved to {reject}",
        response.service
    );
    // Acknowledged before the delete, for the reason given in `accept`.
    state
        .statuses
        .send(StatusPublisher::status(
            &subject,
            status::REJECTED,
            msg,
            time::now_string(),
        ))
        .await;
    leave_quarantine(state, id, Leave::Delete).await?;
    tracing::info!(request_id = %id, "payload rejected");
    Ok(Verdict::Failure)
}

/// How the quarantine copy goes at the end of a move.
enum Leave {
    /// Validated: links already handed out keep serving it until they expire (storage.md).
    Retire,
    /// Rejected: gone at once, so that no link serves it any more.
    Delete,
}

/// The last step of a move: the quarantine copy goes, and with it the pending-announce record.
async fn leave_quarantine(
    state: &AppState,
    id: &intake_core::RequestId,
    how: Leave,
) -> Result<(), Failure> {
    let quarantine = state.store.bucket_name(Bucket::Quarantine).to_owned();
    match how {
        Leave::Retire => state.store.retire(id).await,
        Leave::Delete => state.store.delete(Bucket::Quarantine, id).await,
    }
    .map_err(step(format!("deleting from {quarantine} failed")))?;
    if let Some(pending) = &state.pending {
        pending.forget(id.as_str()).await;
        state.backlog();
    }
    Ok(())
}

/// The available message: tenant and type from stored metadata, the rest from the response.
pub fn available_message(
    response: &ValidationResponse,
    meta: &ObjectMeta,
    url: String,
) -> Available {
    let mut extras = response.extras.clone();
    if let Some(id) = &response.id {
        extras.insert("id".into(), json!(id));
    }
    if let Some(sm) = response.satellite_managed {
        extras.insert("satellite_managed".into(), json!(sm));
    }
    Available {
        request_id: meta.request_id.clone(),
        payload_id: meta.request_id.clone(),
        account: meta.account.clone(),
        rh_account: meta.account.clone(),
        principal: meta.org_id.clone(),
        rh_principal: meta.org_id.clone(),
        org_id: meta.org_id.clone(),
        service: response.service.clone(),
        category: meta.category.clone(),
        content_type: meta.content_type.clone(),
        size: meta.size,
        b64_identity: response.b64_identity.clone(),
        id: response.id.clone(),
        satellite_managed: response.satellite_managed,
        metadata: response.metadata.clone(),
        extras: (!extras.is_empty()).then_some(extras),
        url,
        timestamp: meta.received_at.clone(),
    }
}

/// Publishes a dead letter, retrying until the DLQ takes it (the offset is not committed before).
/// Returns false when shutdown came first; the message is then left uncommitted.
async fn send_dead_letter(
    state: &AppState,
    message: &ReceivedMessage,
    reason: &str,
    detail: &str,
    cancel: &CancellationToken,
) -> bool {
    let topic = state
        .bus_config
        .topic(&state.bus_config.topics.validation_dlq);
    let letter = dead_letter(&topic, message, reason, detail);
    if intake_bus::retry::publish(state.bus.as_ref(), letter, cancel)
        .await
        .is_err()
    {
        return false;
    }
    state
        .metrics
        .dead_letters
        .with_label_values(&[reason])
        .inc();
    true
}
