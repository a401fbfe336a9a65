//! The ingress router: the v1 routes under every prefix, downloads, health and metrics, with JSON
//! 404/405 answers.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::openapi::PREFIXES;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for prefix in PREFIXES {
        router = router
            .route(
                &format!("{prefix}/upload"),
                axum::routing::post(crate::upload::upload),
            )
            .route(&format!("{prefix}/version"), get(crate::version::version))
            .route(
                &format!("{prefix}/openapi.json"),
                get(crate::openapi::openapi),
            )
            .route(
                &format!("{prefix}/track/{{request_id}}"),
                get(crate::track::track),
            );
    }
    router
        .route("/download/{request_id}", get(crate::download::download))
        .route(crate::selfprobe::PATH, get(crate::selfprobe::answer))
        .route("/livez", get(intake_http::health::livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(intake_http::fallback::not_found)
        .layer(axum::middleware::from_fn(|req, next| {
            intake_http::fallback::json_method_not_allowed(allowed_methods, req, next)
        }))
        .layer(axum::middleware::from_fn(
            intake_http::fallback::json_errors,
        ))
        .layer(intake_http::access_log::layer())
        .with_state(state)
}

/// The connection bounds of the ingress listeners.
pub fn conn_limits(config: &intake_core::config::IngressConfig) -> intake_http::serve::ConnLimits {
    intake_http::serve::ConnLimits {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_header_bytes: config.max_header_bytes,
    }
}

/// Metrics only, for `INGRESS_METRICS_LISTEN`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    intake_http::metrics::render(&state.metrics.registry)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let (storage, bus) = state.dependencies().await;
    let mut checks = vec![("storage", storage), ("bus", bus)];
    if let Some(reached) = state.probe.check() {
        checks.push(("public_url", reached));
    }
    intake_http::health::readiness(checks, state.shutting_down.is_cancelled())
}

/// The methods a known path takes: only `/upload` takes POST, every other one GET.
fn allowed_methods(path: &str) -> &'static str {
    if path.ends_with("/upload") {
        "POST"
    } else {
        "GET, HEAD"
    }
}
