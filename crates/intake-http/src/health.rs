//! `/livez` and `/readyz` answers (ingress.md, tracker.md).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;

/// Longest a readiness check may take before it counts as failed: a dependency that stopped
/// answering must make `/readyz` say 503 promptly (probes time out after a second or two), not hang.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one readiness check under [`CHECK_TIMEOUT`]; its error as text.
pub async fn bounded<E: std::fmt::Display>(
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            CHECK_TIMEOUT.as_secs_f32()
        )),
    }
}

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
