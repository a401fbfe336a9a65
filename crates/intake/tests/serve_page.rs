//! Black-box: the tracker's page as a person meets it. A fresh `intake serve` (the real binary, on
//! the embedded default, on loopback) shows the README's upload without any identity; a standalone
//! `intake tracker` answers 401 without one, and its page takes a pasted identity. The pages run in
//! headless Chromium (crates/intake-tracker/e2e/serve.test.mjs); needs `INTAKE_TEST_CHROMIUM` and
//! e2e/node_modules (scripts/servers/browser.sh).

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

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::free_port;
use common::serve::{ready, start};
use intake_testkit::poll;
use serde_json::Value;

const IDENTITY: &str = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";
const REQUEST_ID: &str = "52df9f748eabcfea";

/// Kills the child when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `GET {base}/api/v1/payloads` (with `identity` when given) lists the upload.
async fn lists_upload(client: &reqwest::Client, base: &str, identity: Option<&str>) -> bool {
    let mut request = client.get(format!("{base}/api/v1/payloads"));
    if let Some(identity) = identity {
        request = request.header("x-rh-identity", identity);
    }
    let Ok(answer) = request.send().await else {
        return false;
    };
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    body["data"].as_array().is_some_and(|rows| {
        rows.iter()
            .any(|r| r["request_id"] == REQUEST_ID && r["org_id"] == "54321")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_page_shows_uploads_without_identity_and_standalone_tracker_asks_for_one() {
    let chromium = intake_testkit::servers::required("INTAKE_TEST_CHROMIUM");
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../intake-tracker/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "crates/intake-tracker/e2e/node_modules is missing: run scripts/test.sh (scripts/servers/browser.sh runs npm ci)"
    );
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let serve = start(dir.path());
    ready(&client, &serve).await;

    let part = reqwest::multipart::Part::bytes(intake_testkit::archives::gzip(
        &intake_testkit::archives::sample_tar(),
    ))
    .file_name("archive.tar.gz")
    .mime_str("application/vnd.redhat.testareno.something+tgz")
    .unwrap();
    let answer = client
        .post(format!("{}/api/ingress/v1/upload", serve.ingress))
        .header("x-rh-identity", IDENTITY)
        .header("x-rh-insights-request-id", REQUEST_ID)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    poll::until_true(
        Duration::from_secs(30),
        "serve's tracker to list the upload to a caller without identity",
        || lists_upload(&client, &serve.tracker, None),
    )
    .await;

    // A standalone tracker on the same embedded bus, its own database and consumer group, also on
    // loopback: local mode stays off outside `serve`.
    let port = free_port();
    let standalone = format!("http://127.0.0.1:{port}");
    let _tracker = Child(
        Command::new(env!("CARGO_BIN_EXE_intake"))
            .arg("tracker")
            .current_dir(dir.path())
            .env("INTAKE_DATA_DIR", dir.path().join("data"))
            .env("TRACKER_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "TRACKER_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("standalone.db").display()),
            )
            .env("TRACKER_CONSUMER_GROUP", "standalone-tracker")
            .env("LOG_LEVEL", "warn")
            .env_remove("TRACKER_LOCAL_MODE")
            .env_remove("IDENTITY_REQUIRED")
            .env_remove("KAFKA_BROKERS")
            .env_remove("KAFKAMQ")
            .env_remove("BUS_DRIVER")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    poll::until_true(
        Duration::from_secs(30),
        "the standalone tracker to list the upload to its org",
        || lists_upload(&client, &standalone, Some(IDENTITY)),
    )
    .await;
    let refused = client
        .get(format!("{standalone}/api/v1/payloads"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["message"], "the x-rh-identity header is required");

    let artifacts = match std::env::var("INTAKE_TEST_ARTIFACTS") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts"),
    };
    let mut node = tokio::process::Command::new("node")
        .arg("--test")
        .arg("serve.test.mjs")
        .current_dir(&e2e)
        .env("SERVE_TRACKER_URL", &serve.tracker)
        .env("STANDALONE_TRACKER_URL", &standalone)
        .env("REQUEST_ID", REQUEST_ID)
        .env("IDENTITY", IDENTITY)
        .env("INTAKE_TEST_CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let status = tokio::time::timeout(Duration::from_secs(120), node.wait())
        .await
        .expect("node finishes")
        .unwrap();
    assert!(
        status.success(),
        "the browser tests failed (node --test output above)"
    );
    assert!(artifacts.join("serve-tracker-list.png").exists());
}
