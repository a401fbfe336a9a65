//! Validation responses are handled in order within a partition and partitions concurrently
//! (messages.md): a response held on one partition does not hold back another partition's; and
//! finished responses waiting for a slow commit are committed together.
//!
//! The harness's topics have one partition (the embedded bus's default), so the consumer here sees
//! two: a wrapper around the harness's bus puts responses keyed `held…` on partition 0 and the rest
//! on partition 1 (and commits them on the real partition 0). It also logs commits and can make
//! each one slow, as a distant broker does. Within a partition, responses for different payloads
//! run together, and one payload's responses in order.

use crate::harness;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use harness::{payload, SERVICE};
use intake_bus::faults::PublishFault;
use intake_bus::{
    Bus, BusError, Consumer, Delivery, OutgoingMessage, PartitionLag, ReceivedMessage,
    Subscription, TopicSpec,
};
use intake_storage::Bucket;
use intake_testkit::poll;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The harness's bus, with consumers that report two partitions, log their commits (offsets)
/// and take `commit_delay` over each.
#[derive(Clone)]
struct TwoPartitions {
    inner: Arc<dyn Bus>,
    commits: Arc<std::sync::Mutex<Vec<i64>>>,
    commit_delay: Duration,
}

impl TwoPartitions {
    fn new(inner: Arc<dyn Bus>, commit_delay: Duration) -> Self {
        Self {
            inner,
            commits: Arc::default(),
            commit_delay,
        }
    }

    fn commits(&self) -> Vec<i64> {
        self.commits.lock().unwrap().clone()
    }
}

struct TwoPartitionConsumer(Box<dyn Consumer>, TwoPartitions);

#[async_trait]
impl Consumer for TwoPartitionConsumer {
    async fn next(&mut self) -> Result<ReceivedMessage, BusError> {
        let mut message = self.0.next().await?;
        let held = message
            .key
            .as_deref()
            .is_some_and(|k| k.starts_with(b"held"));
        message.partition = if held { 0 } else { 1 };
        Ok(message)
    }

    async fn commit(&mut self, message: &ReceivedMessage) -> Result<(), BusError> {
        tokio::time::sleep(self.1.commit_delay).await;
        // The inner bus commits per partition: give it back the message's real one.
        let real = ReceivedMessage {
            partition: 0,
            ..message.clone()
        };
        self.0.commit(&real).await?;
        self.1.commits.lock().unwrap().push(message.offset);
        Ok(())
    }

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError> {
        self.0.lag().await
    }
}

#[async_trait]
impl Bus for TwoPartitions {
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError> {
        self.inner.publish(message).await
    }
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError> {
        let consumer = self.inner.subscribe(subscription).await?;
        Ok(Box::new(TwoPartitionConsumer(consumer, self.clone())))
    }
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        self.inner.create_topics(topics).await
    }
    async fn list_topics(&self) -> Result<Vec<String>, BusError> {
        self.inner.list_topics().await
    }
    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }
}

/// Sends a `success` verdict for each of `ids`, then starts `state`'s validation consumer; returns
/// the last verdict's offset.
async fn succeed_all(
    h: &harness::Ingress,
    state: &intake_ingress::AppState,
    ids: &[String],
) -> i64 {
    let mut last = 0;
    for id in ids {
        let verdict = json!({"request_id": id, "service": SERVICE, "validation": "success"});
        last = h.respond(verdict.to_string().as_bytes(), id).await.offset;
    }
    tokio::spawn(intake_ingress::validation::run(
        state.clone(),
        h.cancel.clone(),
    ));
    last
}

/// An ingress state like the harness's, on `bus`.
fn state_on(h: &harness::Ingress, bus: TwoPartitions) -> intake_ingress::AppState {
    intake_ingress::AppState::new(intake_ingress::Parts {
        config: h.state.config.clone(),
        bus_config: h.bus_config.clone(),
        identity_required: true,
        store: h.state.store.clone(),
        downloads: h.state.downloads.clone(),
        bus: Arc::new(bus),
        shutting_down: CancellationToken::new(),
        pending: h.state.pending.clone(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_held_on_one_partition_does_not_hold_back_another() {
    let h = harness::start(&[]).await;
    let state = state_on(&h, TwoPartitions::new(h.state.bus.clone(), Duration::ZERO));
    let verdicts = |result: &str| {
        state
            .metrics
            .validation_messages
            .with_label_values(&[result])
            .get()
    };
    tokio::spawn(intake_ingress::validation::run(
        state.clone(),
        h.cancel.clone(),
    ));

    // Partition 0: a bad response whose dead letter cannot be written yet, so it is held.
    let dlq = h.topic(&h.bus_config.topics.validation_dlq);
    let target = dlq.clone();
    h.bus_faults
        .fail_publish_where(PublishFault::Unavailable, move |t| t == target);
    h.respond(b"{not json", "held-1").await;
    poll::until_true(
        Duration::from_secs(20),
        "the held dead letter to be retried",
        || async { h.bus_faults.injected_publish_failures() >= 1 },
    )
    .await;

    // Partition 1: a good verdict goes all the way while partition 0 is still held.
    h.upload_ok("part-1", &payload(100), None).await;
    let success = json!({"request_id": "part-1", "service": SERVICE, "validation": "success"});
    h.respond(success.to_string().as_bytes(), "part-1").await;
    poll::until_true(
        Duration::from_secs(20),
        "the other partition's verdict applied to its end",
        || async { verdicts("success") == 1 },
    )
    .await;
    assert!(h.keys(Bucket::Perm).contains(&"part-1".to_owned()));
    assert!(!h.keys(Bucket::Quarantine).contains(&"part-1".to_owned()));
    assert_eq!(verdicts("dead_letter"), 0, "partition 0 is still held");
    assert!(h.messages(&dlq).await.is_empty());

    // Partition 0 resumes once its dead letter can be written.
    h.bus_faults.heal();
    poll::until_true(
        Duration::from_secs(30),
        "the held response to be dead-lettered",
        || async { verdicts("dead_letter") == 1 },
    )
    .await;
    let letters = h.messages(&dlq).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].value, b"{not json");
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_responses_waiting_for_a_slow_commit_are_committed_together() {
    const RESPONSES: usize = 12;
    let h = harness::start(&[]).await;
    let bus = TwoPartitions::new(h.state.bus.clone(), Duration::from_millis(300));
    let state = state_on(&h, bus.clone());
    let ids: Vec<String> = (0..RESPONSES).map(|i| format!("slow-{i:02}")).collect();
    for id in &ids {
        h.upload_ok(id, &payload(100), None).await;
    }
    let last = succeed_all(&h, &state, &ids).await;
    poll::until_true(
        Duration::from_secs(30),
        "every response applied and the last one committed",
        || async { bus.commits().last() == Some(&last) },
    )
    .await;
    assert_eq!(h.keys(Bucket::Perm).len(), RESPONSES);
    let commits = bus.commits();
    assert!(
        commits.len() < RESPONSES / 2,
        "one commit per response ({commits:?}) although they were waiting together"
    );
    assert!(
        commits.windows(2).all(|w| w[0] < w[1]),
        "in offset order: {commits:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_is_out_before_the_quarantine_copy_goes_and_before_the_commit() {
    // A crash after the quarantine copy is deleted finds the payload in perm alone (a repeat,
    // which sends nothing), so the verdict's status must be acknowledged before that delete.
    const RESPONSES: usize = 5;
    let h = harness::start(&[]).await;
    let bus = TwoPartitions::new(h.state.bus.clone(), Duration::ZERO);
    let state = state_on(&h, bus.clone());
    let ids: Vec<String> = (0..RESPONSES).map(|i| format!("status-{i}")).collect();
    for id in &ids {
        h.upload_ok(id, &payload(100), None).await;
    }
    let status_topic = h.topic(&h.bus_config.topics.payload_status);
    let before = h.messages(&status_topic).await.len();
    let target = status_topic.clone();
    h.bus_faults
        .fail_publish_where(PublishFault::Hang, move |t| t == target);
    let last = succeed_all(&h, &state, &ids).await;

    // While the status hangs, a verdict is copied to perm but its quarantine copy stays...
    poll::until_true(
        Duration::from_secs(20),
        "a payload in perm while statuses hang",
        || async { !h.keys(Bucket::Perm).is_empty() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let perm = h.keys(Bucket::Perm);
    let quarantine = h.keys(Bucket::Quarantine);
    assert!(
        perm.iter().all(|k| quarantine.contains(k)),
        "a quarantine copy was deleted before its status went out: perm {perm:?}, quarantine {quarantine:?}"
    );
    // ...and no offset is committed before its message's status is published.
    assert_eq!(bus.commits(), Vec::<i64>::new());

    h.bus_faults.heal();
    poll::until_true(
        Duration::from_secs(20),
        "the last offset committed once the statuses went out",
        || async { bus.commits().last() == Some(&last) },
    )
    .await;
    assert_eq!(h.keys(Bucket::Perm).len(), RESPONSES);
    assert!(h.keys(Bucket::Quarantine).is_empty());
    let statuses = h.messages(&status_topic).await;
    let successes = statuses[before..]
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.value).contains("\"success\""))
        .count();
    assert_eq!(successes, RESPONSES);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_for_one_payload_are_applied_in_order_while_others_run_together() {
    // Each payload gets `failure` then `success`, next to each other in one partition. Applied in
    // order, the first verdict wins every time: all rejected, every second response a conflict.
    // Applied together, both would find the payload in quarantine and copy it to both buckets.
    const PAYLOADS: usize = 24;
    let h = harness::start(&[]).await;
    let bus = TwoPartitions::new(h.state.bus.clone(), Duration::ZERO);
    let state = state_on(&h, bus.clone());
    let verdicts = |result: &str| {
        state
            .metrics
            .validation_messages
            .with_label_values(&[result])
            .get()
    };
    let ids: Vec<String> = (0..PAYLOADS).map(|i| format!("twice-{i:02}")).collect();
    for id in &ids {
        h.upload_ok(id, &payload(100), None).await;
    }
    let mut last = 0;
    for id in &ids {
        for verdict in ["failure", "success"] {
            let response = json!({"request_id": id, "service": SERVICE, "validation": verdict, "reason": "first"});
            last = h.respond(response.to_string().as_bytes(), id).await.offset;
        }
    }
    tokio::spawn(intake_ingress::validation::run(
        state.clone(),
        h.cancel.clone(),
    ));
    poll::until_true(
        Duration::from_secs(30),
        "every response applied and the last one committed",
        || async { bus.commits().last() == Some(&last) },
    )
    .await;
    assert_eq!(h.keys(Bucket::Reject), ids, "every first verdict applied");
    assert_eq!(h.keys(Bucket::Perm), Vec::<String>::new());
    assert!(h.keys(Bucket::Quarantine).is_empty());
    assert_eq!(verdicts("failure"), PAYLOADS as u64);
    assert_eq!(verdicts("conflict"), PAYLOADS as u64);
    assert_eq!(verdicts("success"), 0);
    let commits = bus.commits();
    assert!(
        commits.windows(2).all(|w| w[0] < w[1]),
        "in offset order: {commits:?}"
    );
}
