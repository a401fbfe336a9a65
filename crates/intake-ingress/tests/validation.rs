//! Verdicts through the validation consumer (messages.md, "How ingress processes a response" and
//! "Available"): success moves quarantine → perm and announces every available field with a working
//! URL; failure moves to reject; repeats, conflicts, interrupted moves and hand-offs do what the
//! table says, and nothing is announced twice.

use crate::harness;

use harness::{
    header, identity, payload, Ingress, ACCOUNT, CATEGORY, ORG_ID, PUBLIC_URL, SERVICE, TGZ,
};
use intake_bus::ReceivedMessage;
use intake_core::messages::PayloadStatus;
use intake_core::RequestId;
use intake_storage::Bucket;
use serde_json::{json, Value};

/// A harness whose validation consumer runs.
async fn consuming() -> Ingress {
    let h = harness::start(&[]).await;
    h.start_consumer();
    h
}

fn verdict(request_id: &str, validation: &str) -> Vec<u8> {
    json!({"request_id": request_id, "service": SERVICE, "validation": validation})
        .to_string()
        .into_bytes()
}

async fn available(h: &Ingress) -> Vec<ReceivedMessage> {
    h.messages(&h.topic(&h.bus_config.topics.available)).await
}

/// The statuses about `request_id` with status `status`.
async fn statuses(h: &Ingress, request_id: &str, status: &str) -> Vec<PayloadStatus> {
    h.statuses()
        .await
        .into_iter()
        .filter(|s| s.request_id == request_id && s.status == status)
        .collect()
}

fn value(message: &ReceivedMessage) -> Value {
    serde_json::from_slice(&message.value).unwrap()
}

fn rfc3339(date: &str) {
    chrono::DateTime::parse_from_rfc3339(date).unwrap_or_else(|e| panic!("{date:?}: {e}"));
}

#[tokio::test]
async fn success_moves_to_perm_and_announces_every_field() {
    let h = consuming().await;
    let bytes = payload(321);
    h.upload_ok(
        "val-ok",
        &bytes,
        Some(r#"{"queue_key": "host-7", "custom": "x"}"#),
    )
    .await;
    let announce = value(&h.messages(&h.service_topic()).await[0]);
    let b64 = identity();
    // A validator echoing the announce, adding its own fields, and naming another tenant (which
    // must not be believed).
    let response = json!({
        "request_id": "val-ok", "service": SERVICE, "validation": "success",
        "account": ACCOUNT, "org_id": "99999", "id": "inv-1", "b64_identity": b64,
        "satellite_managed": false, "metadata": announce["metadata"], "extras": {"k": "v"},
        "system_id": "sys-1", "hostname": "web01",
        "url": announce["url"], "size": 321, "hash": "val-ok", "timestamp": announce["timestamp"],
    });
    h.respond(response.to_string().as_bytes(), "val-ok").await;
    h.wait_verdicts("success", 1).await;

    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(h.read(Bucket::Perm, "val-ok").unwrap(), bytes);
    assert!(h.keys(Bucket::Reject).is_empty());

    let messages = available(&h).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.key_str(), Some("host-7"));
    assert_eq!(header(message, "service"), SERVICE);
    assert_eq!(header(message, "request_id"), "val-ok");
    let got = value(message);
    let url = got["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{PUBLIC_URL}/download/val-ok?expires=")),
        "{url}"
    );
    assert_ne!(Some(url.as_str()), announce["url"].as_str(), "a fresh URL");
    assert_eq!(
        got,
        json!({
            "request_id": "val-ok", "payload_id": "val-ok",
            "account": ACCOUNT, "rh_account": ACCOUNT,
            "principal": ORG_ID, "rh_principal": ORG_ID, "org_id": ORG_ID,
            "service": SERVICE, "category": CATEGORY, "content_type": TGZ, "size": 321,
            "b64_identity": b64, "id": "inv-1", "satellite_managed": false,
            "metadata": announce["metadata"],
            "extras": {"k": "v", "system_id": "sys-1", "hostname": "web01", "id": "inv-1",
                       "satellite_managed": false},
            "url": url,
            "timestamp": announce["timestamp"],
        })
    );
    assert_eq!(h.state.metrics.tenant_mismatches.get(), 1);

    // The URL serves the perm object.
    let download = h.get(url.strip_prefix(PUBLIC_URL).unwrap(), None).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body.as_ref(), bytes.as_slice());
    // The announce's quarantine URL follows its payload to perm (storage.md: a link follows its
    // payload for its lifetime).
    let old = announce["url"].as_str().unwrap();
    let followed = h.get(old.strip_prefix(PUBLIC_URL).unwrap(), None).await;
    assert_eq!(followed.status, 200);
    assert_eq!(followed.body.as_ref(), bytes.as_slice());

    let success = statuses(&h, "val-ok", "success").await;
    assert_eq!(success.len(), 1);
    let s = &success[0];
    assert_eq!(s.service, "ingress");
    assert_eq!(s.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(s.account.as_deref(), Some(ACCOUNT));
    assert_eq!(s.inventory_id.as_deref(), Some("inv-1"));
    assert_eq!(s.system_id.as_deref(), Some("sys-1"));
    assert_eq!(
        s.status_msg.as_deref(),
        Some("validated by testareno; announced on platform.upload.available")
    );
    rfc3339(&s.date);
}

#[tokio::test]
async fn a_minimal_success_still_carries_every_seed_key() {
    let h = consuming().await;
    h.upload_ok("val-min", &payload(9), None).await;
    h.respond(&verdict("val-min", "success"), "any-key").await;
    h.wait_verdicts("success", 1).await;
    let messages = available(&h).await;
    assert_eq!(messages.len(), 1);
    // Without metadata the key is the request id.
    assert_eq!(messages[0].key_str(), Some("val-min"));
    let got = value(&messages[0]);
    let mut keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "account",
            "b64_identity",
            "category",
            "content_type",
            "id",
            "org_id",
            "payload_id",
            "principal",
            "request_id",
            "rh_account",
            "rh_principal",
            "satellite_managed",
            "service",
            "size",
            "timestamp",
            "url"
        ]
    );
    assert_eq!(got["b64_identity"], Value::Null);
    assert_eq!(got["id"], Value::Null);
    assert_eq!(got["satellite_managed"], Value::Null);
    assert_eq!(got["size"], 9);
    rfc3339(got["timestamp"].as_str().unwrap());
}

#[tokio::test]
async fn failure_moves_to_reject_with_the_reason() {
    let h = consuming().await;
    let bytes = payload(77);
    h.upload_ok("val-bad", &bytes, None).await;
    h.upload_ok("val-bad-2", &payload(3), None).await;
    // The legacy id field, a verdict in odd case and spacing, extra fields.
    let response = json!({
        "payload_id": "val-bad", "service": SERVICE, "validation": " FAILURE ",
        "reason": "archive is not a tarball", "account": ACCOUNT, "org_id": ORG_ID,
        "system_id": "3c9b1e52",
    });
    h.respond(response.to_string().as_bytes(), "val-bad").await;
    h.respond(&verdict("val-bad-2", "failure"), "val-bad-2")
        .await;
    h.wait_verdicts("failure", 2).await;

    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert!(h.keys(Bucket::Perm).is_empty());
    assert_eq!(h.keys(Bucket::Reject), ["val-bad", "val-bad-2"]);
    assert_eq!(h.read(Bucket::Reject, "val-bad").unwrap(), bytes);
    assert!(available(&h).await.is_empty());

    let rejected = statuses(&h, "val-bad", "rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0].status_msg.as_deref(),
        Some("rejected by testareno: archive is not a tarball; moved to insights-upload-rejected")
    );
    assert_eq!(rejected[0].org_id.as_deref(), Some(ORG_ID));
    assert_eq!(rejected[0].account.as_deref(), Some(ACCOUNT));
    rfc3339(&rejected[0].date);
    let rejected = statuses(&h, "val-bad-2", "rejected").await;
    assert_eq!(
        rejected[0].status_msg.as_deref(),
        Some("rejected by testareno: no reason given; moved to insights-upload-rejected")
    );
    assert!(statuses(&h, "val-bad", "success").await.is_empty());
}

#[tokio::test]
async fn a_repeated_verdict_is_acknowledged_and_changes_nothing() {
    let h = consuming().await;
    h.upload_ok("rep-ok", &payload(10), None).await;
    h.upload_ok("rep-bad", &payload(11), None).await;
    for _ in 0..2 {
        h.respond(&verdict("rep-ok", "success"), "rep-ok").await;
        h.respond(&verdict("rep-bad", "failure"), "rep-bad").await;
    }
    h.wait_verdicts("repeat", 2).await;
    assert_eq!(h.verdicts("success"), 1);
    assert_eq!(h.verdicts("failure"), 1);

    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(h.keys(Bucket::Perm), ["rep-ok"]);
    assert_eq!(h.keys(Bucket::Reject), ["rep-bad"]);
    let messages = available(&h).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(value(&messages[0])["request_id"], "rep-ok");
    assert_eq!(statuses(&h, "rep-ok", "success").await.len(), 1);
    assert_eq!(statuses(&h, "rep-bad", "rejected").await.len(), 1);
    assert!(h
        .messages(&h.topic(&h.bus_config.topics.validation_dlq))
        .await
        .is_empty());
}

#[tokio::test]
async fn the_first_verdict_wins_over_a_conflicting_one() {
    let h = consuming().await;
    h.upload_ok("con-ok", &payload(10), None).await;
    h.upload_ok("con-bad", &payload(11), None).await;
    h.respond(&verdict("con-ok", "success"), "con-ok").await;
    h.respond(&verdict("con-bad", "failure"), "con-bad").await;
    h.respond(&verdict("con-ok", "failure"), "con-ok").await;
    h.respond(&verdict("con-bad", "success"), "con-bad").await;
    h.wait_verdicts("conflict", 2).await;

    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(h.keys(Bucket::Perm), ["con-ok"]);
    assert_eq!(h.keys(Bucket::Reject), ["con-bad"]);
    let messages = available(&h).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(value(&messages[0])["request_id"], "con-ok");
    assert!(statuses(&h, "con-ok", "rejected").await.is_empty());
    assert!(statuses(&h, "con-bad", "success").await.is_empty());
}

#[tokio::test]
async fn an_interrupted_move_is_completed_only_by_its_own_verdict() {
    let h = consuming().await;
    h.upload_ok("int-ok", &payload(10), None).await;
    h.upload_ok("int-bad", &payload(11), None).await;
    // Both crashed after step 1: copied out, still in quarantine.
    let store = &h.state.store;
    let ok = RequestId::parse("int-ok").unwrap();
    let bad = RequestId::parse("int-bad").unwrap();
    store
        .copy(Bucket::Quarantine, Bucket::Perm, &ok)
        .await
        .unwrap();
    store
        .copy(Bucket::Quarantine, Bucket::Reject, &bad)
        .await
        .unwrap();

    // The opposite verdict is a conflict and moves nothing.
    h.respond(&verdict("int-ok", "failure"), "int-ok").await;
    h.respond(&verdict("int-bad", "success"), "int-bad").await;
    h.wait_verdicts("conflict", 2).await;
    assert_eq!(h.keys(Bucket::Quarantine), ["int-bad", "int-ok"]);
    assert_eq!(h.keys(Bucket::Perm), ["int-ok"]);
    assert_eq!(h.keys(Bucket::Reject), ["int-bad"]);
    assert!(available(&h).await.is_empty());

    // The redelivered first verdict finishes the move, once.
    h.respond(&verdict("int-ok", "success"), "int-ok").await;
    h.respond(&verdict("int-bad", "failure"), "int-bad").await;
    h.wait_verdicts("success", 1).await;
    h.wait_verdicts("failure", 1).await;
    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(h.keys(Bucket::Perm), ["int-ok"]);
    assert_eq!(h.keys(Bucket::Reject), ["int-bad"]);
    assert_eq!(h.read(Bucket::Perm, "int-ok").unwrap(), payload(10));
    let messages = available(&h).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(value(&messages[0])["request_id"], "int-ok");
}

#[tokio::test]
async fn a_handoff_leaves_the_payload_for_a_later_verdict() {
    let h = consuming().await;
    h.upload_ok("hand-1", &payload(10), None).await;
    h.respond(&verdict("hand-1", "handoff"), "hand-1").await;
    h.wait_verdicts("handoff", 1).await;
    assert_eq!(h.keys(Bucket::Quarantine), ["hand-1"]);
    assert!(h.keys(Bucket::Perm).is_empty());
    assert!(available(&h).await.is_empty());
    let after_upload: Vec<String> = h
        .statuses()
        .await
        .into_iter()
        .map(|s| s.status)
        .filter(|s| s != "received" && s != "processing")
        .collect();
    assert!(after_upload.is_empty(), "{after_upload:?}");

    h.respond(&verdict("hand-1", "success"), "hand-1").await;
    h.wait_verdicts("success", 1).await;
    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(h.keys(Bucket::Perm), ["hand-1"]);
    assert_eq!(available(&h).await.len(), 1);
    assert_eq!(statuses(&h, "hand-1", "success").await.len(), 1);
}

#[tokio::test]
async fn an_accepted_upload_reports_received_then_processing() {
    let h = consuming().await;
    h.upload_ok("st-1", &payload(10), None).await;
    let announce = value(&h.messages(&h.service_topic()).await[0]);
    // Sent in the background after the answer.
    let both = intake_testkit::poll::until(
        std::time::Duration::from_secs(20),
        "the received and processing statuses",
        || async {
            let got: Vec<PayloadStatus> = h
                .statuses()
                .await
                .into_iter()
                .filter(|s| s.request_id == "st-1")
                .collect();
            (got.len() >= 2).then_some(got)
        },
    )
    .await;
    assert_eq!(both.len(), 2, "{both:?}");
    let (received, processing) = (&both[0], &both[1]);
    assert_eq!(received.status, "received");
    assert_eq!(
        received.status_msg.as_deref(),
        Some("payload received by ingress")
    );
    assert_eq!(received.date, announce["timestamp"].as_str().unwrap());
    assert_eq!(processing.status, "processing");
    assert_eq!(
        processing.status_msg.as_deref(),
        Some("announced to testareno")
    );
    rfc3339(&processing.date);
    for s in &both {
        assert_eq!(s.service, "ingress");
        assert_eq!(s.org_id.as_deref(), Some(ORG_ID));
        assert_eq!(s.account.as_deref(), Some(ACCOUNT));
    }
    // Keyed by the request id.
    let topic = h.topic(&h.bus_config.topics.payload_status);
    for m in h.messages(&topic).await {
        assert_eq!(m.key_str(), Some("st-1"));
    }
}

#[tokio::test]
async fn request_id_wins_over_a_different_payload_id() {
    let h = consuming().await;
    h.upload_ok("both-ids", &payload(10), None).await;
    let response = json!({
        "request_id": "both-ids", "payload_id": "someone-else", "service": SERVICE,
        "validation": "success",
    });
    h.respond(response.to_string().as_bytes(), "both-ids").await;
    h.wait_verdicts("success", 1).await;
    assert_eq!(h.keys(Bucket::Perm), ["both-ids"]);
    let messages = available(&h).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(value(&messages[0])["payload_id"], "both-ids");
}
