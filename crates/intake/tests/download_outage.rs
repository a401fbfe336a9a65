//! Black-box: `intake serve` whose download links stop answering for about 30 s (spec messages.md,
//! "A verdict is about content only"). The links point at a relay the test controls
//! (`INGRESS_PUBLIC_URL`); while it answers 503, the validator retries, gives up with status
//! `error` and no verdict, and ingress announces the payloads again. Nothing may be rejected:
//! every payload waits in quarantine and reaches perm once the links work again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use crate::common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::serve::{ready, start_with};
use common::upload::{archive, post};
use intake_testkit::poll;

/// Relays GETs to ingress while `up`; answers 503 otherwise.
struct Relay {
    target: String,
    up: AtomicBool,
    refused: AtomicUsize,
    client: reqwest::Client,
}

async fn forward(State(relay): State<Arc<Relay>>, request: Request) -> Response {
    if !relay.up.load(Ordering::SeqCst) {
        relay.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match relay
        .client
        .get(format!("{}{path}", relay.target))
        .send()
        .await
    {
        Ok(answer) => {
            let status = answer.status();
            match answer.bytes().await {
                Ok(body) => (status, body).into_response(),
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

fn keys(dir: &Path, bucket: &str) -> Vec<String> {
    match std::fs::read_dir(dir.join("data/storage").join(bucket)) {
        Ok(entries) => {
            let mut keys: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".tmp" && !n.ends_with(".meta.json"))
                .collect();
            keys.sort();
            keys
        }
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn payloads_wait_in_quarantine_while_downloads_fail_and_reach_perm_after() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let serve = start_with(
        dir.path(),
        &[
            ("INGRESS_PUBLIC_URL", &public),
            ("VALIDATOR_DOWNLOAD_RETRY_FOR", "3s"),
            ("INGRESS_REANNOUNCE_AFTER", "2s"),
            ("INGRESS_REANNOUNCE_ATTEMPTS", "100"),
        ],
    );
    let relay = Arc::new(Relay {
        target: serve.ingress.clone(),
        up: AtomicBool::new(true),
        refused: AtomicUsize::new(0),
        client: reqwest::Client::new(),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(relay.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    ready(&client, &serve).await;
    relay.up.store(false, Ordering::SeqCst);

    let ids: Vec<String> = (0..3).map(|i| format!("outage{i}")).collect();
    for id in &ids {
        let answer = post(&client, &serve.ingress, id, archive(id))
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "{id}");
    }
    // About 30 s of failing downloads: several validator give-ups and announces again.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let refused = relay.refused.load(Ordering::SeqCst);
    assert!(
        refused >= 3 * 4,
        "downloads were attempted and retried: {refused}"
    );
    assert_eq!(keys(dir.path(), "insights-upload-quarantine"), ids);
    assert!(keys(dir.path(), "insights-upload-rejected").is_empty());
    assert!(keys(dir.path(), "insights-upload-perm-test").is_empty());

    relay.up.store(true, Ordering::SeqCst);
    poll::until_true(Duration::from_secs(60), "every payload in perm", || {
        let perm = keys(dir.path(), "insights-upload-perm-test");
        let expected = ids.clone();
        async move { perm == expected }
    })
    .await;
    assert!(keys(dir.path(), "insights-upload-rejected").is_empty());
    poll::until_true(Duration::from_secs(10), "quarantine emptied", || {
        let left = keys(dir.path(), "insights-upload-quarantine");
        async move { left.is_empty() }
    })
    .await;
    let lost = ids.len() - keys(dir.path(), "insights-upload-perm-test").len();
    let rejected = keys(dir.path(), "insights-upload-rejected").len();
    println!(
        "download outage: {} payloads, {refused} downloads refused, lost = {lost}, rejected = {rejected}",
        ids.len()
    );
}
