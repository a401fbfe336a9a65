//! The HTTP surface: the REST API under `/api/v1` and `/v1`, live events, health, metrics, the
//! OpenAPI document and the web page. Handlers are thin: parse parameters, ask the store, shape JSON.

mod cursor;
mod events;
mod params;
mod payloads;
mod rows;
mod stats;
mod statuses;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::HeaderMap;
use intake_bus::Bus;
use intake_http::ApiError;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::model::Scope;
use crate::store::{StatusStore, StoreError};

/// API behaviour settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `IDENTITY_REQUIRED`.
    pub identity_required: bool,
    /// `TRACKER_MAX_PAGE_SIZE`.
    pub max_page_size: u32,
    /// `TRACKER_RETENTION_DAYS`, the longest `/stats` window.
    pub retention: Duration,
    /// How often an open event stream looks for new statuses (at most 2 s by the contract).
    pub event_poll: Duration,
}

impl ApiSettings {
    /// The settings a tracker configuration implies.
    pub fn new(identity_required: bool, max_page_size: u32, retention_days: u32) -> Self {
        Self {
            identity_required,
            max_page_size,
            retention: Duration::from_secs(u64::from(retention_days) * 86_400),
            event_poll: Duration::from_millis(500),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn StatusStore>,
    pub(crate) bus: Option<Arc<dyn Bus>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: ApiSettings,
    /// Fires at shutdown: readiness turns 503 and event streams end, so draining is quick.
    pub(crate) shutdown: CancellationToken,
    /// The ingest loop's last write result, checked by readiness when given.
    pub(crate) writes: Option<crate::ingest::WriteHealth>,
}

impl AppState {
    /// `bus` is checked by `/health` when given.
    pub fn new(
        store: Arc<dyn StatusStore>,
        bus: Option<Arc<dyn Bus>>,
        metrics: Arc<Metrics>,
        settings: ApiSettings,
    ) -> Self {
        Self {
            store,
            bus,
            metrics,
            settings,
            shutdown: CancellationToken::new(),
            writes: None,
        }
    }

    /// Makes readiness fail, naming the cause, while the ingest loop cannot store batches.
    pub fn with_write_health(mut self, writes: crate::ingest::WriteHealth) -> Self {
        self.writes = Some(writes);
        self
    }

    /// Ties readiness and open event streams to `shutdown`.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Who the caller may see, from `x-rh-identity` (401/400 by the shared rules).
    pub(crate) fn scope(&self, headers: &HeaderMap) -> Result<Scope, ApiError> {
        let identity =
            intake_http::identity::from_headers(headers, self.settings.identity_required)?;
        if !self.settings.identity_required {
            return Ok(Scope::All);
        }
        Ok(match identity {
            None => Scope::All,
            Some(id) if id.is_associate() => Scope::All,
            Some(id) if id.org_id.is_empty() => Scope::Nothing,
            Some(id) => Scope::Org(id.org_id),
        })
    }
}

/// A store failure as an HTTP answer: 503 while the database is down, else 500.
pub(crate) fn store_error(e: StoreError, request_id: Option<&str>) -> ApiError {
    match e {
        e @ StoreError::Unavailable { .. } => {
            tracing::warn!(error = %e, "database unavailable");
            let err = ApiError::unavailable("the status database is unavailable; retry shortly", 5);
            match request_id {
                Some(id) => err.with_request_id(id),
                None => err,
            }
        }
        other => ApiError::internal(other, request_id),
    }
}

fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/payloads", get(payloads::list))
        .route("/payloads/{request_id}", get(payloads::one))
        .route("/payloads/{request_id}/events", get(events::stream))
        .route("/statuses", get(statuses::list))
        .route("/stats", get(stats::stats))
        .route("/health", get(health))
        .route("/readyz", get(health))
        .route("/livez", get(intake_http::health::livez))
        .route("/openapi.json", get(web::openapi))
}

/// The whole tracker HTTP surface, usable without a listener.
pub fn router(state: AppState) -> Router {
    let api = api_routes();
    Router::new()
        .nest("/api/v1", api.clone())
        .nest("/v1", api)
        .route("/health", get(health))
        .route("/readyz", get(health))
        .route("/livez", get(intake_http::health::livez))
        .route("/metrics", get(metrics))
        .route("/", get(web::index))
        .route("/track", get(web::index))
        .route("/assets/{file}", get(web::asset))
        .fallback(intake_http::fallback::not_found)
        .layer(axum::middleware::from_fn(|req, next| {
            intake_http::fallback::json_method_not_allowed(
                intake_http::fallback::get_only,
                req,
                next,
            )
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .layer(intake_http::access_log::layer())
        .with_state(state)
}

/// A router serving only `/metrics`, for `TRACKER_METRICS_LISTEN`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .api_responses
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

async fn health(State(state): State<AppState>) -> Response {
    use intake_http::health::bounded;
    let failing = state.writes.as_ref().and_then(|w| w.failing());
    let database = match failing {
        Some(cause) => Err(format!("statuses cannot be stored: {cause}")),
        None => bounded(state.store.ping()).await,
    };
    let mut checks = vec![("database", database)];
    if let Some(bus) = &state.bus {
        checks.push(("bus", bounded(bus.check()).await));
    }
    intake_http::health::readiness(checks, state.shutdown.is_cancelled())
}

async fn metrics(State(state): State<AppState>) -> Response {
    intake_http::metrics::render(&state.metrics.registry).into_response()
}
