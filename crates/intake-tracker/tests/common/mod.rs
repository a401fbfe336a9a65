//! Shared test set-up: an embedded bus and a SQLite store in a temporary directory, the router, and
//! requests through it without a listener.
#![allow(
    dead_code,
    reason = "Each test binary uses a different subset of these helpers"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use base64::Engine;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use intake_bus::Bus;
use intake_core::config::{BusConfig, EnvMap};
use intake_tracker::store::sqlite::SqliteStore;
use intake_tracker::{ApiSettings, AppState, Metrics, StatusStore};
use serde_json::Value;
use tower::ServiceExt;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub bus: Arc<dyn Bus>,
    pub bus_config: BusConfig,
    pub store: Arc<dyn StatusStore>,
    pub metrics: Arc<Metrics>,
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus_config = BusConfig::from_env(&EnvMap::new(), dir.path()).unwrap();
        let bus = intake_bus::open(&bus_config).await.unwrap();
        let url = format!("sqlite://{}", dir.path().join("tracker.db").display());
        let store: Arc<dyn StatusStore> = Arc::new(SqliteStore::open(&url).await.unwrap());
        Self {
            dir,
            bus,
            bus_config,
            store,
            metrics: Arc::new(Metrics::new().unwrap()),
        }
    }

    pub fn router(&self, identity_required: bool) -> Router {
        self.router_with(self.store.clone(), identity_required)
    }

    pub fn router_with(&self, store: Arc<dyn StatusStore>, identity_required: bool) -> Router {
        let mut settings = ApiSettings::new(identity_required, 50, 7);
        settings.event_poll = std::time::Duration::from_millis(100);
        intake_tracker::router(AppState::new(
            store,
            Some(self.bus.clone()),
            self.metrics.clone(),
            settings,
        ))
    }
}

/// `x-rh-identity` for a customer of `org_id`.
pub fn identity(org_id: &str) -> String {
    intake_core::Identity::encode("12345", org_id)
}

/// `x-rh-identity` for an Associate (sees every org).
pub fn associate() -> String {
    base64::engine::general_purpose::STANDARD
        .encode(r#"{"identity":{"type":"Associate","associate":{"email":"a@example.com"}}}"#)
}

/// GETs `uri` and returns the status and the JSON body (`Value::Null` when not JSON).
pub async fn get(router: &Router, uri: &str, identity: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(uri);
    if let Some(id) = identity {
        request = request.header("x-rh-identity", id);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts the shared error body: `status`, `title`, a `message` naming `mentions`.
pub fn assert_error(body: &Value, status: u16, mentions: &str) {
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "message {message:?} should mention {mentions:?}"
    );
}
