//! Black-box: statuses a 202 promised reach the bus even when SIGTERM follows the answer at once
//! (README, `SHUTDOWN_GRACE`: in-flight work finishes before the process ends).

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
use std::time::{Duration, Instant};

use common::process::free_port;
use common::upload::{archive, post};
use intake_core::config::{BusConfig, EnvMap};
use intake_testkit::poll;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn statuses_after_a_202_survive_an_immediate_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("ingress")
        .current_dir(dir.path())
        .env("INTAKE_DATA_DIR", dir.path().join("data"))
        .env("INGRESS_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .env_remove("S3_ENDPOINT_URL")
        .env_remove("STORAGE_DRIVER")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    poll::until_true(Duration::from_secs(60), "ingress ready", || async {
        matches!(client.get(format!("{base}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let ids: Vec<String> = (0..8).map(|i| format!("drain{i:027}")).collect();
    let answers =
        futures::future::join_all(ids.iter().map(|id| post(&client, &base, id, archive(id)))).await;
    // SIGTERM as soon as the last 202 is in.
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    for a in answers {
        assert_eq!(a.unwrap().status(), 202);
    }
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let config = BusConfig::from_env(&EnvMap::new(), &dir.path().join("data")).unwrap();
    let bus = intake_bus::open(&config).await.unwrap();
    let values: Vec<Value> =
        intake_bus::testsuite::read_to_end(bus.as_ref(), "platform.payload-status")
            .await
            .iter()
            .filter_map(|m| serde_json::from_slice(&m.value).ok())
            .collect();
    for id in &ids {
        for status in ["received", "processing"] {
            assert!(
                values
                    .iter()
                    .any(|v| v["request_id"] == id.as_str() && v["status"] == status),
                "no {status} status for {id}"
            );
        }
    }
}
