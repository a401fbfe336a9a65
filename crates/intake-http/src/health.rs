//! `/livez` and `/readyz` answers (ingress.md, tracker.md).

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;

/// `/livez`: 200 `{"status": "ok"}` while the process serves requests.
pub async fn livez() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `/readyz`: 200 when every check passed and the process is not shutting down, else 503. A failing
/// check holds its error text.
pub fn readiness(checks: Vec<(&'static str, Result<(), String>)>, shutting_down: bool) -> Response {
    let ready = !shutting_down && checks.iter().all(|(_, r)| r.is_ok());
    let shown: BTreeMap<&str, String> = checks
        .into_iter()
        .map(|(name, r)| (name, r.err().unwrap_or_else(|| "ok".to_owned())))
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({"status": if ready { "ok" } else { "unavailable" }, "checks": shown});
    if shutting_down {
        body["shutting_down"] = json!(true);
    }
    (status, Json(body)).into_response()
}
