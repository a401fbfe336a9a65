//! Black-box: `intake topics tail --until-end` stops at the end of the topic (kcat's `-e`) on the
//! embedded bus, after printing what was there, also when the topic has several partitions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn intake(dir: &std::path::Path, args: &[&str]) -> Output {
    intake_with(dir, &[], args)
}

fn intake_with(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("LOG_LEVEL", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("intake {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn tail_until_end_prints_the_topic_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let sent = intake(
        dir.path(),
        &["tracker", "mock", "--payloads", "2", "--rate", "1000"],
    );
    assert!(sent.status.success(), "{sent:?}");
    let statuses = mock_statuses(&sent.stdout);
    assert!(statuses > 0);

    let lines = tail_status_topic_to_the_end(dir.path());
    assert_eq!(lines.len(), statuses, "every status, then the end");
    assert!(lines
        .iter()
        .all(|l| l["topic"] == "platform.payload-status"));

    // From now on: nothing new, so it ends at once with nothing printed.
    let new = intake(
        dir.path(),
        &["topics", "tail", "platform.payload-status", "-e"],
    );
    assert!(new.status.success(), "{new:?}");
    assert!(new.stdout.is_empty());
}

#[test]
fn tail_until_end_reads_every_partition_of_a_topic_made_with_several() {
    let dir = tempfile::tempdir().unwrap();
    let sent = intake_with(
        dir.path(),
        &[("BUS_PARTITIONS", "3")],
        &["tracker", "mock", "--payloads", "6", "--rate", "1000"],
    );
    assert!(sent.status.success(), "{sent:?}");
    let statuses = mock_statuses(&sent.stdout);

    let lines = tail_status_topic_to_the_end(dir.path());
    assert_eq!(
        lines.len(),
        statuses,
        "every status of every partition, then the end"
    );
    // Statuses are keyed by request id: one payload's statuses share a partition, each partition
    // numbering its own offsets from 0.
    let mut by_key: std::collections::BTreeMap<String, std::collections::BTreeSet<i64>> =
        Default::default();
    let mut by_partition: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for l in &lines {
        let partition = l["partition"].as_i64().unwrap();
        assert!((0..3).contains(&partition), "{l}");
        by_key
            .entry(l["key"].as_str().unwrap().to_owned())
            .or_default()
            .insert(partition);
        by_partition
            .entry(partition)
            .or_default()
            .push(l["offset"].as_i64().unwrap());
    }
    assert_eq!(by_key.len(), 6, "six payloads");
    assert!(by_key.values().all(|p| p.len() == 1), "{by_key:?}");
    for offsets in by_partition.values_mut() {
        offsets.sort();
        assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
}

/// How many statuses `intake tracker mock` says it published (its report's second word).
fn mock_statuses(stdout: &[u8]) -> usize {
    let report = String::from_utf8_lossy(stdout);
    report
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected mock report: {report}"))
}

/// Every record of the status topic from its beginning, by `topics tail --until-end` (which must
/// exit by itself), one JSON object each.
fn tail_status_topic_to_the_end(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let all = intake(
        dir,
        &[
            "topics",
            "tail",
            "platform.payload-status",
            "--from-beginning",
            "--until-end",
        ],
    );
    assert!(all.status.success(), "{all:?}");
    String::from_utf8(all.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
