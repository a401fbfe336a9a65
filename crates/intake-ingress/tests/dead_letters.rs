//! Validation responses that cannot be applied (messages.md, "Dead letters" and "How ingress processes
//! a response"): each invalid one lands on the DLQ unchanged with its reason and an `error` status
//! where the spec says; a step that keeps failing is retried, then dead-lettered as
//! `processing_failed` and resumes when replayed; an outage of storage or the bus pauses the consumer
//! instead; an unwritable DLQ holds the message until it takes it.

use crate::harness;

use harness::{header, payload, Ingress, ACCOUNT, ORG_ID, SERVICE};
use intake_bus::faults::PublishFault;
use intake_bus::{OutgoingMessage, ReceivedMessage};
use intake_storage::faults::{Fault, Operation};
use intake_storage::Bucket;
use intake_testkit::poll;
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn consuming(extra: &[(&str, &str)]) -> Ingress {
    let h = harness::start(extra).await;
    h.start_consumer();
    h
}

fn verdict(request_id: &str, validation: &str) -> Vec<u8> {
    json!({"request_id": request_id, "service": SERVICE, "validation": validation})
        .to_string()
        .into_bytes()
}

async fn dead_lettered(h: &Ingress) -> Vec<ReceivedMessage> {
    h.messages(&h.topic(&h.bus_config.topics.validation_dlq))
        .await
}

async fn available(h: &Ingress) -> Vec<ReceivedMessage> {
    h.messages(&h.topic(&h.bus_config.topics.available)).await
}

/// No verdict of any kind was counted.
fn assert_nothing_counted(h: &Ingress) {
    for result in [
        "success",
        "failure",
        "handoff",
        "repeat",
        "conflict",
        "dead_letter",
        "error",
    ] {
        assert_eq!(h.verdicts(result), 0, "result={result}");
    }
}

/// An invalid response: its value, the `dlq_reason`, how `dlq_detail` starts, and the request id
/// and `status_msg` of the `error` status when the response names a usable id.
type Case = (
    Vec<u8>,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

#[tokio::test]
async fn each_invalid_response_is_dead_lettered_with_its_reason() {
    let h = consuming(&[]).await;
    let s = SERVICE;
    let cases: Vec<Case> = vec![
        (
            b"{not json".to_vec(),
            "invalid_json",
            "value is not valid JSON",
            None,
        ),
        (
            b"[1, 2]".to_vec(),
            "not_an_object",
            "value is not a JSON object",
            None,
        ),
        (
            json!({"service": s, "validation": "success"})
                .to_string()
                .into_bytes(),
            "missing_field",
            "missing field \"request_id\"",
            None,
        ),
        (
            json!({"request_id": "dlq-no-service", "validation": "success"})
                .to_string()
                .into_bytes(),
            "missing_field",
            "missing field \"service\"",
            Some((
                "dlq-no-service",
                "invalid validation response from unknown: missing_field",
            )),
        ),
        (
            json!({"request_id": "dlq-no-verdict", "service": s})
                .to_string()
                .into_bytes(),
            "missing_field",
            "missing field \"validation\"",
            Some((
                "dlq-no-verdict",
                "invalid validation response from testareno: missing_field",
            )),
        ),
        (
            json!({"request_id": "../etc/passwd", "service": s, "validation": "success"})
                .to_string()
                .into_bytes(),
            "bad_request_id",
            "bad request id \"../etc/passwd\"",
            None,
        ),
        (
            json!({"request_id": "dlq-bad-verdict", "service": s, "validation": "maybe"})
                .to_string()
                .into_bytes(),
            "bad_validation_value",
            "bad validation value \"maybe\"",
            Some((
                "dlq-bad-verdict",
                "invalid validation response from testareno: bad_validation_value",
            )),
        ),
        (
            verdict("dlq-unknown", "success"),
            "unknown_request_id",
            "no bucket holds request id dlq-unknown",
            Some((
                "dlq-unknown",
                "invalid validation response from testareno: unknown_request_id",
            )),
        ),
    ];
    let topic = h.topic(&h.bus_config.topics.validation);
    let mut deliveries = Vec::new();
    for (i, (value, ..)) in cases.iter().enumerate() {
        let message = OutgoingMessage::new(topic.clone(), value.clone())
            .key(format!("key-{i}"))
            .header("origin", "validator-7");
        deliveries.push(h.bus.publish(message).await.unwrap());
    }
    // A bad message never stops the consumer: a good one after them is processed.
    h.upload_ok("dlq-after", &payload(5), None).await;
    h.respond(&verdict("dlq-after", "success"), "dlq-after")
        .await;
    h.wait_verdicts("success", 1).await;
    assert_eq!(h.verdicts("dead_letter"), cases.len() as u64);
    assert_eq!(h.keys(Bucket::Perm), ["dlq-after"]);

    let letters = dead_lettered(&h).await;
    assert_eq!(letters.len(), cases.len());
    for (i, ((value, reason, detail, _), letter)) in cases.iter().zip(&letters).enumerate() {
        assert_eq!(&letter.value, value, "case {i}: value unchanged");
        assert_eq!(letter.key_str(), Some(format!("key-{i}").as_str()));
        assert_eq!(header(letter, "origin"), "validator-7");
        assert_eq!(header(letter, "dlq_reason"), *reason, "case {i}");
        let got = header(letter, "dlq_detail");
        assert!(got.starts_with(detail), "case {i}: {got:?}");
        assert_eq!(header(letter, "dlq_source_topic"), topic);
        assert_eq!(
            header(letter, "dlq_source_partition"),
            deliveries[i].partition.to_string()
        );
        assert_eq!(
            header(letter, "dlq_source_offset"),
            deliveries[i].offset.to_string()
        );
        chrono::DateTime::parse_from_rfc3339(header(letter, "dlq_time")).unwrap();
    }
    assert_eq!(h.dead_letters("missing_field"), 3);
    for reason in [
        "invalid_json",
        "not_an_object",
        "bad_request_id",
        "bad_validation_value",
        "unknown_request_id",
    ] {
        assert_eq!(h.dead_letters(reason), 1, "{reason}");
    }

    let mut errors: Vec<(String, String)> = h
        .statuses()
        .await
        .into_iter()
        .filter(|s| s.status == "error")
        .map(|s| {
            assert_eq!(s.service, "ingress");
            chrono::DateTime::parse_from_rfc3339(&s.date).unwrap();
            (s.request_id, s.status_msg.unwrap_or_default())
        })
        .collect();
    errors.sort();
    let mut expected: Vec<(String, String)> = cases
        .iter()
        .filter_map(|(.., status)| status.map(|(id, msg)| (id.to_owned(), msg.to_owned())))
        .collect();
    expected.sort();
    assert_eq!(errors, expected);
}

#[tokio::test]
async fn a_step_that_keeps_failing_is_dead_lettered_and_resumes_on_replay() {
    // Two attempts (the harness sets INGRESS_VALIDATION_RETRIES=2).
    let h = consuming(&[]).await;
    h.upload_ok("pf-1", &payload(40), None).await;
    h.store_faults.set(Operation::Copy, Fault::Always);
    let original = verdict("pf-1", "success");
    h.respond(&original, "pf-1").await;
    h.wait_verdicts("error", 1).await;
    assert_eq!(h.store_faults.calls(Operation::Copy), 2);
    assert_eq!(h.dead_letters("processing_failed"), 1);

    let letters = dead_lettered(&h).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.value, original);
    assert_eq!(header(letter, "dlq_reason"), "processing_failed");
    let detail = header(letter, "dlq_detail");
    assert!(
        detail.starts_with("moving to insights-upload-perm-test failed: "),
        "{detail}"
    );
    let errors: Vec<_> = h
        .statuses()
        .await
        .into_iter()
        .filter(|s| s.status == "error")
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].request_id, "pf-1");
    assert_eq!(errors[0].org_id.as_deref(), Some(ORG_ID));
    assert_eq!(errors[0].account.as_deref(), Some(ACCOUNT));
    assert!(errors[0]
        .status_msg
        .as_deref()
        .unwrap()
        .starts_with("moving to insights-upload-perm-test failed"));
    // The payload stays where it was.
    assert_eq!(h.keys(Bucket::Quarantine), ["pf-1"]);
    assert!(h.keys(Bucket::Perm).is_empty());
    assert!(available(&h).await.is_empty());

    // Replaying the dead letter to its source topic resumes it.
    h.store_faults.clear_all();
    h.respond(&letter.value, letter.key_str().unwrap()).await;
    h.wait_verdicts("success", 1).await;
    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(h.read(Bucket::Perm, "pf-1").unwrap(), payload(40));
    assert_eq!(available(&h).await.len(), 1);
}

#[tokio::test]
async fn a_storage_outage_pauses_consumption_instead_of_dead_lettering() {
    // One attempt: without the pause, the first failure would go straight to the DLQ.
    let h = consuming(&[("INGRESS_VALIDATION_RETRIES", "1")]).await;
    h.upload_ok("out-store", &payload(12), None).await;
    for op in [Operation::Head, Operation::Copy, Operation::Check] {
        h.store_faults.set(op, Fault::Always);
    }
    h.respond(&verdict("out-store", "success"), "out-store")
        .await;
    poll::until_true(
        Duration::from_secs(20),
        "the consumer to wait for storage",
        || async { h.store_faults.calls(Operation::Check) >= 3 },
    )
    .await;
    assert_nothing_counted(&h);
    assert!(dead_lettered(&h).await.is_empty());
    assert_eq!(h.keys(Bucket::Quarantine), ["out-store"]);

    h.store_faults.clear_all();
    h.wait_verdicts("success", 1).await;
    assert_eq!(h.keys(Bucket::Perm), ["out-store"]);
    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(available(&h).await.len(), 1);
    assert!(dead_lettered(&h).await.is_empty());
    assert_eq!(h.verdicts("error"), 0);
}

#[tokio::test]
async fn a_bus_outage_pauses_consumption_instead_of_dead_lettering() {
    let h = consuming(&[("INGRESS_VALIDATION_RETRIES", "1")]).await;
    h.upload_ok("out-bus", &payload(12), None).await;
    let available_topic = h.topic(&h.bus_config.topics.available);
    let target = available_topic.clone();
    h.bus_faults
        .fail_publish_where(PublishFault::Unavailable, move |t| t == target);
    h.bus_faults.fail_check(true);
    let checks = h.store_faults.calls(Operation::Check);
    h.respond(&verdict("out-bus", "success"), "out-bus").await;
    poll::until_true(
        Duration::from_secs(20),
        "the consumer to wait for the bus",
        || async {
            h.bus_faults.injected_publish_failures() >= 1
                && h.store_faults.calls(Operation::Check) >= checks + 2
        },
    )
    .await;
    assert_nothing_counted(&h);
    assert!(dead_lettered(&h).await.is_empty());
    // Step 1 happened; the payload is not finished while it is still in quarantine.
    assert_eq!(h.keys(Bucket::Quarantine), ["out-bus"]);
    assert_eq!(h.keys(Bucket::Perm), ["out-bus"]);

    h.bus_faults.heal();
    h.wait_verdicts("success", 1).await;
    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(h.messages(&available_topic).await.len(), 1);
    assert!(dead_lettered(&h).await.is_empty());
}

#[tokio::test]
async fn an_unwritable_dlq_holds_the_message_until_it_takes_it() {
    let h = consuming(&[]).await;
    let dlq = h.topic(&h.bus_config.topics.validation_dlq);
    let target = dlq.clone();
    h.bus_faults
        .fail_publish_where(PublishFault::Unavailable, move |t| t == target);
    h.respond(b"{not json", "bad").await;
    poll::until_true(
        Duration::from_secs(20),
        "the dead letter to be retried",
        || async { h.bus_faults.injected_publish_failures() >= 2 },
    )
    .await;
    assert_nothing_counted(&h);
    assert_eq!(h.dead_letters("invalid_json"), 0);

    h.bus_faults.heal();
    h.wait_verdicts("dead_letter", 1).await;
    let letters = h.messages(&dlq).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].value, b"{not json");
    assert_eq!(header(&letters[0], "dlq_reason"), "invalid_json");
}

/// Runs a validation consumer that stops when the returned token fires.
fn stoppable_consumer(
    h: &Ingress,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), intake_bus::runtime::RuntimeError>>,
) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(intake_ingress::validation::run(
        h.state.clone(),
        stop.clone(),
    ));
    (stop, task)
}

/// Shutdown ends the consumer promptly even while it waits, and commits nothing unfinished.
async fn stop_promptly(
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), intake_bus::runtime::RuntimeError>>,
) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the consumer did not stop within 5 s of shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_during_an_outage_stops_the_consumer_without_committing() {
    let h = harness::start(&[("INGRESS_VALIDATION_RETRIES", "1")]).await;
    h.upload_ok("stop-1", &payload(12), None).await;
    for op in [Operation::Head, Operation::Copy, Operation::Check] {
        h.store_faults.set(op, Fault::Always);
    }
    let (stop, task) = stoppable_consumer(&h);
    h.respond(&verdict("stop-1", "success"), "stop-1").await;
    poll::until_true(
        Duration::from_secs(20),
        "the consumer to wait for storage",
        || async { h.store_faults.calls(Operation::Check) >= 3 },
    )
    .await;
    stop_promptly(stop, task).await;
    assert_nothing_counted(&h);

    // The response was not committed: the next consumer applies it once storage is back.
    h.store_faults.clear_all();
    h.start_consumer();
    h.wait_verdicts("success", 1).await;
    assert_eq!(h.keys(Bucket::Perm), ["stop-1"]);
    assert_eq!(available(&h).await.len(), 1);
}

#[tokio::test]
async fn shutdown_while_storage_stops_answering_is_not_held_by_the_health_check() {
    let h = harness::start(&[("INGRESS_VALIDATION_RETRIES", "1")]).await;
    h.upload_ok("stop-2", &payload(12), None).await;
    h.store_faults.set(Operation::Head, Fault::Always);
    h.store_faults.set(Operation::Check, Fault::Hang);
    let (stop, task) = stoppable_consumer(&h);
    h.respond(&verdict("stop-2", "success"), "stop-2").await;
    poll::until_true(
        Duration::from_secs(20),
        "the consumer to check storage",
        || async { h.store_faults.calls(Operation::Check) >= 1 },
    )
    .await;
    // Well inside the check's own timeout: the shutdown must not wait for it.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the consumer did not stop within 1 s of shutdown")
        .unwrap()
        .unwrap();
    assert_nothing_counted(&h);

    h.store_faults.clear_all();
    h.start_consumer();
    h.wait_verdicts("success", 1).await;
    assert_eq!(h.keys(Bucket::Perm), ["stop-2"]);
}

#[tokio::test]
async fn shutdown_while_the_dlq_is_unwritable_stops_without_losing_the_message() {
    let h = harness::start(&[]).await;
    let dlq = h.topic(&h.bus_config.topics.validation_dlq);
    let target = dlq.clone();
    h.bus_faults
        .fail_publish_where(PublishFault::Unavailable, move |t| t == target);
    let (stop, task) = stoppable_consumer(&h);
    h.respond(b"{not json", "bad").await;
    poll::until_true(
        Duration::from_secs(20),
        "the dead letter to be retried",
        || async { h.bus_faults.injected_publish_failures() >= 2 },
    )
    .await;
    stop_promptly(stop, task).await;

    // Not committed: the next consumer dead-letters it once the DLQ takes messages again.
    h.bus_faults.heal();
    h.start_consumer();
    h.wait_verdicts("dead_letter", 1).await;
    let letters = h.messages(&dlq).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].value, b"{not json");
}
