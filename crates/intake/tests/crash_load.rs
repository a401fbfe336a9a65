//! Black-box: `intake serve` killed with SIGKILL in the middle of a bounded load (2,000 uploads over
//! 32 connections), then started again on the same data directory and ports. Every request id
//! answered 202 must end in perm (the archives are all good), be tracked, and be in one bucket
//! only: lost = 0 and duplicated = 0, printed.

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

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::free_port;
use common::serve::{ready, start_with, statuses, Serve};
use common::upload::{archive, post};
use intake_testkit::poll;

const UPLOADS: usize = 2000;
const CONNECTIONS: usize = 32;
/// Accepted uploads before the kill.
const KILL_AFTER: usize = 600;

fn keys(dir: &Path, bucket: &str) -> BTreeSet<String> {
    match std::fs::read_dir(dir.join("data/storage").join(bucket)) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".tmp" && !n.ends_with(".meta.json"))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn start_on(dir: &Path, ingress_port: u16, tracker_port: u16) -> Serve {
    let ingress = format!("http://127.0.0.1:{ingress_port}");
    let tracker = format!("http://127.0.0.1:{tracker_port}");
    let mut serve = start_with(
        dir,
        &[
            ("INGRESS_LISTEN", &format!("127.0.0.1:{ingress_port}")),
            ("INGRESS_PUBLIC_URL", &ingress),
            ("TRACKER_LISTEN", &format!("127.0.0.1:{tracker_port}")),
            (
                "INGRESS_TRACKER_URL",
                &format!("{tracker}/api/v1/payloads/"),
            ),
            ("INGRESS_MAX_CONCURRENT_UPLOADS", "64"),
            ("INGRESS_REANNOUNCE_AFTER", "20s"),
        ],
    );
    serve.ingress = ingress;
    serve.tracker = tracker;
    serve
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_in_the_middle_of_a_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ingress_port, tracker_port) = (free_port(), free_port());
    let serve = start_on(dir.path(), ingress_port, tracker_port);
    let client = reqwest::Client::new();
    ready(&client, &serve).await;

    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for _ in 0..CONNECTIONS {
        let (next, accepted, client, base) = (
            next.clone(),
            accepted.clone(),
            client.clone(),
            serve.ingress.clone(),
        );
        load.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= UPLOADS {
                    return;
                }
                let id = format!("crashload{i:05}");
                match post(&client, &base, &id, archive(&id)).await {
                    Ok(answer) if answer.status() == 202 => accepted.lock().unwrap().push(id),
                    // Refused, or cut by the kill: nothing was promised.
                    _ => {}
                }
            }
        }));
    }
    poll::until_true(
        Duration::from_secs(120),
        "uploads accepted before the kill",
        || {
            let n = accepted.lock().unwrap().len();
            async move { n >= KILL_AFTER }
        },
    )
    .await;
    drop(serve); // SIGKILL
    for task in load {
        task.await.unwrap();
    }
    let promised: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();

    let serve = start_on(dir.path(), ingress_port, tracker_port);
    ready(&client, &serve).await;
    // Settled: every promised payload in perm or rejected and no longer in quarantine (a move
    // interrupted by the kill leaves a copy in both until its verdict is applied again).
    let settled = |dir: &Path| {
        let perm = keys(dir, "insights-upload-perm-test");
        let rejected = keys(dir, "insights-upload-rejected");
        let quarantine = keys(dir, "insights-upload-quarantine");
        promised
            .iter()
            .all(|id| (perm.contains(id) || rejected.contains(id)) && !quarantine.contains(id))
    };
    // Bounded, without a panic: what is still unsettled then is counted below.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !settled(dir.path()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The restarted tracker catches up on the statuses in its own time, within the same bound.
    while std::time::Instant::now() < deadline {
        let mut all_tracked = true;
        for id in &promised {
            let rows = statuses(&client, &serve.tracker, id).await;
            if !rows
                .iter()
                .any(|(service, status)| service == "ingress" && status == "success")
            {
                all_tracked = false;
                break;
            }
        }
        if all_tracked {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let perm = keys(dir.path(), "insights-upload-perm-test");
    let rejected = keys(dir.path(), "insights-upload-rejected");
    let quarantine = keys(dir.path(), "insights-upload-quarantine");
    let lost: Vec<&String> = promised
        .iter()
        .filter(|id| !perm.contains(*id) && !rejected.contains(*id))
        .collect();
    let duplicated: Vec<&String> = promised
        .iter()
        .filter(|id| {
            [&perm, &rejected, &quarantine]
                .iter()
                .filter(|b| b.contains(*id))
                .count()
                > 1
        })
        .collect();
    let mut untracked = Vec::new();
    let mut tracked_twice = 0;
    for id in &promised {
        let rows = statuses(&client, &serve.tracker, id).await;
        let successes = rows
            .iter()
            .filter(|(service, status)| service == "ingress" && status == "success")
            .count();
        if successes == 0 {
            untracked.push(id.clone());
        }
        if successes > 1 {
            tracked_twice += 1;
        }
    }
    println!(
        "kill -9 under load: {} accepted of {UPLOADS}, {} in perm, {} rejected, lost = {}, duplicated = {}, untracked = {}, success status twice = {tracked_twice}",
        promised.len(),
        perm.len(),
        rejected.len(),
        lost.len(),
        duplicated.len(),
        untracked.len(),
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");
    assert!(rejected.is_empty(), "good archives rejected: {rejected:?}");
    assert!(
        untracked.is_empty(),
        "not tracked as a success: {untracked:?}"
    );
}
