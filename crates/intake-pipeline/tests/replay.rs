//! Replay reads the dead-letter topic up to the end it had when the replay began: a replayed record
//! that fails again (and is dead-lettered again at once) is left for the next replay instead of
//! feeding this one forever.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use intake_bus::{
    Bus, BusError, Consumer, Delivery, OutgoingMessage, ReceivedMessage, StartFrom, Subscription,
    TopicSpec,
};
use intake_core::config::{BusConfig, EnvMap};
use intake_pipeline::replay::replay_between;
use intake_pipeline::ReplayOptions;

const DLQ: &str = "intake.pipeline.dlq";
const SOURCE: &str = "platform.upload.available";

fn dead_letter(key: &str, replays: u32) -> OutgoingMessage {
    OutgoingMessage::new(DLQ, format!("{{\"key\":\"{key}\"}}").into_bytes())
        .key(key.as_bytes().to_vec())
        .header("intake-source-topic", SOURCE)
        .header("intake-error-reason", "missing_cluster_id")
        .header("intake-error-class", "permanent")
        .header("intake-replay-count", replays.to_string())
}

/// The destination of a replay whose every record fails again at once: publishing one also
/// dead-letters it anew, as a pipeline that still cannot process it would.
struct FailsAgain(Arc<dyn Bus>);

#[async_trait]
impl Bus for FailsAgain {
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError> {
        let key = String::from_utf8(message.key.clone().unwrap_or_default()).unwrap();
        let replays: u32 = message
            .headers
            .iter()
            .find(|h| h.name == "intake-replay-count")
            .map(|h| String::from_utf8_lossy(&h.value).parse().unwrap())
            .unwrap();
        let delivery = self.0.publish(message).await?;
        self.0.publish(dead_letter(&key, replays)).await?;
        Ok(delivery)
    }
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError> {
        self.0.subscribe(subscription).await
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

async fn read_all(bus: &dyn Bus, topic: &str, n: usize) -> Vec<ReceivedMessage> {
    let mut consumer = bus
        .subscribe(Subscription {
            group: format!("reader-{}", uuid::Uuid::new_v4().simple()),
            topics: vec![topic.to_owned()],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a message")
            .unwrap();
        out.push(m);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_dead_lettered_during_a_replay_wait_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let bus_config = BusConfig::from_env(&EnvMap::new(), dir.path()).unwrap();
    let bus = intake_bus::open(&bus_config).await.unwrap();
    bus.create_topics(&[DLQ, SOURCE].map(|name| TopicSpec {
        name: name.to_owned(),
        partitions: 1,
        replication: 1,
    }))
    .await
    .unwrap();
    for key in ["a", "b", "c"] {
        bus.publish(dead_letter(key, 0)).await.unwrap();
    }

    // A long idle: only reaching the topic's end can stop this replay in time.
    let options = ReplayOptions {
        idle: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let to: Arc<dyn Bus> = Arc::new(FailsAgain(bus.clone()));
    let replayed = tokio::time::timeout(
        Duration::from_secs(15),
        replay_between(bus.clone(), to.clone(), DLQ, &options),
    )
    .await
    .expect("the replay stops at the end it started with")
    .unwrap();
    let offsets: Vec<_> = replayed.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2]);
    let dls = read_all(&*bus, DLQ, 6).await;
    assert_eq!(
        dls[3..]
            .iter()
            .map(|m| m.header_str("intake-replay-count").unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["1", "1", "1"],
        "each record failed again once"
    );
    assert_eq!(read_all(&*bus, SOURCE, 3).await.len(), 3);

    // A second replay reads the topic as it is now (the three originals and their three
    // re-failures) and stops at that end too.
    let again = tokio::time::timeout(
        Duration::from_secs(15),
        replay_between(bus.clone(), to, DLQ, &options),
    )
    .await
    .expect("the second replay stops too")
    .unwrap();
    assert_eq!(
        again.len(),
        6,
        "a fresh replay reads the whole topic: {again:?}"
    );
}
