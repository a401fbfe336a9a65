//! Validation responses are handled in order within a partition and partitions concurrently
//! (messages.md): a response held on one partition does not hold back another partition's.
//!
//! The embedded bus has one partition per topic, so the consumer here sees two: a wrapper around
//! the harness's bus puts responses keyed `held…` on partition 0 and the rest on partition 1.

mod harness;

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

/// The harness's bus, with consumers that report two partitions.
struct TwoPartitions(Arc<dyn Bus>);

struct TwoPartitionConsumer(Box<dyn Consumer>);

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
        self.0.commit(message).await
    }

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError> {
        self.0.lag().await
    }
}

#[async_trait]
impl Bus for TwoPartitions {
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError> {
        self.0.publish(message).await
    }
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError> {
        let inner = self.0.subscribe(subscription).await?;
        Ok(Box::new(TwoPartitionConsumer(inner)))
    }
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        self.0.create_topics(topics).await
    }
    async fn list_topics(&self) -> Result<Vec<String>, BusError> {
        self.0.list_topics().await
    }
    async fn check(&self) -> Result<(), BusError> {
        self.0.check().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_held_on_one_partition_does_not_hold_back_another() {
    let h = harness::start(&[]).await;
    let state = intake_ingress::AppState::new(intake_ingress::Parts {
        config: h.state.config.clone(),
        bus_config: h.bus_config.clone(),
        identity_required: true,
        store: h.state.store.clone(),
        downloads: h.state.downloads.clone(),
        bus: Arc::new(TwoPartitions(h.state.bus.clone())),
        shutting_down: CancellationToken::new(),
    })
    .unwrap();
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
        "the other partition's payload to reach perm",
        || async { h.keys(Bucket::Perm).contains(&"part-1".to_owned()) },
    )
    .await;
    assert_eq!(verdicts("success"), 1);
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
