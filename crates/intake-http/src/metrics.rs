//! Prometheus text exposition of a registry.

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use prometheus::{Encoder, Registry, TextEncoder};

/// Renders `registry` as Prometheus text (`GET /metrics`).
pub fn render(registry: &Registry) -> Response {
    let mut out = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut out) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            out,
        )
            .into_response(),
        Err(e) => crate::ApiError::internal(e, None).into_response(),
    }
}
