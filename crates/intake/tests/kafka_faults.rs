//! Black-box fault tests on Kafka and S3 through the real binary: a broker that stops while uploads
//! arrive, and an ingress killed while it applies verdicts. Each payload the client was told is
//! accepted (202) must end validated, and each refused one (503) must leave nothing behind.

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

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::broker::Broker;
use common::engines::Engines;
use common::kafka::{Reader, Writer};
use common::process::{self, Intake};
use common::upload;
use futures::StreamExt;
use intake_testkit::poll;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

/// One upload's answer.
#[derive(Debug, Clone)]
struct Outcome {
    id: String,
    status: u16,
    body: Value,
}

/// Uploads one payload after another until stopped, recording every answer.
fn upload_loop(
    url: String,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut n = 0;
        while !stop.is_cancelled() {
            n += 1;
            let id = format!("outage-{n:05}");
            let answer = upload::post(&client, &url, &id, upload::archive(&id))
                .await
                .unwrap_or_else(|e| panic!("upload {id}: ingress did not answer: {e}"));
            let status = answer.status().as_u16();
            let body = answer.json().await.unwrap_or(Value::Null);
            outcomes.lock().unwrap().push(Outcome { id, status, body });
        }
    })
}

fn count_since(outcomes: &Mutex<Vec<Outcome>>, from: usize, status: u16) -> usize {
    outcomes.lock().unwrap()[from..]
        .iter()
        .filter(|o| o.status == status)
        .count()
}

async fn wait_for_answers(outcomes: &Arc<Mutex<Vec<Outcome>>>, from: usize, status: u16, n: usize) {
    poll::until_true(WAIT, &format!("{n} uploads answered {status}"), || {
        let outcomes = outcomes.clone();
        async move { count_since(&outcomes, from, status) >= n }
    })
    .await;
}

/// (a) The broker stops while uploads run, then comes back. While it is down uploads answer 503
/// with the JSON error body and keep nothing; afterwards they answer 202 again; every upload that
/// was answered 202, before, during or after the outage, is validated (reaches perm and the
/// available topic): none is lost. The broker keeps nothing across its restart, so the verdicts
/// are sent once it is back, for every accepted payload, as a validator replaying its work would:
/// what must survive the outage is ingress's side, the 202 answers and the quarantined objects.
#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_refuses_uploads_and_loses_no_accepted_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::new(&dir.path().join("broker"), "intake-faults");
    broker.start().await;
    let engines = Engines::on_brokers("outage", broker.address());
    let s3 = engines.s3();
    // BUS_CREATE_TOPICS: ingress creates its topics on the empty broker at start-up.
    let extra = [
        ("BUS_CREATE_TOPICS", "true"),
        ("BUS_PUBLISH_TIMEOUT", "2s"),
        ("INGRESS_VALID_SERVICES", "testareno"),
    ];
    let ingress = Intake::ingress(&engines, dir.path(), &extra).await;

    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let uploads = upload_loop(ingress.url.clone(), outcomes.clone(), stop.clone());
    wait_for_answers(&outcomes, 0, 202, 5).await;

    broker.stop();
    let down_from = outcomes.lock().unwrap().len();
    wait_for_answers(&outcomes, down_from, 503, 3).await;

    broker.start().await;
    process::run(
        &["topics", "create", "--services", "testareno"],
        &engines,
        dir.path(),
    );
    let up_from = outcomes.lock().unwrap().len();
    wait_for_answers(&outcomes, up_from, 202, 5).await;
    stop.cancel();
    uploads.await.unwrap();

    let outcomes = outcomes.lock().unwrap().clone();
    let unexpected: Vec<_> = outcomes
        .iter()
        .filter(|o| o.status != 202 && o.status != 503)
        .collect();
    assert!(unexpected.is_empty(), "only 202 or 503: {unexpected:?}");
    let refused: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 503).collect();
    let accepted: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 202).collect();
    for o in &refused {
        assert_eq!(o.body["status"], 503, "{o:?}");
        assert_eq!(o.body["title"], "Service Unavailable", "{o:?}");
        assert_eq!(o.body["request_id"], o.id.as_str(), "{o:?}");
        assert!(
            o.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{o:?}"
        );
        for bucket in [&engines.quarantine, &engines.perm, &engines.reject] {
            assert!(
                !s3.exists(bucket, &o.id).await,
                "refused {} kept in {bucket}",
                o.id
            );
        }
    }

    let accepted_ids: BTreeSet<String> = accepted.iter().map(|o| o.id.clone()).collect();
    let quarantined: BTreeSet<String> = s3.keys(&engines.quarantine).await.into_iter().collect();
    assert_eq!(
        quarantined, accepted_ids,
        "every accepted upload, and only those, is stored"
    );
    let writer = Writer::new(&engines.brokers);
    let topic = engines.topic("platform.upload.validation");
    for id in &accepted_ids {
        let reply = json!({"request_id": id, "service": "testareno", "validation": "success"});
        writer.send(&topic, id, &reply, &[]).await;
    }

    // Every accepted payload reaches its terminal place: perm, out of quarantine, announced as
    // available. Counted, so a loss names how many.
    poll::until_true(WAIT, "every accepted upload validated into perm", || {
        let (s3, e, ids) = (s3.clone(), engines.clone(), accepted_ids.clone());
        async move {
            let perm: BTreeSet<String> = s3.keys(&e.perm).await.into_iter().collect();
            ids.is_subset(&perm) && s3.awaiting_keys(&e.quarantine).await.is_empty()
        }
    })
    .await;
    let available = Reader::new(
        &engines.brokers,
        &engines.topic("platform.upload.available"),
    );
    let seen = available
        .collect(
            WAIT,
            "an available message for every accepted upload",
            |seen| {
                let ids: BTreeSet<&str> = seen
                    .iter()
                    .filter_map(|r| r.value["request_id"].as_str())
                    .collect();
                accepted_ids.iter().all(|id| ids.contains(id.as_str()))
            },
        )
        .await;
    let lost = accepted_ids
        .iter()
        .filter(|id| !seen.iter().any(|r| r.value["request_id"] == id.as_str()))
        .count();
    assert_eq!(lost, 0);
    eprintln!(
        "outage: {} uploads accepted, {} refused while the broker was down, 0 lost",
        accepted.len(),
        refused.len()
    );
}

/// (b) `intake ingress` is SIGKILLed while its consumer works through a backlog of verdicts, then
/// started again in the same consumer group. Every payload ends in exactly one bucket (perm for a
/// success, reject for a failure, nothing left in quarantine), and the available topic carries
/// each validated request id; duplicates are bounded by what at-least-once allows.
#[tokio::test(flavor = "multi_thread")]
async fn ingress_killed_mid_verdicts_resumes_without_loss() {
    // Enough verdicts that applying them all takes far longer than one look at the bucket: with
    // 90, all of them were applied between the look that saw the first ones done and the kill.
    const PAYLOADS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let engines = Engines::harness("killmid");
    let s3 = engines.s3();
    let client = reqwest::Client::new();
    process::run(
        &["topics", "create", "--services", "testareno"],
        &engines,
        dir.path(),
    );
    // A short session, so the group hands the killed member's partitions over in seconds
    // instead of librdkafka's 45 s.
    let session = [
        ("KAFKA_SESSION_TIMEOUT", "6s"),
        // A few verdicts at once per partition, so that the duplicates a kill allows (one per
        // verdict in flight) have a bound this test can check.
        ("INGRESS_VALIDATION_CONCURRENCY", "4"),
    ];
    let mut ingress = Intake::ingress(&engines, dir.path(), &session).await;

    let ids: Vec<String> = (0..PAYLOADS).map(|i| format!("killmid-{i:04}")).collect();
    let answers: Vec<u16> = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let (client, url) = (client.clone(), ingress.url.clone());
            async move {
                let archive = upload::archive(&id);
                upload::post(&client, &url, &id, archive)
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffered(8)
        .collect()
        .await;
    assert!(answers.iter().all(|s| *s == 202), "{answers:?}");
    let succeeds = |i: usize| matches!(i % 3, 1 | 2);
    let success_ids: BTreeSet<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| succeeds(*i))
        .map(|(_, id)| id.clone())
        .collect();
    let failure_ids: BTreeSet<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| !succeeds(*i))
        .map(|(_, id)| id.clone())
        .collect();

    // The backlog of verdicts, 32 on their way at a time, as a validator that caught up sends it.
    let writer = Writer::new(&engines.brokers);
    let topic = engines.topic("platform.upload.validation");
    let replies = ids.iter().enumerate().map(|(i, id)| {
        let verdict = if succeeds(i) { "success" } else { "failure" };
        let reply = json!({"request_id": id, "service": "testareno", "validation": verdict});
        let (writer, topic) = (&writer, &topic);
        async move { writer.send(topic, id, &reply, &[]).await }
    });
    let sending = futures::stream::iter(replies)
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    tokio::pin!(sending);

    // Kill as soon as the consumer has finished its first verdict (its payload out of quarantine;
    // many are applied at once, so copies reach perm well before the first one finishes), while
    // the rest are still under way, queued or not even sent: the verdicts are sent meanwhile, so
    // the kill cannot come after the last one however fast ingress applies them.
    let first_applied = poll::until_true(WAIT, "the first verdicts applied", || {
        let (s3, e) = (s3.clone(), engines.clone());
        async move { s3.awaiting_keys(&e.quarantine).await.len() < PAYLOADS }
    });
    tokio::pin!(first_applied);
    let mut all_sent = false;
    loop {
        tokio::select! {
            _ = &mut sending, if !all_sent => all_sent = true,
            () = &mut first_applied => break,
        }
    }
    ingress.kill();
    let unfinished: BTreeSet<String> = s3
        .awaiting_keys(&engines.quarantine)
        .await
        .into_iter()
        .collect();
    assert!(
        !unfinished.is_empty() && unfinished.len() < PAYLOADS,
        "the kill must land while verdicts are being applied ({} of {PAYLOADS} still in quarantine)",
        unfinished.len()
    );

    if !all_sent {
        // The rest go to the restarted ingress.
        sending.await;
    }
    let restarted = std::time::Instant::now();
    let _ingress = Intake::ingress(&engines, dir.path(), &session).await;
    poll::until_true(
        WAIT,
        "every payload in perm or reject after the restart",
        || {
            let (s3, e) = (s3.clone(), engines.clone());
            async move { s3.awaiting_keys(&e.quarantine).await.is_empty() }
        },
    )
    .await;
    // The killed member's partitions wait out its session: 6 s here, 45 s without the setting.
    assert!(
        restarted.elapsed() < Duration::from_secs(40),
        "the restarted ingress took {:?}: KAFKA_SESSION_TIMEOUT was not applied",
        restarted.elapsed()
    );
    let perm: BTreeSet<String> = s3.keys(&engines.perm).await.into_iter().collect();
    let reject: BTreeSet<String> = s3.keys(&engines.reject).await.into_iter().collect();
    assert_eq!(
        perm, success_ids,
        "perm holds exactly the validated payloads"
    );
    assert_eq!(
        reject, failure_ids,
        "reject holds exactly the rejected payloads"
    );

    let available = Reader::new(
        &engines.brokers,
        &engines.topic("platform.upload.available"),
    );
    let mut seen = available
        .collect(
            WAIT,
            "an available message for every validated payload",
            |seen| {
                let ids: BTreeSet<&str> = seen
                    .iter()
                    .filter_map(|r| r.value["request_id"].as_str())
                    .collect();
                success_ids.iter().all(|id| ids.contains(id.as_str()))
            },
        )
        .await;
    seen.extend(available.drain(Duration::from_secs(3)).await);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &seen {
        *counts
            .entry(r.value["request_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        counts.keys().all(|id| success_ids.contains(id)),
        "available carries only validated payloads: {counts:?}"
    );
    // At-least-once: ingress commits a verdict's offset only after copy, publish and delete. A
    // kill between the publish and the commit replays the verdict; if the object was still in
    // quarantine (the delete had not run), the replay publishes available again, which the
    // contract permits. A verdict whose move had finished (object out of quarantine) is a repeat
    // on replay and publishes nothing, so only payloads unfinished at the kill may appear twice,
    // and at most INGRESS_VALIDATION_CONCURRENCY (4) per partition: the verdicts in flight.
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    for (id, n) in &duplicated {
        assert!(
            unfinished.contains(*id),
            "{id} was announced {n} times though its move had finished before the kill"
        );
    }
    assert!(
        duplicated.len() <= 3 * 4,
        "more duplicates than verdicts in flight (4 on each of 3 partitions): {duplicated:?}"
    );
    eprintln!(
        "kill: {} of {PAYLOADS} verdicts unfinished at the kill, {} duplicated available messages",
        unfinished.len(),
        duplicated.len()
    );
}

/// A consumer whose broker is down writes at most a few librdkafka lines a second (each client
/// holds them to 5 a second and says how many it held back), not the hundreds librdkafka repeats.
#[test]
fn a_down_broker_does_not_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("127.0.0.1:{}", process::free_port());
    let engines = Engines::on_brokers("quietlog", closed);
    let mut child = process::command(
        &["validator"],
        &engines,
        dir.path(),
        &[("LOG_LEVEL", "info"), ("LOG_FORMAT", "text")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let watched = Duration::from_secs(6);
    std::thread::sleep(watched);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kafka_lines = stderr
        .lines()
        .filter(|l| {
            l.contains("librdkafka") || l.contains("kafka consumer") || l.contains("consumer error")
        })
        .count();
    let held_back = stderr.contains("more lines in the last second not shown");
    println!("broker down {watched:?}: {kafka_lines} Kafka lines, some held back: {held_back}");
    // Three clients (consumer, producer, admin) at 5 lines a second each, plus one summary line
    // per client and second.
    assert!(
        kafka_lines <= 6 * 3 * 7,
        "{kafka_lines} lines in {watched:?}:\n{stderr}"
    );
    assert!(
        held_back,
        "nothing was held back: the limit was never reached?\n{stderr}"
    );
}
