//! JSON answers for unknown paths (404) and known paths called with another method (405, keeping the
//! `Allow` header axum computes), so every error carries the shared body.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};

use crate::ApiError;

/// Router fallback: 404 with the error body.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// `allowed` for services whose every route is read-only.
pub fn get_only(_path: &str) -> &'static str {
    "GET, HEAD"
}

/// Middleware: turns axum's bare 405 into the error body with an `Allow` header (RFC 9110 requires
/// one). Axum leaves `Allow` empty when the router has a fallback, so `allowed(path)` names the
/// methods then. Use as
/// `axum::middleware::from_fn(|r, n| json_method_not_allowed(get_only, r, n))`.
pub async fn json_method_not_allowed(
    allowed: fn(&str) -> &'static str,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().get(header::CONTENT_TYPE).is_some()
    {
        return response;
    }
    let allow = match response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    {
        Some(computed) => computed.to_owned(),
        None => allowed(&path).to_owned(),
    };
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}; allowed methods: {allow}"),
    )
    .with_header(header::ALLOW, &allow)
    .into_response()
}

/// Longest framework error text carried over into the JSON body.
const MAX_REJECTION_TEXT: usize = 1024;

/// Middleware: any error answer that is not already the JSON error body (axum's extractor
/// rejections, a bare status from a layer) is rewritten as one, keeping its status and headers.
/// Use as `axum::middleware::from_fn(json_errors)`.
#[allow(
    clippy::disallowed_methods,
    reason = "capped at MAX_REJECTION_TEXT: only the short text of a framework rejection is read"
)]
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut error = ApiError::new(status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            error.headers.push((name.clone(), value.clone()));
        }
    }
    error.into_response()
}
