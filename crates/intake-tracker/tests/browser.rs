//! The web page in headless Chromium (Playwright, e2e/tracker.test.mjs): the tracker runs on a real
//! listener with the embedded bus and SQLite, statuses arrive through the bus, and one arrives while
//! the page is open. Needs `INTAKE_TEST_CHROMIUM` and e2e/node_modules (scripts/servers/browser.sh).

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use common::Harness;
use intake_bus::{OutgoingMessage, StartFrom, Subscription};
use intake_testkit::poll::until_true;
use intake_tracker::ingest::{self, IngestSettings, Ingestor};
use intake_tracker::store::testsuite::status_query;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const LIVE_MESSAGE: &str = "advisor found 3 rule hits";

fn artifacts_dir() -> PathBuf {
    match std::env::var("INTAKE_TEST_ARTIFACTS") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_timeline_and_live_status_in_a_real_browser() {
    let chromium = intake_testkit::servers::required("INTAKE_TEST_CHROMIUM");
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "e2e/node_modules is missing: run scripts/test.sh (scripts/servers/browser.sh runs npm ci)"
    );
    let h = Harness::new().await;
    let topic = h.bus_config.topic(&h.bus_config.topics.payload_status);
    let cancel = CancellationToken::new();
    let consumer = h
        .bus
        .subscribe(Subscription {
            group: "payload_tracker".into(),
            topics: vec![topic.clone()],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let ingestor = Ingestor::new(
        h.store.clone(),
        h.bus.clone(),
        h.metrics.clone(),
        IngestSettings {
            dlq_topic: h.bus_config.topic(&h.bus_config.topics.payload_status_dlq),
            batch_size: 100,
            batch_max: 100,
            writers: 1,
            batch_wait: Duration::from_millis(20),
            retention: Duration::from_secs(7 * 86_400),
            future_skew: Duration::from_secs(86_400),
        },
    );
    let ingest_task = tokio::spawn(ingest::run_loop(ingestor, consumer, cancel.clone()));

    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let start = Utc::now() - chrono::Duration::seconds(30);
    let publish = |service: &str, source: Option<&str>, status: &str, msg: &str, secs: i64| {
        let mut value = json!({"service": service, "request_id": request_id, "status": status, "status_msg": msg,
            "account": "12345", "org_id": "54321", "inventory_id": "inv-browser-1",
            "date": intake_core::time::format(start + chrono::Duration::milliseconds(secs))});
        if let Some(source) = source {
            value["source"] = source.into();
        }
        OutgoingMessage::new(topic.clone(), value.to_string().into_bytes())
    };
    for m in [
        publish(
            "ingress",
            None,
            "received",
            "payload received by ingress",
            0,
        ),
        publish("ingress", None, "success", "validated by advisor", 1_250),
        publish(
            "puptoo",
            Some("inventory"),
            "error",
            "inventory refused the host",
            4_600,
        ),
    ] {
        h.bus.publish(m).await.unwrap();
    }
    for i in 0..5 {
        let other = json!({"service": "ingress", "request_id": format!("other-{i}"), "status": "received",
            "org_id": "777", "inventory_id": format!("inv-other-{i}"), "date": intake_core::time::now_string()});
        h.bus
            .publish(OutgoingMessage::new(
                topic.clone(),
                other.to_string().into_bytes(),
            ))
            .await
            .unwrap();
    }
    until_true(Duration::from_secs(20), "8 statuses stored", || async {
        h.store
            .list_statuses(&status_query())
            .await
            .map(|p| p.count == 8)
            .unwrap_or(false)
    })
    .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = h.router(false);
    let server_cancel = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { server_cancel.cancelled().await })
            .await
    });

    let signal = tempfile::tempdir().unwrap();
    let artifacts = artifacts_dir();
    let mut node = tokio::process::Command::new("node")
        .arg("--test")
        .arg("tracker.test.mjs")
        .current_dir(&e2e)
        .env("TRACKER_URL", format!("http://{address}"))
        .env("REQUEST_ID", &request_id)
        .env("INVENTORY_ID", "inv-other-3")
        .env("INTAKE_TEST_CHROMIUM", &chromium)
        .env("SIGNAL_DIR", signal.path())
        .env("LIVE_MESSAGE", LIVE_MESSAGE)
        .env("ARTIFACTS", &artifacts)
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let ready = signal.path().join("ready");
    let node_done = tokio::select! {
        status = node.wait() => Some(status.unwrap()),
        _ = until_true(Duration::from_secs(90), "the page to open the timeline", || async { ready.exists() }) => None,
    };
    let status = match node_done {
        Some(status) => status,
        None => {
            h.bus
                .publish(publish("advisor", None, "processing", LIVE_MESSAGE, 6_000))
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(90), node.wait())
                .await
                .expect("node finishes")
                .unwrap()
        }
    };
    cancel.cancel();
    ingest_task.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
    assert!(
        status.success(),
        "the browser tests failed (node --test output above)"
    );
    assert!(
        artifacts.join("tracker-timeline.png").exists(),
        "the screenshot is saved"
    );
}
