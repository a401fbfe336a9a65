//! `GET {prefix}/track/{request_id}` (ingress.md) against a small tracker served by the test: what is
//! forwarded, 502 when the tracker is down, 404 for unknown ids and for other tenants' ids, and the
//! three verbosity levels.

use crate::harness;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use harness::identity;
use http::{HeaderMap, StatusCode};
use intake_core::Identity;
use serde_json::{json, Value};

/// What the tracker received: request id, query string, forwarded identity.
type Seen = (String, Option<String>, Option<String>);

/// A tracker that answers `GET /api/v1/payloads/{id}` from a table (404 for ids not in it).
#[derive(Clone, Default)]
struct FakeTracker {
    answers: Arc<Mutex<HashMap<String, (u16, Value)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeTracker {
    fn answer(&self, id: &str, status: u16, body: Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(id.to_owned(), (status, body));
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Serves the tracker on 127.0.0.1; returns the `INGRESS_TRACKER_URL` for it.
    async fn serve(&self) -> String {
        let app = Router::new()
            .route("/api/v1/payloads/{id}", get(payloads))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/api/v1/payloads/")
    }
}

async fn payloads(
    State(tracker): State<FakeTracker>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let identity = headers
        .get("x-rh-identity")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    tracker
        .seen
        .lock()
        .unwrap()
        .push((id.clone(), query, identity));
    let answer = tracker.answers.lock().unwrap().get(&id).cloned();
    match answer {
        Some((status, body)) => (StatusCode::from_u16(status).unwrap(), Json(body)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "not found"}))).into_response(),
    }
}

/// A tracker body for `id` owned by `org`: newest first, as ingress asks.
fn history(id: &str, org: &str) -> Value {
    json!({
        "data": [
            {"service": "ingress", "account": "12345", "org_id": org, "request_id": id,
             "status": "success", "status_msg": "validated by advisor; announced on platform.upload.available",
             "date": "2024-05-02T09:30:14.120000Z", "inventory_id": "f4d3c2b1"},
            {"service": "ingress", "account": "12345", "org_id": org, "request_id": id,
             "status": "processing", "status_msg": "announced to advisor",
             "date": "2024-05-02T09:30:12.481220Z"}
        ],
        "duration": {"ingress": "1.64s"}
    })
}

fn associate() -> String {
    base64::engine::general_purpose::STANDARD.encode(
        json!({"identity": {"type": "Associate", "associate": {"email": "a@example.com"}}})
            .to_string(),
    )
}

async fn with_tracker() -> (harness::Ingress, FakeTracker) {
    let tracker = FakeTracker::default();
    let url = tracker.serve().await;
    let h = harness::start(&[("INGRESS_TRACKER_URL", &url)]).await;
    (h, tracker)
}

#[tokio::test]
async fn unreachable_tracker_is_502() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api/v1/payloads/");
    let h = harness::start(&[("INGRESS_TRACKER_URL", &url)]).await;
    let answer = h
        .get("/api/ingress/v1/track/trk-down", Some(&identity()))
        .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("x-rh-insights-request-id"), Some("trk-down"));
    assert_eq!(
        answer.json(),
        json!({
            "status": 502,
            "title": "Bad Gateway",
            "message": "the payload tracker is unreachable; retry later",
            "request_id": "trk-down",
        })
    );
}

#[tokio::test]
async fn tracker_5xx_is_502_and_its_404_or_no_rows_is_404() {
    let (h, tracker) = with_tracker().await;
    tracker.answer("trk-broken", 503, json!({"message": "db down"}));
    tracker.answer("trk-empty", 200, json!({"data": [], "duration": {}}));
    let id = identity();

    let answer = h.get("/api/ingress/v1/track/trk-broken", Some(&id)).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["title"], "Bad Gateway");

    for unknown in ["trk-missing", "trk-empty"] {
        let answer = h
            .get(&format!("/api/ingress/v1/track/{unknown}"), Some(&id))
            .await;
        assert_eq!(answer.status, 404, "{unknown}");
        assert_eq!(answer.header("x-rh-insights-request-id"), Some(unknown));
        assert_eq!(
            answer.json(),
            json!({
                "status": 404,
                "title": "Not Found",
                "message": format!("no payload with request id {unknown} is known"),
                "request_id": unknown,
            })
        );
    }
}

#[tokio::test]
async fn another_tenants_payload_is_not_confirmed() {
    let (h, tracker) = with_tracker().await;
    tracker.answer("trk-theirs", 200, history("trk-theirs", "99999"));
    let id = identity();

    // Someone else's id answers exactly like an id nobody knows.
    let theirs = h.get("/api/ingress/v1/track/trk-theirs", Some(&id)).await;
    let unknown = h.get("/api/ingress/v1/track/trk-nobody", Some(&id)).await;
    assert_eq!(theirs.status, 404);
    assert_eq!(unknown.status, 404);
    assert_eq!(
        theirs.json()["message"].as_str().unwrap(),
        unknown.json()["message"]
            .as_str()
            .unwrap()
            .replace("trk-nobody", "trk-theirs")
    );
    // Also at verbosity 2, which would otherwise hand over the tracker's body.
    let theirs = h
        .get("/api/ingress/v1/track/trk-theirs?verbosity=2", Some(&id))
        .await;
    assert_eq!(theirs.status, 404);

    // The owner and an associate see it.
    let owner = Identity::encode("1", "99999");
    assert_eq!(
        h.get("/api/ingress/v1/track/trk-theirs", Some(&owner))
            .await
            .status,
        200
    );
    assert_eq!(
        h.get("/api/ingress/v1/track/trk-theirs", Some(&associate()))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn verbosity_picks_the_newest_status_or_the_whole_history() {
    let (h, tracker) = with_tracker().await;
    let body = history("trk-1", "54321");
    tracker.answer("trk-1", 200, body.clone());
    let id = identity();
    let newest = json!({
        "status": "success",
        "status_msg": "validated by advisor; announced on platform.upload.available",
        "date": "2024-05-02T09:30:14.120000Z",
        "service": "ingress",
        "inventory_id": "f4d3c2b1",
    });

    for prefix in intake_ingress::openapi::PREFIXES {
        for query in ["", "?verbosity=0", "?verbosity=1"] {
            let answer = h
                .get(&format!("{prefix}/track/trk-1{query}"), Some(&id))
                .await;
            assert_eq!(answer.status, 200, "{prefix} {query}");
            assert_eq!(answer.header("content-type"), Some("application/json"));
            assert_eq!(answer.header("x-rh-insights-request-id"), Some("trk-1"));
            assert_eq!(answer.json(), newest, "{prefix} {query}");
        }
    }
    let whole = h
        .get("/api/ingress/v1/track/trk-1?verbosity=2", Some(&id))
        .await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.json(), body);

    // Every key is present even when the newest row lacks it.
    tracker.answer(
        "trk-2",
        200,
        json!({"data": [{"org_id": "54321", "status": "received", "date": "2024-05-02T09:30:12Z"}]}),
    );
    let sparse = h.get("/api/ingress/v1/track/trk-2", Some(&id)).await;
    assert_eq!(
        sparse.json(),
        json!({"status": "received", "status_msg": "", "date": "2024-05-02T09:30:12Z",
               "service": "", "inventory_id": ""})
    );

    for bad in ["3", "-1", "high", ""] {
        let answer = h
            .get(
                &format!("/api/ingress/v1/track/trk-1?verbosity={bad}"),
                Some(&id),
            )
            .await;
        assert_eq!(answer.status, 400, "verbosity={bad}");
        assert_eq!(answer.json()["status"], 400);
    }

    // The tracker was asked newest-first, with the caller's identity forwarded as sent.
    let seen = tracker.seen();
    assert!(!seen.is_empty());
    for (asked, query, forwarded) in seen {
        assert!(asked == "trk-1" || asked == "trk-2", "{asked}");
        assert_eq!(query.as_deref(), Some("sort_by=date&sort_dir=desc"));
        assert_eq!(forwarded.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn bad_request_id_and_missing_identity() {
    let (h, tracker) = with_tracker().await;
    tracker.answer("trk-1", 200, history("trk-1", "54321"));
    let answer = h
        .get("/api/ingress/v1/track/trk.1", Some(&identity()))
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["status"], 400);
    let answer = h.get("/api/ingress/v1/track/trk-1", None).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["status"], 401);
    assert_eq!(answer.header("x-rh-insights-request-id"), Some("trk-1"));
    let answer = h.get("/api/ingress/v1/track/trk-1", Some("%%%")).await;
    assert_eq!(answer.status, 400);
    // None of these reached the tracker.
    assert!(tracker.seen().is_empty());
}
