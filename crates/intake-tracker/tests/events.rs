//! `GET /payloads/{request_id}/events`: replay oldest first, `Last-Event-ID`, a new status within 2 s,
//! each status followed by the duration map.

use crate::common;

use std::time::{Duration, Instant};

use axum::body::Body;
use chrono::{SubsecRound, Utc};
use common::Harness;
use http::Request;
use http_body_util::BodyExt;
use intake_tracker::store::testsuite::status;
use tower::ServiceExt;

/// Reads the stream until `done` holds for the text so far, or fails after `limit`.
async fn read_until(
    body: &mut Body,
    text: &mut String,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(text) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, body.frame())
            .await
            .unwrap_or_else(|_| panic!("stream so far:\n{text}"));
        if let Some(Ok(frame)) = frame {
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

fn events(text: &str, kind: &str) -> Vec<serde_json::Value> {
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l == format!("event: {kind}")))
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test]
async fn replays_then_streams_new_statuses_with_durations() {
    let h = Harness::new().await;
    let t = (Utc::now() - chrono::Duration::minutes(5)).trunc_subsecs(6);
    h.store
        .store_batch(&[
            status("sse-1", "ingress", None, "received", t),
            status(
                "sse-1",
                "ingress",
                None,
                "processing",
                t + chrono::Duration::microseconds(357_764),
            ),
        ])
        .await
        .unwrap();
    let router = h.router(false);
    let response = router
        .clone()
        .oneshot(
            Request::get("/api/v1/payloads/sse-1/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut text = String::new();
    read_until(&mut body, &mut text, Duration::from_secs(5), |t| {
        events(t, "duration").len() == 2
    })
    .await;
    let statuses = events(&text, "status");
    assert_eq!(statuses[0]["status"], "received", "replay is oldest first");
    assert_eq!(statuses[1]["status"], "processing");
    assert_eq!(statuses[1]["source"], "");
    assert!(text.contains(&format!("id: {}\n", statuses[1]["id"])));
    let durations = events(&text, "duration");
    assert_eq!(durations[1]["ingress:undefined"], "00:00:00.357764");
    assert_eq!(durations[1]["total_time"], "00:00:00.357764");

    let stored_at = Instant::now();
    h.store
        .store_batch(&[status(
            "sse-1",
            "advisor",
            None,
            "success",
            t + chrono::Duration::seconds(1),
        )])
        .await
        .unwrap();
    read_until(&mut body, &mut text, Duration::from_secs(2), |t| {
        events(t, "duration").len() == 3
    })
    .await;
    assert!(
        stored_at.elapsed() < Duration::from_secs(2),
        "a new status arrives within 2 s"
    );
    assert_eq!(events(&text, "status")[2]["service"], "advisor");
    assert_eq!(
        events(&text, "duration")[2]["total_time"],
        "00:00:01.000000"
    );

    // Reconnecting with Last-Event-ID replays only what came after it.
    let last = statuses[1]["id"].to_string();
    let response = router
        .oneshot(
            Request::get("/v1/payloads/sse-1/events")
                .header("last-event-id", last)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut text = String::new();
    read_until(&mut body, &mut text, Duration::from_secs(5), |t| {
        !events(t, "duration").is_empty()
    })
    .await;
    let replayed = events(&text, "status");
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["service"], "advisor");
}
