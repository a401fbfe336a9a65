//! Black-box: admission control (spec ingress.md, "Admission"). `intake ingress` alone, with no
//! validator answering, accepts `INGRESS_MAX_BACKLOG` uploads and then answers 503 with
//! `Retry-After` and a JSON message; the backlog survives a restart (it is the payloads in
//! quarantine without a verdict, not a counter in memory); once a validator drains it, uploads are
//! accepted again, and `intake upload`, waiting as `Retry-After` asks, gets through by itself.
//! `intake load` against a full backlog sees only 202 and 503.

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
use std::process::Stdio;
use std::time::Duration;

use common::process::{embedded, embedded_ingress, free_port, Killed};
use common::upload::{archive, post};
use intake_testkit::poll;
use serde_json::Value;

const LIMIT: usize = 3;

/// `intake ingress` on the embedded default in `dir`, listening on `port`, with the limit.
async fn ingress(dir: &Path, port: u16) -> Killed {
    embedded_ingress(dir, port, &[("INGRESS_MAX_BACKLOG", LIMIT.to_string())]).await
}

/// The value of the `ingress_backlog_payloads` gauge.
async fn backlog_gauge(client: &reqwest::Client, base: &str) -> Option<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ingress_backlog_payloads "))
        .and_then(|v| v.trim().parse().ok())
}

async fn refused_for_backlog(client: &reqwest::Client, base: &str, id: &str) {
    let answer = post(client, base, id, archive(id)).await.unwrap();
    assert_eq!(answer.status(), 503, "upload {id} past the backlog limit");
    let retry_after: u64 = answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = answer.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("waiting for validation") && message.contains(&LIMIT.to_string()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_backlog_refuses_with_retry_after_until_a_validator_drains_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ingress_process = ingress(dir.path(), port).await;

    for i in 0..LIMIT {
        let id = format!("admitted{i}");
        let answer = post(&client, &base, &id, archive(&id)).await.unwrap();
        assert_eq!(answer.status(), 202, "upload {i} within the limit");
    }
    refused_for_backlog(&client, &base, "over1").await;
    assert_eq!(backlog_gauge(&client, &base).await, Some(LIMIT as f64));

    // A restart does not forget what waits in quarantine.
    drop(ingress_process);
    ingress_process = ingress(dir.path(), port).await;
    refused_for_backlog(&client, &base, "over2").await;

    // `intake upload` waits as Retry-After asks and tries again...
    let file = dir.path().join("late.tar.gz");
    std::fs::write(&file, archive("late")).unwrap();
    let upload = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .args([
            "upload",
            "--url",
            &base,
            "--service",
            "advisor",
            "--org-id",
            "54321",
        ])
        .args(["--max-attempts", "30", "--request-id", "late1"])
        .arg(&file)
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // ...until a validator answers for the backlog: the verdicts free the room.
    let _validator = embedded(
        dir.path(),
        &["validator"],
        &[("INGRESS_PUBLIC_URL", base.clone())],
    );
    let out = tokio::time::timeout(Duration::from_secs(120), upload.wait_with_output())
        .await
        .expect("intake upload finished")
        .unwrap();
    assert!(
        out.status.success(),
        "intake upload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "late1");
    poll::until_true(Duration::from_secs(60), "the backlog to drain", || async {
        backlog_gauge(&client, &base).await == Some(0.0)
    })
    .await;
    let answer = post(&client, &base, "after", archive("after"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    drop(ingress_process);
}

#[tokio::test(flavor = "multi_thread")]
async fn load_against_a_full_backlog_sees_only_202_and_503_and_waits_as_asked() {
    const WORKERS: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _ingress = ingress(dir.path(), port).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .args([
            "load",
            "--url",
            &base,
            "--concurrency",
            &WORKERS.to_string(),
        ])
        .args(["--duration", "4s", "--size", "10KiB", "--json"])
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_status = report["by_status"].as_object().unwrap();
    assert_eq!(by_status["202"], LIMIT, "{report}");
    assert_eq!(
        by_status.keys().collect::<Vec<_>>(),
        ["202", "503"],
        "{report}"
    );
    // Each worker pauses for Retry-After after a 503: a few refusals per worker in 4 s, where a
    // client that ignored it would have sent hundreds.
    let refused = by_status["503"].as_u64().unwrap();
    assert!(refused <= WORKERS * 4, "{refused} refusals: {report}");
}
