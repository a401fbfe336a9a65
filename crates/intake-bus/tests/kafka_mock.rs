//! The Kafka driver against librdkafka's mock cluster (no broker needed): the bus contract suite,
//! then restart, rejoin and rebalance cases, and the failures a real cluster shows (unknown topic,
//! a broker that stops answering).
//!
//! The mock cluster does not implement the CreateTopics API, so [`MockClusterBus`] creates topics
//! through the mock's own call and hands everything else to the real [`KafkaBus`].

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use intake_bus::kafka::{ClientSettings, KafkaBus};
use intake_bus::testsuite::{assert_quiet, join, next_within, unique, WAIT};
use intake_bus::{
    Bus, BusError, Consumer, Delivery, OutgoingMessage, StartFrom, Subscription, TopicSpec,
};
use intake_core::config::KafkaConfig;
use intake_testkit::poll;
use rdkafka::mocking::MockCluster;
use tokio::sync::oneshot;

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

enum Command {
    CreateTopic(TopicSpec, oneshot::Sender<Result<(), String>>),
    BrokerDown(oneshot::Sender<Result<(), String>>),
    BrokerUp(oneshot::Sender<Result<(), String>>),
}

/// A mock cluster of one broker, owned by its own thread (the handle is not `Send`); it lives until
/// the last [`MockClusterBus`] holding its command channel is dropped.
struct MockClusterBus {
    kafka: KafkaBus,
    commands: Mutex<mpsc::Sender<Command>>,
}

impl MockClusterBus {
    fn start() -> Self {
        Self::start_with(PUBLISH_TIMEOUT)
    }

    fn start_with(publish_timeout: Duration) -> Self {
        let (commands, inbox) = mpsc::channel::<Command>();
        let (bootstrap_tx, bootstrap_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = MockCluster::new(1).expect("mock cluster");
                bootstrap_tx
                    .send(cluster.bootstrap_servers())
                    .expect("bootstrap address");
                for command in inbox {
                    match command {
                        Command::CreateTopic(spec, reply) => {
                            let result = cluster
                                .create_topic(
                                    &spec.name,
                                    spec.partitions,
                                    i32::from(spec.replication),
                                )
                                .map_err(|e| e.to_string());
                            let _ = reply.send(result);
                        }
                        Command::BrokerDown(reply) => {
                            let _ = reply.send(cluster.broker_down(1).map_err(|e| e.to_string()));
                        }
                        Command::BrokerUp(reply) => {
                            let _ = reply.send(cluster.broker_up(1).map_err(|e| e.to_string()));
                        }
                    }
                }
            })
            .expect("mock cluster thread");
        let brokers = bootstrap_rx.recv().expect("the mock cluster started");
        let config = KafkaConfig {
            brokers,
            security_protocol: "PLAINTEXT".into(),
            ..KafkaConfig::default()
        };
        let mut settings = ClientSettings::from_config(&config).expect("settings");
        // Short group timings: the mock waits up to the session timeout for members to rejoin.
        settings
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
        let kafka = KafkaBus::with_settings(settings, publish_timeout).expect("kafka bus");
        Self {
            kafka,
            commands: Mutex::new(commands),
        }
    }

    async fn command(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Command,
    ) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(make(reply))
            .expect("mock cluster thread");
        answer.await.expect("mock cluster answer")
    }

    async fn broker_down(&self) {
        self.command(Command::BrokerDown)
            .await
            .expect("broker down");
    }

    async fn broker_up(&self) {
        self.command(Command::BrokerUp).await.expect("broker up");
    }
}

#[async_trait]
impl Bus for MockClusterBus {
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError> {
        self.kafka.publish(message).await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError> {
        self.kafka.subscribe(subscription).await
    }

    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        let existing = self.kafka.list_topics().await?;
        for spec in topics.iter().filter(|t| !existing.contains(&t.name)) {
            self.command(|reply| Command::CreateTopic(spec.clone(), reply))
                .await
                .map_err(BusError::backend)?;
        }
        Ok(())
    }

    async fn list_topics(&self) -> Result<Vec<String>, BusError> {
        self.kafka.list_topics().await
    }

    async fn check(&self) -> Result<(), BusError> {
        self.kafka.check().await
    }
}

async fn mock_bus() -> Arc<dyn Bus> {
    Arc::new(MockClusterBus::start())
}

intake_bus::bus_contract_tests!(mock_bus());
intake_bus::runtime_contract_tests!(mock_bus());

async fn topic(bus: &dyn Bus, partitions: i32) -> String {
    let name = unique("mock");
    bus.create_topics(&[TopicSpec {
        name: name.clone(),
        partitions,
        replication: 1,
    }])
    .await
    .expect("create topic");
    name
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn publish(bus: &dyn Bus, topic: &str, key: &str, value: &str) -> Delivery {
    bus.publish(OutgoingMessage::new(topic, value.as_bytes()).key(key))
        .await
        .expect("publish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_but_uncommitted_comes_back_and_committed_never_does() {
    let bus = mock_bus().await;
    let topic = topic(&*bus, 1).await;
    let group = unique("g");
    for v in ["m1", "m2", "m3"] {
        publish(&*bus, &topic, "k", v).await;
    }

    // The first member processes all three but commits only m1, then stops.
    let mut first = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    let m1 = next_within(&mut *first, "m1").await;
    first.commit(&m1).await.expect("commit m1");
    assert_eq!(text(&next_within(&mut *first, "m2").await.value), "m2");
    assert_eq!(text(&next_within(&mut *first, "m3").await.value), "m3");
    drop(first);

    // The next member gets m2 and m3 again, and commits them.
    let mut second = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    for v in ["m2", "m3"] {
        let m = next_within(&mut *second, v).await;
        assert_eq!(
            text(&m.value),
            v,
            "processed but uncommitted: delivered again"
        );
        second.commit(&m).await.expect("commit");
    }
    drop(second);

    // After that, a member of the group never sees them, only what comes next.
    let mut third = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    assert_quiet(&mut *third, "committed messages").await;
    publish(&*bus, &topic, "k", "m4").await;
    assert_eq!(text(&next_within(&mut *third, "m4").await.value), "m4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_partitions_and_one_takes_over_when_the_other_leaves() {
    const BATCH: usize = 30;
    let bus = mock_bus().await;
    let topic = topic(&*bus, 2).await;
    let group = unique("g");
    // (member, partition, value) of every committed message.
    let committed: Arc<Mutex<Vec<(usize, i32, String)>>> = Arc::default();
    let mut members = Vec::new();
    for member in 0..2 {
        let mut consumer = join(&*bus, &group, &topic, StartFrom::Earliest).await;
        let committed = committed.clone();
        members.push(tokio::spawn(async move {
            loop {
                let Ok(m) = consumer.next().await else {
                    continue;
                };
                if consumer.commit(&m).await.is_ok() {
                    committed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((member, m.partition, text(&m.value)));
                }
            }
        }));
    }
    let count_by = |member: usize| {
        let committed = committed.clone();
        move || {
            committed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|(m, _, _)| *m == member)
                .count()
        }
    };
    let values: Vec<String> = (0..2 * BATCH).map(|i| format!("v{i}")).collect();
    for (i, v) in values[..BATCH].iter().enumerate() {
        publish(&*bus, &topic, &format!("key-{i}"), v).await;
    }
    let (count0, count1) = (count_by(0), count_by(1));
    poll::until_true(
        WAIT,
        "both members commit messages of the first batch",
        || {
            let done = count0() > 0
                && count1() > 0
                && committed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len()
                    >= BATCH;
            async move { done }
        },
    )
    .await;

    // Member 1 leaves (its consumer is dropped with the task); member 0 takes over its partition.
    let leaving = members.pop().expect("two members");
    leaving.abort();
    let _ = leaving.await;
    let before = count0();
    for (i, v) in values[BATCH..].iter().enumerate() {
        publish(&*bus, &topic, &format!("key-{}", BATCH + i), v).await;
    }
    poll::until_true(WAIT, "every message committed", || {
        let all = committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, _, v)| v.clone())
            .collect::<HashSet<_>>();
        async move { all.len() == 2 * BATCH }
    })
    .await;
    members[0].abort();

    let got = committed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for (_, _, v) in &got {
        *times.entry(v.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "committed more than once: {twice:?}");
    let partitions_after: HashSet<i32> = got
        .iter()
        .filter(|(m, _, _)| *m == 0)
        .skip(before)
        .map(|(_, p, _)| *p)
        .collect();
    assert_eq!(
        partitions_after,
        HashSet::from([0, 1]),
        "the remaining member reads both partitions"
    );
}

#[tokio::test]
async fn publishing_to_a_missing_topic_is_unknown_topic() {
    let bus = MockClusterBus::start();
    let missing = unique("missing");
    let err = bus
        .publish(OutgoingMessage::new(&missing, &b"{}"[..]))
        .await
        .expect_err("no such topic");
    assert!(
        matches!(&err, BusError::UnknownTopic(t) if *t == missing),
        "{err:?}"
    );
    assert!(
        !bus.list_topics().await.expect("list").contains(&missing),
        "the producer never creates topics"
    );
}

#[tokio::test]
async fn an_unanswered_publish_times_out_and_check_fails() {
    let bus = MockClusterBus::start_with(Duration::from_millis(1500));
    let topic = topic(&bus, 1).await;
    publish(&bus, &topic, "k", "before").await;
    bus.check().await.expect("check while the broker answers");

    bus.broker_down().await;
    let started = std::time::Instant::now();
    let err = bus
        .publish(OutgoingMessage::new(&topic, &b"after"[..]))
        .await
        .expect_err("no broker");
    assert!(
        matches!(&err, BusError::Timeout { topic: t, timeout_ms: 1500 } if *t == topic),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the publish waited {:?}",
        started.elapsed()
    );
    let err = bus.check().await.expect_err("check with the broker down");
    assert!(matches!(err, BusError::Unavailable { .. }), "{err:?}");
}

/// A member whose session lapsed while the broker was down (longer than the 6 s session) gets its
/// partition back once the broker answers again, without being made anew: what is published after
/// the outage is delivered, and its commit is taken. (tansu 0.6 does not pass this: its coordinator
/// keeps the lapsed member as the group's leader, so no rebalance completes after such an outage.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_rejoins_after_an_outage_longer_than_its_session() {
    let bus = MockClusterBus::start_with(Duration::from_secs(2));
    let topic = topic(&bus, 1).await;
    let group = unique("g");
    publish(&bus, &topic, "k", "before").await;
    let mut member = join(&bus, &group, &topic, StartFrom::Earliest).await;
    let before = next_within(&mut *member, "before").await;
    member
        .commit(&before)
        .await
        .expect("commit before the outage");

    bus.broker_down().await;
    // Past the session timeout, with the member polling (and failing) all along.
    let down = std::time::Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        let _ = tokio::time::timeout(Duration::from_millis(500), member.next()).await;
    }
    bus.broker_up().await;

    poll::until_true(WAIT, "a publish after the outage", || async {
        bus.publish(OutgoingMessage::new(&topic, &b"after"[..]).key("k"))
            .await
            .is_ok()
    })
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    let after = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery within {WAIT:?} after the broker came back"
        );
        match tokio::time::timeout(Duration::from_secs(1), member.next()).await {
            Ok(Ok(m)) if text(&m.value) == "after" => break m,
            Ok(Ok(m)) => panic!("unexpected {:?} after the outage", text(&m.value)),
            _ => {}
        }
    };
    member
        .commit(&after)
        .await
        .expect("commit after the outage");
}

/// Holds the first message of each partition until released; records what it handles.
#[derive(Default)]
struct HoldFirsts {
    released: std::sync::atomic::AtomicBool,
    handled: Mutex<Vec<String>>,
}

#[async_trait]
impl intake_bus::runtime::Handler for HoldFirsts {
    async fn handle(
        &self,
        message: intake_bus::ReceivedMessage,
        _: tokio_util::sync::CancellationToken,
    ) -> intake_bus::runtime::Handled {
        if message.offset == 0 {
            while !self.released.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(String::from_utf8_lossy(&message.value).into_owned());
        intake_bus::runtime::Handled::Done
    }
}

/// A partition that goes to another member, is consumed further there and comes back: the
/// runtime's booking of it is stale (a commit of it is refused as not owned), and what the
/// partition delivered since it came back is handled all the same, not left waiting for a
/// delivery that already happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_handles_what_a_partition_delivers_after_coming_back() {
    let bus = mock_bus().await;
    let topic = topic(bus.as_ref(), 2).await;
    let group = unique("g");
    for i in 0..8 {
        bus.publish(OutgoingMessage::new(&topic, format!("old-{i}")).key(format!("k{i}")))
            .await
            .expect("publish");
    }
    let handler = Arc::new(HoldFirsts::default());
    let consumer = join(bus.as_ref(), &group, &topic, StartFrom::Earliest).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut settings = intake_bus::runtime::Settings::new("test", 64);
    settings.per_partition = 1;
    let runtime = tokio::spawn(intake_bus::runtime::run(
        consumer,
        handler.clone(),
        settings,
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Another member takes a partition over, reads it to its end and commits, then leaves.
    let mut other = join(bus.as_ref(), &group, &topic, StartFrom::Earliest).await;
    // Its first message comes once the group has rebalanced; then it reads until the partition
    // stays quiet.
    let first = tokio::time::timeout(WAIT, other.next())
        .await
        .expect("the other member got a partition")
        .expect("the other member reads");
    other
        .commit(&first)
        .await
        .expect("the other member commits");
    while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(4), other.next()).await {
        other
            .commit(&message)
            .await
            .expect("the other member commits");
    }
    drop(other);
    // The partition comes back; new messages arrive on both partitions while the first ones are
    // still held.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..8 {
        bus.publish(OutgoingMessage::new(&topic, format!("new-{i}")).key(format!("k{i}")))
            .await
            .expect("publish");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    handler
        .released
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let h = handler.clone();
    poll::until_true(WAIT, "every new message handled", move || {
        let h = h.clone();
        async move {
            let handled = h
                .handled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            (0..8).all(|i| handled.contains(&format!("new-{i}")))
        }
    })
    .await;
    cancel.cancel();
    runtime.await.expect("join").expect("the runtime");
}
