//! Black-box: `intake pipeline` with `PIPELINE_LISTEN` can be probed and scraped like ingress.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use intake_testkit::poll;

/// Kills the child when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_serves_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _pipeline = Child(
        Command::new(env!("CARGO_BIN_EXE_intake"))
            .arg("pipeline")
            .current_dir(dir.path())
            .env("INTAKE_DATA_DIR", dir.path().join("data"))
            .env("PIPELINE_LISTEN", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", "warn")
            .env_remove("PIPELINE_CONFIG")
            .env_remove("KAFKA_BROKERS")
            .env_remove("KAFKAMQ")
            .env_remove("BUS_DRIVER")
            .env_remove("S3_ENDPOINT_URL")
            .env_remove("STORAGE_DRIVER")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    for path in ["/livez", "/readyz"] {
        let url = format!("{base}{path}");
        poll::until_true(Duration::from_secs(60), &format!("{url} 200"), || {
            let request = client.get(&url).send();
            async move { matches!(request.await, Ok(r) if r.status() == 200) }
        })
        .await;
    }
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("ccx_consumer_received_total 0"), "{text}");
    let missing = client.get(format!("{base}/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
