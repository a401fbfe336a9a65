//! The access log: one line per HTTP request (method, path, status, bytes, duration, request id) and a
//! span per request holding method, path and request id, from a `tower-http` trace layer. Lines go to
//! the target `access`, at `info`, so `RUST_LOG=…,access=warn` silences them without touching the
//! rest.

use std::time::Duration;

use http::{HeaderMap, Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

/// The header a request id travels in (spec ingress.md); answers carry it when one was known.
const REQUEST_ID_HEADER: &str = "x-rh-insights-request-id";

/// The layer, outermost on a router so it sees the final status: `router.layer(access_log::layer())`.
pub type AccessLogLayer =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), AccessLine, (), (), ()>;

/// A span per request and an access line per answer.
pub fn layer() -> AccessLogLayer {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(AccessLine)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The request's span: `request{method, path, request_id}`. The request id is the client's when it
/// sent one, else the one the answer names.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        tracing::info_span!(
            target: "access",
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = request_id(request.headers()),
        )
    }
}

/// The access line, written when the answer's head is ready. `bytes` is the body's length when known
/// then (absent for streamed answers: downloads, event streams); `duration_ms` runs to the head.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine;

impl<B: axum::body::HttpBody> OnResponse<B> for AccessLine {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        let answered_id = request_id(response.headers());
        if let Some(id) = answered_id {
            span.record("request_id", id);
        }
        let bytes = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| response.body().size_hint().exact());
        // Inside the request's span, so the line carries its method, path and request id (text:
        // `request{method=… path=… request_id=…}: access: status=…`; JSON: the `span` object).
        span.in_scope(|| {
            tracing::info!(
                target: "access",
                status = response.status().as_u16(),
                bytes,
                duration_ms = latency.as_secs_f64() * 1000.0,
                "request"
            );
        });
    }
}
