//! `GET /payloads/{request_id}/events`: server-sent events. Replays the stored statuses oldest stored first
//! (after `Last-Event-ID` when sent), then polls the store so new statuses arrive within the poll
//! interval on any API pod; each status is followed by the updated duration map; `: ping` every 15 s.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use http::HeaderMap;
use intake_http::ApiError;

use super::{rows, store_error, AppState};
use crate::duration::duration_map;
use crate::model::StatusRow;

/// Interval of the `: ping` comments.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

fn status_events(row: &StatusRow, all: &[StatusRow]) -> [Event; 2] {
    let status = Event::default()
        .id(row.id.to_string())
        .event("status")
        .data(rows::payload_status(row, 0).to_string());
    let duration = Event::default()
        .event("duration")
        .data(serde_json::Value::Object(duration_map(all)).to_string());
    [status, duration]
}

pub async fn stream(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let scope = state.scope(&headers)?;
    if !crate::check::valid_request_id(&request_id) {
        return Err(ApiError::bad_request(format!(
            "parameter request_id: {request_id:?} does not match ^[A-Za-z0-9-]{{1,64}}$"
        )));
    }
    let id = request_id.as_str();
    let payload = state
        .store
        .payload(id, &scope)
        .await
        .map_err(|e| store_error(e, Some(id)))?
        .ok_or_else(|| {
            ApiError::not_found(format!("no payload with request_id {id}")).with_request_id(id)
        })?;
    let last_event_id: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let mut all = state
        .store
        .payload_statuses(&payload, None)
        .await
        .map_err(|e| store_error(e, Some(id)))?;
    // Stored order (ids), so that `Last-Event-ID` resumes exactly where a client stopped.
    all.sort_by_key(|s| s.id);
    let store = state.store.clone();
    let poll = state.settings.event_poll;
    let shutdown = state.shutdown.clone();
    let events = async_stream::stream! {
        let mut seen = all.iter().map(|s| s.id).max().unwrap_or(0);
        let replay: Vec<StatusRow> = all.iter().filter(|s| last_event_id.is_none_or(|after| s.id > after)).cloned().collect();
        for row in &replay {
            for event in status_events(row, &all) {
                yield Ok(event);
            }
        }
        let mut ticker = tokio::time::interval(poll);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                // At shutdown the stream ends; the browser reconnects (with Last-Event-ID) elsewhere.
                _ = shutdown.cancelled() => break,
            }
            let fresh = match store.payload_statuses(&payload, Some(seen)).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::debug!(error = %e, "event stream poll failed; retrying");
                    continue;
                }
            };
            for row in fresh {
                seen = seen.max(row.id);
                all.push(row.clone());
                for event in status_events(&row, &all) {
                    yield Ok(event);
                }
            }
        }
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(PING_INTERVAL).text("ping")))
}
