//! The listener of a part that has no HTTP API of its own (`intake validator`, `intake pipeline`): `/livez`, `/readyz`
//! (the bus answers, and the process is not shutting down) and `/metrics`, so that it can be probed
//! and scraped like ingress and the tracker.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use intake_bus::Bus;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Health {
    registry: &'static Registry,
    bus: Arc<dyn Bus>,
    cancel: CancellationToken,
}

/// Binds `listen` (an error names `variable`) and serves until `cancel` fires.
pub async fn spawn(
    variable: &'static str,
    listen: &str,
    registry: &'static Registry,
    bus: Arc<dyn Bus>,
    cancel: CancellationToken,
    grace: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("{variable}: cannot listen on {listen}"))?;
    tracing::info!(listen, "health and metrics listener started");
    let router = Router::new()
        .route("/livez", get(intake_http::health::livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(intake_http::fallback::not_found)
        .layer(intake_http::access_log::layer())
        .with_state(Health {
            registry,
            bus,
            cancel: cancel.clone(),
        });
    Ok(crate::components::spawn_part("health", async move {
        intake_http::serve::serve(listener, router, cancel, HEADER_TIMEOUT, grace)
            .await
            .context(variable)
    }))
}

async fn readyz(State(health): State<Health>) -> Response {
    let bus = intake_http::health::bounded(health.bus.check()).await;
    intake_http::health::readiness(vec![("bus", bus)], health.cancel.is_cancelled())
}

async fn metrics(State(health): State<Health>) -> Response {
    intake_http::metrics::render(health.registry)
}
