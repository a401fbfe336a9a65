//! The validator end to end: embedded bus, a local HTTP server with generated archives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

mod support;

use std::sync::atomic::Ordering;

use intake_bus::faults::PublishFault;
use intake_bus::{StartFrom, Subscription};
use serde_json::Value;
use support::{announce_body, statuses, wait_for, Harness, WAIT};

const ID_GOOD: &str = "2439a2974ff44273afcd8b1d18077bf1";

#[tokio::test]
async fn a_good_archive_is_valid_and_the_announce_is_echoed() {
    let mut h = Harness::start(&[]).await;
    let responses = h.watch(&h.validation_topic()).await;
    let status_seen = h.watch(&h.status_topic()).await;
    let body = announce_body(ID_GOOD, "advisor", &h.url("/good.tar.gz"), 180);
    h.announce(&h.bus_config.service_topic("advisor"), "advisor", &body)
        .await;

    let (message, response) = wait_for(&responses, ID_GOOD, "the validation response").await;
    assert_eq!(message.key_str(), Some(ID_GOOD));
    assert_eq!(response["validation"], "success");
    assert!(response.get("reason").is_none());
    for field in [
        "account",
        "org_id",
        "principal",
        "payload_id",
        "service",
        "url",
        "size",
        "metadata",
        "timestamp",
    ] {
        assert_eq!(response[field], body[field], "{field} is echoed");
    }

    let statuses = statuses(&status_seen, ID_GOOD, 2).await;
    assert_eq!(statuses[0]["status"], "processing");
    assert_eq!(statuses[1]["status"], "success");
    for s in &statuses {
        assert_eq!(s["service"], "validator");
        assert_eq!(s["org_id"], "54321");
        assert_eq!(s["account"], "12345");
        assert!(s["date"].as_str().unwrap().ends_with('Z'));
    }
    let msg = statuses[1]["status_msg"].as_str().unwrap();
    assert!(msg.contains("tar.gz") && msg.contains("3 files"), "{msg}");
    h.stop().await;
}

async fn failure_reason(h: &Harness, id: &str, path: &str, size: u64) -> String {
    let responses = h.watch(&h.validation_topic()).await;
    let body = announce_body(id, "testareno", &h.url(path), size);
    h.announce(&h.bus_config.service_topic("testareno"), "testareno", &body)
        .await;
    let (message, response) = wait_for(&responses, id, "the validation response").await;
    assert_eq!(message.key_str(), Some(id));
    assert_eq!(response["validation"], "failure", "{response}");
    response["reason"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn hostile_archives_fail_with_their_reason_code() {
    let mut h = Harness::start(&[]).await;
    let status_seen = h.watch(&h.status_topic()).await;
    let reason = failure_reason(&h, "traversal-1", "/traversal.tar.gz", 200).await;
    assert!(reason.ends_with("(unsafe_path)"), "{reason}");
    assert!(reason.contains("../escaped.txt"), "{reason}");
    let reason = failure_reason(&h, "bomb-1", "/bomb.zip", 200).await;
    assert!(reason.ends_with("(unpacked_too_large)"), "{reason}");

    let statuses = statuses(&status_seen, "traversal-1", 2).await;
    assert_eq!(statuses[0]["status"], "processing");
    assert_eq!(statuses[1]["status"], "rejected");
    assert!(statuses[1]["status_msg"]
        .as_str()
        .unwrap()
        .contains("(unsafe_path)"));
    h.stop().await;
}

#[tokio::test]
async fn downloads_over_the_cap_and_bad_urls_fail() {
    let mut h = Harness::start(&[]).await;
    // Announced size over the cap: refused before any byte.
    let reason = failure_reason(&h, "announced-big", "/good.tar.gz", 2 << 20).await;
    assert!(reason.ends_with("(too_large)"), "{reason}");
    // Streamed without Content-Length past the cap.
    let reason = failure_reason(&h, "streamed-big", "/big", 100).await;
    assert!(reason.ends_with("(too_large)"), "{reason}");
    h.stop().await;
}

/// Waits for `id`'s `error` status and checks that no verdict was sent for it.
async fn no_verdict_only_error(h: &Harness, id: &str, path: &str) -> String {
    let responses = h.watch(&h.validation_topic()).await;
    let status_seen = h.watch(&h.status_topic()).await;
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        h.url(path)
    };
    let body = announce_body(id, "testareno", &url, 100);
    h.announce(&h.bus_config.service_topic("testareno"), "testareno", &body)
        .await;
    let statuses = statuses(&status_seen, id, 2).await;
    assert_eq!(statuses[0]["status"], "processing");
    assert_eq!(statuses[1]["status"], "error", "{}", statuses[1]);
    // A sentinel announced after it is answered, so its own response would have come by now.
    let sentinel = format!("{id}-sentinel");
    let after = announce_body(&sentinel, "testareno", &h.url("/good.tar.gz"), 180);
    h.announce(
        &h.bus_config.service_topic("testareno"),
        "testareno",
        &after,
    )
    .await;
    wait_for(&responses, &sentinel, "the sentinel's response").await;
    let answered: Vec<Value> = responses
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| serde_json::from_slice::<Value>(&m.value).ok())
        .filter(|v| v["request_id"] == id)
        .collect();
    assert!(answered.is_empty(), "a verdict was sent: {answered:?}");
    statuses[1]["status_msg"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_payload_that_cannot_be_fetched_gets_an_error_status_and_no_verdict() {
    let mut h = Harness::start(&[("VALIDATOR_DOWNLOAD_RETRY_FOR", "2s")]).await;
    let started = std::time::Instant::now();
    let msg = no_verdict_only_error(&h, "down-1", "/down").await;
    assert!(
        msg.contains("503") && msg.contains("(http_unavailable)") && msg.contains("no verdict"),
        "{msg}"
    );
    assert!(
        h.hits.down.load(Ordering::SeqCst) >= 3,
        "retried with backoff for the retry time"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    // A 404 says nothing about the content either.
    let msg = no_verdict_only_error(&h, "missing-1", "/missing").await;
    assert!(
        msg.contains("404") && msg.contains("(http_rejected)"),
        "{msg}"
    );
    // Nothing listens there.
    let msg = no_verdict_only_error(&h, "refused-1", "http://127.0.0.1:1/x").await;
    assert!(msg.contains("(connection)"), "{msg}");
    h.stop().await;
}

#[tokio::test]
async fn every_kind_of_fetch_failure_is_retried_until_the_payload_is_checked() {
    let mut h = Harness::start(&[]).await;
    let responses = h.watch(&h.validation_topic()).await;
    let body = announce_body("recovering-1", "advisor", &h.url("/recovering"), 180);
    h.announce(&h.bus_config.service_topic("advisor"), "advisor", &body)
        .await;
    let (_, response) = wait_for(&responses, "recovering-1", "the validation response").await;
    assert_eq!(response["validation"], "success", "{response}");
    assert_eq!(h.hits.recovering.load(Ordering::SeqCst), 6);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_stops_the_retries_at_once_and_leaves_the_announce_uncommitted() {
    let group = "validator-retry-cancel";
    let mut h = Harness::start(&[
        ("VALIDATOR_DOWNLOAD_RETRY_FOR", "10m"),
        ("VALIDATOR_CONSUMER_GROUP", group),
    ])
    .await;
    let status_seen = h.watch(&h.status_topic()).await;
    let body = announce_body("cancelled-1", "advisor", &h.url("/down"), 180);
    h.announce(&h.bus_config.service_topic("advisor"), "advisor", &body)
        .await;
    intake_testkit::poll::until_true(WAIT, "a few failed attempts", || {
        let hits = h.hits.down.load(Ordering::SeqCst);
        async move { hits >= 2 }
    })
    .await;
    let stopping = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(5), h.stop())
        .await
        .expect("the validator stops while a download is being retried");
    assert!(stopping.elapsed() < std::time::Duration::from_secs(5));
    let seen: Vec<Value> = status_seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| serde_json::from_slice::<Value>(&m.value).ok())
        .collect();
    assert!(
        seen.iter().all(|s| s["status"] != "error"),
        "no error status for a cancelled check: {seen:?}"
    );
    // The announce was not committed: the group gets it again.
    let subscription = Subscription {
        group: group.into(),
        topics: vec![h.bus_config.service_topic("advisor")],
        start: StartFrom::Earliest,
    };
    let mut consumer = h.bus.subscribe(subscription).await.unwrap();
    let next = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap();
    let value: Value = serde_json::from_slice(&next.value).unwrap();
    assert_eq!(value["request_id"], "cancelled-1");
}

#[tokio::test]
async fn payloads_past_the_in_memory_limit_are_checked_like_small_ones() {
    let mut h = Harness::start(&[("VALIDATOR_MAX_DOWNLOAD_SIZE", "4MiB")]).await;
    let responses = h.watch(&h.validation_topic()).await;
    let status_seen = h.watch(&h.status_topic()).await;
    let body = announce_body("large-1", "advisor", &h.url("/large.tar.gz"), 1 << 21);
    h.announce(&h.bus_config.service_topic("advisor"), "advisor", &body)
        .await;
    let (_, response) = wait_for(&responses, "large-1", "the validation response").await;
    assert_eq!(response["validation"], "success", "{response}");
    let statuses = statuses(&status_seen, "large-1", 2).await;
    let msg = statuses[1]["status_msg"].as_str().unwrap();
    assert!(
        msg.contains("2 files") && msg.contains("1572869 bytes unpacked"),
        "{msg}"
    );
    // The same checks apply past the spill: a traversal after the first MiB still fails.
    let reason = failure_reason(&h, "large-2", "/large-escape.tar.gz", 1 << 21).await;
    assert!(reason.ends_with("(unsafe_path)"), "{reason}");
    h.stop().await;
}

#[tokio::test]
async fn transient_download_failures_are_retried() {
    let mut h = Harness::start(&[]).await;
    let responses = h.watch(&h.validation_topic()).await;
    let body = announce_body("flaky-1", "advisor", &h.url("/flaky"), 180);
    h.announce(&h.bus_config.service_topic("advisor"), "advisor", &body)
        .await;
    let (_, response) = wait_for(&responses, "flaky-1", "the validation response").await;
    assert_eq!(response["validation"], "success", "{response}");
    assert_eq!(h.hits.flaky.load(Ordering::SeqCst), 3);
    h.stop().await;
}

#[tokio::test]
async fn pass_all_and_fail_all_answer_without_downloading() {
    for (mode, expected) in [("pass-all", "success"), ("fail-all", "failure")] {
        let mut h = Harness::start(&[("VALIDATOR_MODE", mode)]).await;
        let responses = h.watch(&h.validation_topic()).await;
        let status_seen = h.watch(&h.status_topic()).await;
        let body = announce_body("mode-1", "advisor", &h.url("/missing"), 180);
        h.announce(&h.bus_config.service_topic("advisor"), "advisor", &body)
            .await;
        let (_, response) = wait_for(&responses, "mode-1", "the validation response").await;
        assert_eq!(response["validation"], expected, "{mode}");
        if mode == "fail-all" {
            assert_eq!(response["reason"], "fail-all mode");
        }
        let statuses = statuses(&status_seen, "mode-1", 2).await;
        assert_eq!(
            statuses[1]["status"],
            if mode == "pass-all" {
                "success"
            } else {
                "rejected"
            }
        );
        assert_eq!(
            h.hits.total.load(Ordering::SeqCst),
            0,
            "{mode} downloaded something"
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn announce_mode_filters_on_the_service_header_and_commits_everything() {
    let group = "validator-announce-test";
    let mut h = Harness::start(&[
        ("VALIDATOR_SOURCE", "announce"),
        ("VALIDATOR_SERVICES", "advisor"),
        ("VALIDATOR_CONSUMER_GROUP", group),
    ])
    .await;
    let topic = h.bus_config.topic(&h.bus_config.topics.announce);
    let responses = h.watch(&h.validation_topic()).await;
    // Another service's message is not even parsed (its body is not JSON).
    let message =
        intake_bus::OutgoingMessage::new(&topic, "not json at all").header("service", "compliance");
    h.bus.publish(message).await.unwrap();
    // A bad announce for our service: logged, committed, nothing published.
    let bad = intake_bus::OutgoingMessage::new(&topic, "{\"service\": \"advisor\"}")
        .header("service", "advisor");
    h.bus.publish(bad).await.unwrap();
    let other_service = announce_body("other-1", "compliance", &h.url("/good.tar.gz"), 180);
    h.announce(&topic, "compliance", &other_service).await;
    let ours = announce_body("ours-1", "advisor", &h.url("/good.tar.gz"), 180);
    h.announce(&topic, "advisor", &ours).await;

    let (_, response) = wait_for(&responses, "ours-1", "the validation response").await;
    assert_eq!(response["validation"], "success");
    h.stop().await;
    assert_eq!(
        responses.lock().unwrap().len(),
        1,
        "only the advisor announce is answered"
    );

    // Every offset is committed: a new member of the group starts after them.
    let sentinel = announce_body("sentinel-1", "advisor", &h.url("/good.tar.gz"), 180);
    h.announce(&topic, "advisor", &sentinel).await;
    let subscription = Subscription {
        group: group.into(),
        topics: vec![topic],
        start: StartFrom::Earliest,
    };
    let mut consumer = h.bus.subscribe(subscription).await.unwrap();
    let next = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap();
    let value: Value = serde_json::from_slice(&next.value).unwrap();
    assert_eq!(value["request_id"], "sentinel-1");
}

#[tokio::test]
async fn an_unacknowledged_response_leaves_the_announce_uncommitted() {
    let (mut h, faults) =
        Harness::start_faulty(&[("VALIDATOR_CONSUMER_GROUP", "validator-unacked")]).await;
    let validation_topic = h.validation_topic();
    let failing = validation_topic.clone();
    faults.fail_publish_where(PublishFault::Unavailable, move |topic| topic == failing);
    let responses = h.watch(&validation_topic).await;
    let body = announce_body("unacked-1", "advisor", &h.url("/good.tar.gz"), 180);
    h.announce(&h.bus_config.service_topic("advisor"), "advisor", &body)
        .await;
    intake_testkit::poll::until_true(WAIT, "retried response publishes", || {
        let failures = faults.injected_publish_failures();
        async move { failures >= 2 }
    })
    .await;
    h.stop().await;
    assert!(responses.lock().unwrap().is_empty());

    // Redelivered to the group after a restart, and answered once the bus takes it.
    faults.heal();
    h.restart();
    let (_, response) = wait_for(
        &responses,
        "unacked-1",
        "the redelivered announce's response",
    )
    .await;
    assert_eq!(response["validation"], "success");
    h.stop().await;
}
