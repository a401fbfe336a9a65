//! `GET {prefix}/track/{request_id}`: the latest status of a payload, asked of the tracker
//! (ingress.md). Other tenants' ids answer 404, so they are not confirmed.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use intake_core::RequestId;
use intake_http::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::refusals::Refused;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Params {
    verbosity: Option<String>,
}

pub async fn track(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = RequestId::parse(&request_id)
        .map_err(|e| ApiError::from(Refused::Malformed(format!("request id: {e}"))))?;
    let rid = id.to_string();
    let with_id = |e: ApiError| e.with_request_id(rid.clone());
    let identity =
        intake_http::identity::from_headers(&headers, state.identity_required).map_err(with_id)?;
    let verbosity = match params.verbosity.as_deref() {
        None | Some("0") => 0,
        Some("1") => 1,
        Some("2") => 2,
        Some(other) => {
            return Err(with_id(ApiError::from(Refused::Malformed(format!(
                "verbosity must be 0, 1 or 2 (got {other:?})"
            )))))
        }
    };
    let url = format!(
        "{}{id}?sort_by=date&sort_dir=desc",
        state.config.tracker_url
    );
    let mut request = state.http.get(&url);
    if let Some(raw) = headers.get(intake_core::identity::HEADER) {
        request = request.header(intake_core::identity::HEADER, raw.clone());
    }
    let unreachable = |detail: String| {
        tracing::warn!(%detail, "tracker unreachable");
        with_id(Refused::TrackerUnreachable.into())
    };
    let answer = request
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let code = answer.status();
    if code.is_server_error() {
        return Err(unreachable(format!("tracker answered {code}")));
    }
    let not_found = || with_id(Refused::UnknownPayload(&id).into());
    if code == reqwest::StatusCode::NOT_FOUND {
        return Err(not_found());
    }
    if !code.is_success() {
        return Err(unreachable(format!("tracker answered {code}")));
    }
    let body = crate::peer_answer::json(answer)
        .await
        .map_err(|e| unreachable(format!("tracker body: {e}")))?;
    let rows = body
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(newest) = rows.first() else {
        return Err(not_found());
    };
    if let Some(identity) = &identity {
        let org = newest.get("org_id").and_then(Value::as_str).unwrap_or("");
        if !identity.is_associate() && org != identity.org_id {
            return Err(not_found());
        }
    }
    let mut response = if verbosity == 2 {
        Json(body).into_response()
    } else {
        let field = |k: &str| {
            newest
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Json(json!({
            "status": field("status"),
            "status_msg": field("status_msg"),
            "date": field("date"),
            "service": field("service"),
            "inventory_id": field("inventory_id"),
        }))
        .into_response()
    };
    if let Ok(v) = rid.parse() {
        response
            .headers_mut()
            .insert(crate::upload::REQUEST_ID_HEADER, v);
    }
    Ok(response)
}
