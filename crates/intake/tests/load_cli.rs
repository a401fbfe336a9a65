//! Black-box: `intake load` against `intake serve`, through the real binaries.

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

use std::process::Command;
use std::time::Duration;

use common::process::free_port;
use common::serve::{ready, start};
use intake_testkit::poll;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_counted_run_reports_every_upload_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    ready(&reqwest::Client::new(), &serve).await;
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["load", "--url", &serve.ingress, "--count", "50"])
        .args(["--concurrency", "4", "--size", "1KiB..64KiB", "--json"])
        .args(["--services", "testareno,advisor"])
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "intake load failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests"], 50, "{report}");
    assert_eq!(report["answered"], 50, "{report}");
    assert_eq!(report["accepted"], 50, "{report}");
    assert_eq!(report["by_status"], serde_json::json!({"202": 50}));
    assert_eq!(report["errors_by_kind"], serde_json::json!({}));
    assert_eq!(report["concurrency"], 4);
    let bytes = report["accepted_bytes"].as_u64().unwrap();
    assert!((50 * 1024..=50 * 64 * 1024).contains(&bytes), "{report}");
    let latency = &report["latency_ms"];
    for key in ["p50", "p95", "p99", "max"] {
        assert!(latency[key].as_f64().unwrap() > 0.0, "{report}");
    }
    assert!(latency["p50"].as_f64() <= latency["p99"].as_f64());
    assert!(latency["p99"].as_f64() <= latency["max"].as_f64());
    let secs = report["elapsed_seconds"].as_f64().unwrap();
    let rate = report["accepted_per_second"].as_f64().unwrap();
    assert!((rate - 50.0 / secs).abs() < 0.05 * rate + 0.01, "{report}");

    // Every accepted upload was stored: 50 objects in quarantine or perm (or rejected by the
    // validator, since load payloads are random bytes).
    let storage = dir.path().join("data/storage");
    poll::until_true(Duration::from_secs(30), "50 stored objects", || {
        let storage = storage.clone();
        async move {
            let count: usize = std::fs::read_dir(&storage)
                .map(|buckets| {
                    buckets
                        .flatten()
                        .filter(|b| b.path().is_dir())
                        .map(|b| {
                            // Objects only: keys hold no '.', sidecars and `.tmp/` do.
                            std::fs::read_dir(b.path())
                                .map(|d| {
                                    d.flatten()
                                        .filter(|e| !e.file_name().to_string_lossy().contains('.'))
                                        .count()
                                })
                                .unwrap_or(0)
                        })
                        .sum()
                })
                .unwrap_or(0);
            count == 50
        }
    })
    .await;
}

#[test]
fn a_refused_run_exits_non_zero_with_its_summary() {
    // Nothing listens on this port: every upload fails to connect.
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["load", "--url", &format!("http://127.0.0.1:{port}")])
        .args(["--count", "3", "--concurrency", "1", "--json"])
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests"], 3);
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["errors_by_kind"]["connect"], 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no upload was accepted"));
    assert!(
        !stderr.contains(" rate "),
        "no progress unless asked or on a terminal: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_prints_a_line_per_second_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    ready(&reqwest::Client::new(), &serve).await;
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["load", "--url", &serve.ingress, "--duration", "3500ms"])
        .args([
            "--concurrency",
            "2",
            "--size",
            "1KiB",
            "--json",
            "--progress",
        ])
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "intake load failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout holds only the summary");
    // `  1s  sent 40  accepted 39  failed 0  rate 39/s`
    let lines: Vec<Vec<u64>> = stderr
        .lines()
        .filter(|l| l.contains(" sent ") && l.contains(" rate "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.trim_end_matches("/s").trim_end_matches('s').parse().ok())
                .collect()
        })
        .collect();
    assert!(
        (3..=4).contains(&lines.len()),
        "a line per second: {stderr}"
    );
    for pair in lines.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert_eq!(
            before.len(),
            5,
            "seconds, sent, accepted, failed, rate: {stderr}"
        );
        assert!(
            after[0] > before[0] && after[1] >= before[1] && after[2] >= before[2],
            "{stderr}"
        );
    }
    let last = lines.last().unwrap();
    assert!(
        last[2] > 0 && last[3] == 0,
        "uploads accepted, none failed: {stderr}"
    );
    assert!(
        last[2] <= report["accepted"].as_u64().unwrap(),
        "{stderr} {report}"
    );
}
