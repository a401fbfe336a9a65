//! Black-box: every HTTP request leaves one access-log line (method, path, status, bytes, duration,
//! request id), refused ones included, read from the real binary's log output.

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

use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::free_port;
use intake_testkit::poll;
use serde_json::Value;

/// Kills the child when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The access lines (target `access`) of a JSON log.
fn access_lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_upload_leaves_an_access_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ingress.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _ingress = Child(
        Command::new(env!("CARGO_BIN_EXE_intake"))
            .arg("ingress")
            .current_dir(dir.path())
            .env("INTAKE_DATA_DIR", dir.path().join("data"))
            .env("INGRESS_LISTEN", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", "info")
            .env("LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .env_remove("KAFKA_BROKERS")
            .env_remove("KAFKAMQ")
            .env_remove("BUS_DRIVER")
            .env_remove("S3_ENDPOINT_URL")
            .env_remove("STORAGE_DRIVER")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    poll::until_true(Duration::from_secs(60), "intake ingress ready", || {
        let request = client.get(format!("{base}/readyz")).send();
        async move { matches!(request.await, Ok(r) if r.status() == 200) }
    })
    .await;

    let answer = client
        .post(format!("{base}/api/ingress/v1/upload"))
        .header("x-rh-identity", "!!!")
        .header("x-rh-insights-request-id", "accesslog0001")
        .body("not multipart")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let sent = answer.bytes().await.unwrap().len() as u64;

    poll::until_true(Duration::from_secs(10), "the 400's access line", || async {
        access_lines(&log)
            .iter()
            .any(|l| l["fields"]["status"] == 400)
    })
    .await;
    let lines = access_lines(&log);
    let line = lines.iter().find(|l| l["fields"]["status"] == 400).unwrap();
    assert_eq!(line["level"], "INFO");
    // What a log aggregator keys on: the part and the machine, on every JSON line.
    assert_eq!(line["app"], "intake-ingress", "{line}");
    assert!(
        line["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{line}"
    );
    assert_eq!(line["span"]["method"], "POST", "{line}");
    assert_eq!(line["span"]["path"], "/api/ingress/v1/upload", "{line}");
    assert_eq!(line["span"]["request_id"], "accesslog0001", "{line}");
    assert_eq!(line["fields"]["bytes"], sent, "{line}");
    assert!(
        line["fields"]["duration_ms"].as_f64().unwrap() >= 0.0,
        "{line}"
    );
    // The readiness probes before it were logged too, one line each.
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["path"] == "/readyz" && l["fields"]["status"] == 200),
        "{lines:?}"
    );
}
