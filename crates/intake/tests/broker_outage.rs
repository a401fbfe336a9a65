//! Black-box: `intake serve` (ingress, validator, tracker, pipeline) on a Kafka broker of the
//! test's own, which stops answering for longer than any bus timeout and then goes on. While it
//! is down the process must stay up, say not-ready (ingress and tracker) and refuse uploads with
//! 503 and `Retry-After`; once it is back it must become ready again by itself and accept uploads
//! again. Every payload answered 202 before or during the outage is in perm and tracked: lost = 0.
//! Uploads accepted after the outage reaching perm is not asserted: on tansu 0.6 the consumer
//! groups never get their partitions back. Its coordinator keeps the member whose session lapsed
//! during the outage as the group's leader: every JoinGroup answer names that ghost leader, every
//! SyncGroup answers "rebalance in progress", and static membership (`group.instance.id`) does not
//! help because tansu gives the rejoining instance a new member id. The same rejoin against a
//! coordinator that expires lapsed members is proven on librdkafka's mock cluster
//! (intake-bus tests/kafka_mock.rs, `a_member_rejoins_after_an_outage_longer_than_its_session`).

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
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::broker::Broker;
use common::engines::Engines;
use common::process;
use common::upload;
use intake_testkit::poll;

const WAIT: Duration = Duration::from_secs(120);
/// How long the broker stays down: well past the bus's publish, commit and session timeouts.
const OUTAGE: Duration = Duration::from_secs(18);
/// How soon after the broker answers again both parts must say ready.
const READY_AGAIN: Duration = Duration::from_secs(60);

/// `intake serve` as a child process, killed when dropped.
struct Serve {
    child: Child,
    ingress: String,
    tracker: String,
}

impl Serve {
    fn start(engines: &Engines, dir: &Path) -> Self {
        let (ip, tp) = (process::free_port(), process::free_port());
        let ingress = format!("http://127.0.0.1:{ip}");
        let tracker = format!("http://127.0.0.1:{tp}");
        let extra = [
            ("INGRESS_LISTEN", format!("127.0.0.1:{ip}")),
            ("INGRESS_PUBLIC_URL", ingress.clone()),
            ("TRACKER_LISTEN", format!("127.0.0.1:{tp}")),
            ("INGRESS_TRACKER_URL", format!("{tracker}/api/v1/payloads/")),
            ("STORAGE_URL_SIGNING_KEY", "test-key".to_owned()),
            ("BUS_CREATE_TOPICS", "true".to_owned()),
            ("BUS_PUBLISH_TIMEOUT", "2s".to_owned()),
            ("INGRESS_VALID_SERVICES", "testareno".to_owned()),
            ("KAFKA_SESSION_TIMEOUT", "6s".to_owned()),
        ];
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let child = process::command(&["serve"], engines, dir, &extra)
            .env_remove("PIPELINE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            child,
            ingress,
            tracker,
        }
    }

    /// Fails the test when the process has exited.
    fn assert_alive(&mut self, when: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("intake serve exited {when}: {status}");
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of GET `url` (0 when nothing answers).
async fn status(client: &reqwest::Client, url: &str) -> u16 {
    match client.get(url).timeout(Duration::from_secs(5)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// (ingress /readyz, tracker /readyz)
async fn readiness(client: &reqwest::Client, serve: &Serve) -> (u16, u16) {
    (
        status(client, &format!("{}/readyz", serve.ingress)).await,
        status(client, &format!("{}/readyz", serve.tracker)).await,
    )
}

/// One upload's answer: status and `Retry-After`.
async fn post(client: &reqwest::Client, serve: &Serve, id: &str) -> (u16, Option<String>) {
    let answer = upload::post(client, &serve.ingress, id, upload::archive(id))
        .await
        .unwrap_or_else(|e| panic!("upload {id}: ingress did not answer: {e}"));
    let retry_after = answer
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (answer.status().as_u16(), retry_after)
}

/// Whether the tracker shows statuses for `id`.
async fn tracked(client: &reqwest::Client, serve: &Serve, id: &str) -> bool {
    let url = format!("{}/api/v1/payloads/{id}", serve.tracker);
    let Ok(r) = client
        .get(url)
        .header("x-rh-identity", upload::IDENTITY)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return false;
    };
    if r.status() != 200 {
        return false;
    }
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    body["data"].as_array().is_some_and(|rows| !rows.is_empty())
}

/// Waits until every id is in perm and shown by the tracker; on timeout, names those that are not.
async fn settled(
    client: &reqwest::Client,
    serve: &Serve,
    engines: &Engines,
    ids: &BTreeSet<String>,
    what: &str,
) {
    let s3 = engines.s3();
    let deadline = Instant::now() + WAIT;
    loop {
        let in_perm: BTreeSet<String> = s3.keys(&engines.perm).await.into_iter().collect();
        let not_in_perm: Vec<&String> = ids.difference(&in_perm).collect();
        let mut untracked = Vec::new();
        for id in ids {
            if !tracked(client, serve, id).await {
                untracked.push(id);
            }
        }
        if not_in_perm.is_empty() && untracked.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}: not in perm {not_in_perm:?}, not tracked {untracked:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_rides_out_a_broker_outage_and_takes_uploads_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::new(&dir.path().join("broker"), "intake-outage");
    broker.start().await;
    let engines = Engines::on_brokers("brokerout", broker.address());
    let client = reqwest::Client::new();
    let mut serve = Serve::start(&engines, dir.path());
    poll::until_true(WAIT, "intake serve ready", || async {
        readiness(&client, &serve).await == (200, 200)
    })
    .await;

    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut refused = 0usize;
    let before: BTreeSet<String> = (0..8).map(|i| format!("before-{i:03}")).collect();
    for id in &before {
        assert_eq!(
            post(&client, &serve, id).await.0,
            202,
            "{id} before the outage"
        );
    }
    accepted.extend(before.iter().cloned());
    // The broker keeps nothing across its restart, so what it holds when it stops is gone with
    // it; what must survive is intake's side of the payloads it has taken.
    settled(
        &client,
        &serve,
        &engines,
        &before,
        "the first uploads in perm and tracked",
    )
    .await;

    broker.pause();
    let stopped = Instant::now();
    let (mut ingress_down, mut tracker_down) = (false, false);
    let mut last = (0, 0);
    let mut n = 0;
    while stopped.elapsed() < OUTAGE {
        serve.assert_alive("while the broker was down");
        n += 1;
        let id = format!("during-{n:03}");
        match post(&client, &serve, &id).await {
            (202, _) => {
                accepted.insert(id);
            }
            (503, retry_after) => {
                assert!(retry_after.is_some(), "{id}: 503 without Retry-After");
                refused += 1;
            }
            (other, _) => panic!("{id}: {other} while the broker was down"),
        }
        last = readiness(&client, &serve).await;
        ingress_down |= last.0 == 503;
        tracker_down |= last.1 == 503;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    serve.assert_alive("while the broker was down");
    assert!(
        ingress_down,
        "ingress never said not-ready while the broker was down"
    );
    assert!(
        tracker_down,
        "the tracker never said not-ready while the broker was down"
    );
    assert_eq!(last, (503, 503), "not-ready at the end of the outage");
    assert!(
        refused > 0,
        "no upload was refused while the broker was down"
    );

    broker.resume();
    let back = Instant::now();
    poll::until_true(
        READY_AGAIN,
        "ready again after the broker returned",
        || async { readiness(&client, &serve).await == (200, 200) },
    )
    .await;
    let ready_after = back.elapsed();
    serve.assert_alive("after the broker returned");

    // A publish right after the broker returns may still be refused: a client told 503 and
    // Retry-After tries again, and must be accepted within the bound.
    let after: BTreeSet<String> = (0..8).map(|i| format!("after-{i:03}")).collect();
    let mut refused_after = 0usize;
    for id in &after {
        let deadline = Instant::now() + READY_AGAIN;
        loop {
            match post(&client, &serve, id).await {
                (202, _) => break,
                (503, Some(_)) if Instant::now() < deadline => {
                    refused_after += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => panic!("{id} after the outage: {other:?}"),
            }
        }
    }
    refused += refused_after;
    serve.assert_alive("at the end");

    // What was taken before the outage is still in perm and tracked; an upload answered 202 while
    // the broker was down would have to get there too.
    settled(
        &client,
        &serve,
        &engines,
        &accepted,
        "every upload accepted before and during the outage in perm and tracked",
    )
    .await;
    let perm: BTreeSet<String> = engines.s3().keys(&engines.perm).await.into_iter().collect();
    let lost = accepted.difference(&perm).count();
    println!(
        "broker down {OUTAGE:?}: accepted {} before it, refused {refused} ({refused_after} after it was back), ready again {ready_after:?} after the broker, {} accepted after, lost = {lost}",
        accepted.len(),
        after.len()
    );
    assert_eq!(lost, 0);
}
