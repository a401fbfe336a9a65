//! Announces again what stays in quarantine without a verdict (spec messages.md, "A verdict is
//! about content only"), from the records of [`crate::pending`]:
//!
//! * a record not marked announced that an earlier process left (stopped between storing a
//!   payload and its announce's acknowledgement) is announced at once;
//! * an announced payload still in quarantine `INGRESS_REANNOUNCE_AFTER` after its last announce
//!   is announced again, with a freshly signed URL, at most `INGRESS_REANNOUNCE_ATTEMPTS` times;
//!   after the last, status `error` is sent and the payload stays in quarantine;
//! * a record whose payload left quarantine (its verdict was processed) is removed; with admission
//!   on (`INGRESS_MAX_BACKLOG`), one pass after its announce at the latest, so that verdicts applied
//!   by another instance leave this one's backlog.
//!
//! A pass runs at start-up and then every quarter of `INGRESS_REANNOUNCE_AFTER` (between 100 ms
//! and 30 s). While storage or the bus fails, records are left for the next pass.

use std::time::{Duration, SystemTime};

use intake_core::{status, time, RequestId};
use intake_storage::{Bucket, StorageError};
use tokio_util::sync::CancellationToken;

use crate::pending::{Entry, Pending, Record};
use crate::state::AppState;
use crate::statuses::{StatusPublisher, Subject};

/// Deletes the quarantine copies of validated payloads once the links handed out for them have
/// had their time ([`intake_storage::PayloadStore::retire`]), as often as the driver asks, until
/// `cancel` fires. A failed sweep is logged and tried again a minute later.
pub async fn sweep_retired(state: AppState, cancel: CancellationToken) {
    loop {
        // A sweep is only deletes of what is due: dropping it half-way at shutdown is safe.
        let swept = tokio::select! {
            _ = cancel.cancelled() => return,
            swept = state.store.sweep_retired() => swept,
        };
        let again_in = match swept {
            Ok(swept) => {
                if swept.deleted > 0 {
                    tracing::info!(deleted = swept.deleted, "retired quarantine copies deleted");
                }
                match swept.again_in {
                    Some(again_in) => again_in,
                    None => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeping retired quarantine copies failed; retrying");
                Duration::from_secs(60)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(again_in) => {}
        }
    }
}

/// Runs passes until `cancel` fires. Does nothing without a records folder.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let Some(pending) = state.pending.clone() else {
        return;
    };
    let started = SystemTime::now();
    let period = (state.config.reannounce_after / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        if let Err(e) = pass(&state, &pending, started, period, &cancel).await {
            tracing::warn!(error = %e, "listing the pending-announce records failed; retrying");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// One pass over the records. `started`: when this process started (older records not marked
/// announced were left by an earlier one).
async fn pass(
    state: &AppState,
    pending: &Pending,
    started: SystemTime,
    period: Duration,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let after = state.config.reannounce_after;
    let now = SystemTime::now();
    let entries = pending.list().await?;
    // Refreshes the backlog gauge.
    state.backlog();
    for entry in entries {
        if cancel.is_cancelled() {
            break;
        }
        let age = now.duration_since(entry.modified).unwrap_or_default();
        let due = if entry.announced {
            age >= after
        } else {
            entry.modified < started || age >= after
        };
        if due {
            visit(state, pending, &entry).await;
        } else if entry.announced && age >= period && state.config.max_backlog > 0 {
            settled_elsewhere(state, pending, &entry).await;
        }
    }
    Ok(())
}

/// With several ingress instances, a verdict may be applied by an instance other than the one that
/// holds the payload's record. Its record would count in this instance's backlog (admission) until
/// its re-announce time: a record older than one pass whose payload has left quarantine goes now.
async fn settled_elsewhere(state: &AppState, pending: &Pending, entry: &Entry) {
    let Ok(id) = RequestId::parse(&entry.request_id) else {
        return;
    };
    if let Err(StorageError::NotFound { .. }) = state.store.head(Bucket::Quarantine, &id).await {
        pending.forget(&entry.request_id).await;
        state.backlog();
    }
}

async fn visit(state: &AppState, pending: &Pending, entry: &Entry) {
    let id_text = entry.request_id.as_str();
    let Ok(id) = RequestId::parse(id_text) else {
        pending.forget(id_text).await;
        return;
    };
    match state.store.locate(&id).await {
        Ok(found) if !found.contains(&Bucket::Quarantine) => {
            pending.forget(id_text).await;
            return;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(request_id = %id, error = %e, "cannot see where a pending payload is; later");
            return;
        }
    }
    let record = match pending.read(id_text, entry.announced).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(request_id = %id, error = %e, "a pending-announce record cannot be read; the payload stays in quarantine unannounced");
            return;
        }
    };
    if !entry.announced {
        match announce_again(state, pending, record, false).await {
            Ok(()) => tracing::info!(
                request_id = %id,
                "announced a payload stored before a restart whose announce was never acknowledged"
            ),
            Err(e) => {
                tracing::warn!(request_id = %id, error = %e, "announcing a stored payload failed; later")
            }
        }
        return;
    }
    let attempts = state.config.reannounce_attempts;
    if record.reannounced < attempts {
        let attempt = record.reannounced + 1;
        match announce_again(state, pending, record, true).await {
            Ok(()) => tracing::warn!(
                request_id = %id,
                attempt,
                attempts,
                "no verdict yet; payload announced again"
            ),
            Err(e) => {
                tracing::warn!(request_id = %id, error = %e, "announcing again failed; later")
            }
        }
        return;
    }
    let announce = &record.announce;
    let subject = Subject {
        request_id: announce.request_id.clone(),
        org_id: announce.org_id.clone(),
        account: announce.account.clone(),
    };
    let quarantine = state.store.bucket_name(Bucket::Quarantine);
    let msg = format!(
        "no verdict from {} after {} announces, {:?} apart; the payload stays in {quarantine}",
        announce.service,
        attempts + 1,
        state.config.reannounce_after,
    );
    tracing::error!(request_id = %id, "{msg}");
    state
        .statuses
        .send(StatusPublisher::status(
            &subject,
            status::ERROR,
            msg,
            time::now_string(),
        ))
        .await;
    pending.forget(id_text).await;
}

/// Hands `record`'s announce off with a fresh URL and records it as announced now; `again`
/// counts it as one more announce after the first.
async fn announce_again(
    state: &AppState,
    pending: &Pending,
    mut record: Record,
    again: bool,
) -> Result<(), String> {
    let id = RequestId::parse(&record.announce.request_id).map_err(|e| e.to_string())?;
    record.announce.url = state
        .store
        .url(Bucket::Quarantine, &id)
        .await
        .map_err(|e| format!("signing the quarantine URL: {e}"))?;
    crate::announce::hand_off(state, &record.announce)
        .await
        .map_err(|e| e.to_string())?;
    if again {
        record.reannounced += 1;
    }
    pending
        .rewrite(record)
        .await
        .map_err(|e| format!("recording the announce: {e}"))
}

/// For a request id reused by a client: if its payload was stored but its announce never
/// acknowledged, announces it now (so that answering "already uploaded" is true). `Err` when that
/// announce fails.
pub async fn announce_if_unannounced(
    state: &AppState,
    request_id: &RequestId,
) -> Result<(), String> {
    let Some(pending) = state.pending.as_ref() else {
        return Ok(());
    };
    if !pending.is_unannounced(request_id.as_str()).await {
        return Ok(());
    }
    let record = match pending.read(request_id.as_str(), false).await {
        Ok(r) => r,
        // Acknowledged meanwhile, or discarded.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    announce_again(state, pending, record, false).await
}
