//! `POST {prefix}/upload`: the checks of ingress.md in their order, the multipart body streamed into
//! quarantine with the size limit enforced on the way, the announce handed off, then 202.
//!
//! The work runs in its own task: if the client goes away, hyper drops the handler's future, but the
//! task goes on to clean up, so nothing is left in quarantine.

mod body;
pub mod clients;
mod parts;
mod test_connection;

pub use body::BodyAbort;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use http::{header, HeaderMap, StatusCode};
use intake_core::{Identity, RequestId};
use intake_http::ApiError;
use intake_storage::Bucket;
use serde_json::{json, Map, Value};

use crate::refusals::{self, Refused};
use crate::state::AppState;

/// The request-id header.
pub const REQUEST_ID_HEADER: &str = "x-rh-insights-request-id";
/// Multipart framing allowed on top of the largest limit (check 6).
pub const FORM_OVERHEAD: u64 = 1_048_576;
/// The `service` metric label when no listed service is known.
const UNSUPPORTED: &str = "unsupported";

/// How an upload ended: the answer and the metric label for its service.
struct Outcome {
    response: Response,
    service: String,
}

impl Outcome {
    fn refused(error: ApiError, service: &str) -> Self {
        Self {
            response: error.into_response(),
            service: service.to_owned(),
        }
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the upload runs in its own task so that a panic becomes a 500 and a client that leaves cannot cut it short between storing and announcing; the handle is awaited, and the task ends with the request"
)]
pub async fn upload(State(state): State<AppState>, req: Request) -> Response {
    let task_state = state.clone();
    // In the request's span (request id, method, route), which a spawned task does not inherit.
    let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
        handle(task_state, req).await
    }));
    let outcome = match task.await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::refused(ApiError::internal(e, None), UNSUPPORTED),
    };
    let code = outcome.response.status().as_u16().to_string();
    state
        .metrics
        .uploads
        .with_label_values(&[&outcome.service, &code])
        .inc();
    outcome.response
}

/// Checks 1–7 read only headers (and a small test body); then the parts are streamed.
async fn handle(state: AppState, req: Request) -> Outcome {
    let received = Utc::now();
    let (head, body) = req.into_parts();

    // 1. request id
    let (request_id, client_supplied) = match head.headers.get(REQUEST_ID_HEADER) {
        None => (RequestId::generate(), false),
        Some(v) => match v.to_str().ok().map(RequestId::parse) {
            Some(Ok(id)) => (id, true),
            Some(Err(e)) => {
                return Outcome::refused(
                    ApiError::from(Refused::Malformed(format!("{REQUEST_ID_HEADER}: {e}"))),
                    UNSUPPORTED,
                )
            }
            None => {
                return Outcome::refused(
                    ApiError::from(Refused::Malformed(format!(
                        "{REQUEST_ID_HEADER} may contain only letters, digits and '-'"
                    ))),
                    UNSUPPORTED,
                )
            }
        },
    };
    let rid = request_id.as_str().to_owned();
    let refuse =
        |e: ApiError, service: &str| Outcome::refused(e.with_request_id(rid.clone()), service);

    // 2. identity
    let identity = match intake_http::identity::from_headers(&head.headers, state.identity_required)
    {
        Ok(i) => i,
        Err(e) => return refuse(e, UNSUPPORTED),
    };

    // 3. deny list
    if let Some(id) = &identity {
        if !id.org_id.is_empty() && state.config.deny_org_ids.iter().any(|d| d == &id.org_id) {
            return refuse(Refused::DeniedOrg(&id.org_id).into(), UNSUPPORTED);
        }
    }

    // 4. test connection
    let idle = state.config.body_idle_timeout;
    let body = match test_connection::probe(head.uri.query(), &head.headers, body, idle).await {
        test_connection::Probe::Test => return test_answer(&rid, identity.as_ref()),
        test_connection::Probe::NotTest(body) => Some(body),
        test_connection::Probe::Consumed => None,
        test_connection::Probe::Stalled => {
            return refuse(
                Refused::BodyStalled(format!("the request body did not arrive within {idle:?}"))
                    .into(),
                UNSUPPORTED,
            )
        }
    };

    // 5. shutdown
    if state.shutting_down.is_cancelled() {
        return refuse(Refused::ShuttingDown.into(), UNSUPPORTED);
    }

    // 5 (cont.). admission: no more waiting for a verdict than the system finishes in bounded
    // time (ingress.md, "Admission").
    let limit = state.config.max_backlog;
    let _admitted = match &state.pending {
        Some(pending) if limit > 0 => match pending.admit(limit) {
            Ok(admitted) => Some(admitted),
            Err(backlog) => {
                state.backlog();
                return refuse(Refused::Backlog { backlog, limit }.into(), UNSUPPORTED);
            }
        },
        _ => None,
    };

    // 6. declared length (before the body is asked for, so `Expect: 100-continue` gets its 413)
    let ceiling = state.config.largest_limit() + FORM_OVERHEAD;
    if let Some(len) = content_length(&head.headers) {
        if len > ceiling {
            return refuse(
                Refused::TooLarge(format!(
                    "request of {len} bytes exceeds the largest upload limit ({} bytes plus {FORM_OVERHEAD} bytes of form overhead)",
                    state.config.largest_limit()
                ))
                .into(),
                UNSUPPORTED,
            );
        }
    }

    // 5 (cont.). concurrency: a slot is taken only once the body makes progress, and one client
    // address holds at most `INGRESS_MAX_UPLOADS_PER_CLIENT` of them.
    let body = match body {
        Some(body) => match first_progress(body, idle).await {
            Some(body) => Some(body),
            None => return refuse(refusals::body_did_not_start(idle).into(), UNSUPPORTED),
        },
        None => None,
    };
    let peer = head
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let _client_slot = match peer {
        Some(ip) => match state.clients.acquire(ip) {
            Some(slot) => Some(slot),
            None => {
                return refuse(
                    Refused::ClientBusy {
                        limit: state.config.max_uploads_per_client,
                    }
                    .into(),
                    UNSUPPORTED,
                )
            }
        },
        None => None,
    };
    let Ok(_permit) = state.uploads.clone().try_acquire_owned() else {
        return refuse(
            Refused::Busy {
                limit: state.config.max_concurrent_uploads,
            }
            .into(),
            UNSUPPORTED,
        );
    };

    // 7. an id the client chose must be new
    if client_supplied {
        match state.store.locate(&request_id).await {
            Ok(found) if !found.is_empty() => {
                // "Treat as done" must be true: a payload stored but never announced (the process
                // stopped in between) is announced first.
                if found == [Bucket::Quarantine] {
                    if let Err(e) =
                        crate::sweeper::announce_if_unannounced(&state, &request_id).await
                    {
                        tracing::warn!(request_id = %rid, error = %e, "announcing a stored payload failed");
                        return refuse(Refused::BusDown { kept: true }.into(), UNSUPPORTED);
                    }
                }
                return refuse(Refused::AlreadyUploaded(&request_id).into(), UNSUPPORTED);
            }
            Ok(_) => {}
            Err(e) => return refuse(Refused::Storage(&e).into(), UNSUPPORTED),
        }
    }

    // 8. multipart
    let boundary = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let (Some(boundary), Some(body)) = (boundary, body) else {
        return refuse(
            ApiError::from(Refused::Malformed("the body must be multipart/form-data with the payload in a part named file or upload".into())),
            UNSUPPORTED,
        );
    };

    // 9–12
    let upload = parts::Upload {
        state: &state,
        request_id: &request_id,
        identity: identity.as_ref(),
        user_agent: head
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        received,
    };
    upload.receive(body, boundary).await
}

/// Waits up to `idle` for the first body byte; the body with that byte put back, `None` when none
/// came. An empty or broken body is handed on as it is, for the multipart check to refuse.
async fn first_progress(
    body: axum::body::Body,
    idle: std::time::Duration,
) -> Option<axum::body::Body> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return None,
            Ok(None) => return Some(axum::body::Body::empty()),
            Ok(Some(Ok(chunk))) if chunk.is_empty() => continue,
            Ok(Some(first)) => {
                let rest = futures::stream::once(async move { first }).chain(stream);
                return Some(axum::body::Body::from_stream(rest));
            }
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `upload` object of an answer; `keep_empty_org` keeps `org_id: ""` (202) where a test answer
/// leaves empty values out.
fn upload_object(identity: Option<&Identity>, keep_empty_org: bool) -> Value {
    let mut upload = Map::new();
    if let Some(id) = identity {
        if !id.account.is_empty() {
            upload.insert("account_number".into(), json!(id.account));
        }
        if keep_empty_org || !id.org_id.is_empty() {
            upload.insert("org_id".into(), json!(id.org_id));
        }
    }
    Value::Object(upload)
}

fn test_answer(rid: &str, identity: Option<&Identity>) -> Outcome {
    let body = json!({"request_id": rid, "upload": upload_object(identity, false)});
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if let Ok(v) = rid.parse() {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    Outcome {
        response,
        service: UNSUPPORTED.to_owned(),
    }
}

/// insights-client's connection test (an empty file with metadata `{"test": "test"}`): 202, the
/// answer the client expects from an upload, with nothing kept, announced or tracked.
fn client_test_answer(rid: &str, identity: Option<&Identity>) -> Outcome {
    tracing::info!(request_id = %rid, "connection test upload answered; nothing kept");
    let body = json!({"request_id": rid, "upload": upload_object(identity, true)});
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = rid.parse() {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    Outcome {
        response,
        service: UNSUPPORTED.to_owned(),
    }
}

/// Attempts to delete a half-done upload before an operator is asked to (an ERROR line).
const DISCARD_ATTEMPTS: u32 = 5;

/// Deletes a half-done upload from quarantine, retrying in the background if the store refuses.
async fn discard(state: &AppState, request_id: &RequestId) {
    if let Some(pending) = &state.pending {
        pending.forget(request_id.as_str()).await;
    }
    let mut backoff = intake_bus::retry::Backoff::default();
    for attempt in 0..DISCARD_ATTEMPTS {
        match state.store.delete(Bucket::Quarantine, request_id).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(request_id = %request_id, attempt, error = %e, "could not delete a failed upload");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    tracing::error!(request_id = %request_id, "a failed upload is left in quarantine; delete it by hand");
}
