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

/// Middleware: turns axum's bare 405 into the error body, keeping `Allow`.
pub async fn json_method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().get(header::CONTENT_TYPE).is_some()
    {
        return response;
    }
    let allow = response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}; allowed methods: {allow}"),
    )
    .with_header(header::ALLOW, &allow)
    .into_response()
}
