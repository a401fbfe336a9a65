//! Payloads that stay in quarantine without a verdict (messages.md, "A verdict is about content
//! only"): announced again after `INGRESS_REANNOUNCE_AFTER`, at most `INGRESS_REANNOUNCE_ATTEMPTS`
//! times, then status `error` with the payload left in quarantine; payloads stored but never
//! announced are announced at start-up, or before a reused id is answered 409.

use crate::harness;

use std::time::Duration;

use harness::{payload, Ingress, SERVICE};
use intake_storage::Bucket;
use serde_json::{json, Value};

const META: &str = r#"{"queue_key": "host-7", "display_name": "web01"}"#;

async fn announces(h: &Ingress, id: &str) -> Vec<Value> {
    h.messages(&h.service_topic())
        .await
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.value).unwrap())
        .filter(|v| v["request_id"] == id)
        .collect()
}

/// The pending-announce records, as `<id>.json` (announced) or `<id>.new` (announce never
/// acknowledged).
async fn pending_files(h: &Ingress) -> Vec<String> {
    let pending = h.state.pending.as_ref().unwrap();
    let mut names: Vec<String> = pending
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            format!(
                "{}.{}",
                e.request_id,
                if e.announced { "json" } else { "new" }
            )
        })
        .collect();
    names.sort();
    names
}

fn start_sweeper(h: &Ingress) {
    tokio::spawn(intake_ingress::sweeper::run(
        h.state.clone(),
        h.cancel.clone(),
    ));
}

async fn wait_announces(h: &Ingress, id: &str, n: usize) -> Vec<Value> {
    intake_testkit::poll::until(Duration::from_secs(20), "the announces", || async {
        let all = announces(h, id).await;
        (all.len() >= n).then_some(all)
    })
    .await
}

#[tokio::test]
async fn a_payload_without_a_verdict_is_announced_again_then_errors_and_stays_in_quarantine() {
    let h = harness::start(&[
        ("INGRESS_REANNOUNCE_AFTER", "300ms"),
        ("INGRESS_REANNOUNCE_ATTEMPTS", "2"),
    ])
    .await;
    let bytes = payload(200);
    h.upload_ok("again-1", &bytes, Some(META)).await;
    assert_eq!(pending_files(&h).await, ["again-1.json"]);
    start_sweeper(&h);
    let all = wait_announces(&h, "again-1", 3).await;
    // The same announce each time (client metadata and identity included), its URL signed anew.
    for again in &all[1..] {
        for field in [
            "metadata",
            "b64_identity",
            "org_id",
            "size",
            "timestamp",
            "service",
        ] {
            assert_eq!(again[field], all[0][field], "{field}");
        }
        assert!(again["url"]
            .as_str()
            .unwrap()
            .contains("/download/again-1?"));
    }
    let error =
        intake_testkit::poll::until(Duration::from_secs(20), "the error status", || async {
            h.statuses()
                .await
                .into_iter()
                .find(|s| s.request_id == "again-1" && s.status == "error")
        })
        .await;
    assert_eq!(error.service, "ingress");
    let msg = error.status_msg.unwrap_or_default();
    assert!(
        msg.contains(&format!("no verdict from {SERVICE} after 3 announces")),
        "{msg}"
    );
    // Nothing more is announced, nothing moves.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(announces(&h, "again-1").await.len(), 3);
    assert_eq!(h.read(Bucket::Quarantine, "again-1").unwrap(), bytes);
    h.assert_bucket_empty(Bucket::Reject);
    h.assert_bucket_empty(Bucket::Perm);
    assert!(
        pending_files(&h).await.is_empty(),
        "{:?}",
        pending_files(&h).await
    );
}

#[tokio::test]
async fn a_verdict_stops_the_announcing_again() {
    let h = harness::start(&[("INGRESS_REANNOUNCE_AFTER", "300ms")]).await;
    h.start_consumer();
    start_sweeper(&h);
    h.upload_ok("judged-1", &payload(200), None).await;
    let verdict = json!({"request_id": "judged-1", "service": SERVICE, "validation": "success"});
    h.respond(verdict.to_string().as_bytes(), "judged-1").await;
    h.wait_verdicts("success", 1).await;
    assert!(
        pending_files(&h).await.is_empty(),
        "{:?}",
        pending_files(&h).await
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(announces(&h, "judged-1").await.len(), 1);
    assert!(h.read(Bucket::Perm, "judged-1").is_some());
}

/// Puts `id`'s record back in the state a process leaves when it stops between storing the payload
/// and its announce's acknowledgement: recorded (the announce as published), not marked announced.
async fn unacknowledge(h: &Ingress, id: &str) {
    let first = announces(h, id).await.remove(0);
    let announce: intake_core::messages::Announce = serde_json::from_value(first).unwrap();
    h.state
        .pending
        .as_ref()
        .unwrap()
        .record(&announce)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_payload_stored_but_never_announced_is_announced_at_start_up() {
    let h = harness::start(&[]).await;
    h.upload_ok("crashed-1", &payload(200), Some(META)).await;
    unacknowledge(&h, "crashed-1").await;
    // The record predates this start of the sweeper.
    tokio::time::sleep(Duration::from_millis(50)).await;
    start_sweeper(&h);
    let all = wait_announces(&h, "crashed-1", 2).await;
    assert_eq!(all[1]["metadata"], all[0]["metadata"]);
    intake_testkit::poll::until_true(
        Duration::from_secs(5),
        "the record marked announced",
        || async { pending_files(&h).await == ["crashed-1.json"] },
    )
    .await;
    h.assert_bucket_empty(Bucket::Reject);
}

#[tokio::test]
async fn a_reused_id_of_a_never_announced_payload_is_announced_before_the_409() {
    let h = harness::start(&[]).await;
    h.upload_ok("reused-1", &payload(200), None).await;
    unacknowledge(&h, "reused-1").await;
    let answer = h.upload("reused-1", &payload(200), None).await;
    assert_eq!(answer.status, 409, "{}", answer.json());
    assert_eq!(announces(&h, "reused-1").await.len(), 2);
    assert_eq!(pending_files(&h).await, ["reused-1.json"]);
    // An announced one is answered 409 without another announce.
    let answer = h.upload("reused-1", &payload(200), None).await;
    assert_eq!(answer.status, 409);
    assert_eq!(announces(&h, "reused-1").await.len(), 2);
}

#[tokio::test]
async fn a_verdict_applied_by_another_instance_leaves_this_ones_backlog_within_a_pass() {
    // Re-announces are due after 8 s; passes run every 2 s.
    let h = harness::start(&[("INGRESS_REANNOUNCE_AFTER", "8s")]).await;
    for id in ["elsewhere-1", "waiting-1"] {
        h.upload_ok(id, &payload(100), None).await;
    }
    assert_eq!(h.state.backlog(), Some(2));
    // Another instance's consumer applies a verdict: the payload leaves quarantine, but this
    // instance's record of it stays.
    let id = intake_core::RequestId::parse("elsewhere-1").unwrap();
    h.state
        .store
        .copy(Bucket::Quarantine, Bucket::Perm, &id)
        .await
        .unwrap();
    h.state.store.delete(Bucket::Quarantine, &id).await.unwrap();
    let started = std::time::Instant::now();
    start_sweeper(&h);
    intake_testkit::poll::until_true(
        Duration::from_secs(7),
        "the settled payload to leave the backlog",
        || async { h.state.backlog() == Some(1) },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(8), "only when due");
    assert_eq!(pending_files(&h).await, ["waiting-1.json"]);
    assert_eq!(announces(&h, "waiting-1").await.len(), 1, "not due yet");
}
