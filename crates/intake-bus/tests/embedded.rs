//! The embedded driver: the bus contract, plus what only a local, multi-process bus promises
//! (durability across reopen, several instances on one directory, lease takeover, retention, tail).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use intake_bus::embedded::{EmbeddedBus, EmbeddedOptions, DATABASE_FILE};
use intake_bus::faults::{FaultyBus, PublishFault};
use intake_bus::testsuite::{assert_quiet, fresh_topic, join, next_within, unique};
use intake_bus::{
    Bus, BusError, Consumer, Delivery, OutgoingMessage, StartFrom, Subscription, TailRecord,
    TopicSpec,
};
use intake_testkit::poll;

/// An embedded bus in a temporary directory that lives as long as the bus.
struct TempBus {
    bus: EmbeddedBus,
    _dir: tempfile::TempDir,
}

#[async_trait]
impl Bus for TempBus {
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError> {
        self.bus.publish(message).await
    }
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError> {
        self.bus.subscribe(subscription).await
    }
    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        self.bus.create_topics(topics).await
    }
    async fn list_topics(&self) -> Result<Vec<String>, BusError> {
        self.bus.list_topics().await
    }
    async fn check(&self) -> Result<(), BusError> {
        self.bus.check().await
    }
}

async fn temp_bus() -> Arc<dyn Bus> {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = EmbeddedBus::open(dir.path(), EmbeddedOptions::default())
        .await
        .expect("open");
    Arc::new(TempBus { bus, _dir: dir })
}

intake_bus::bus_contract_tests!(temp_bus());
intake_bus::runtime_contract_tests!(temp_bus());

async fn open(dir: &Path, options: EmbeddedOptions) -> EmbeddedBus {
    EmbeddedBus::open(dir, options)
        .await
        .expect("open the embedded bus")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8")
}

#[tokio::test]
async fn messages_and_committed_offsets_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let topic = {
        let bus = open(dir.path(), EmbeddedOptions::default()).await;
        let topic = fresh_topic(&bus, "durable", 1).await;
        for v in ["a", "b", "c"] {
            bus.publish(OutgoingMessage::new(&topic, v).key("k").header("h", "1"))
                .await
                .unwrap();
        }
        let mut consumer = join(&bus, &group, &topic, StartFrom::Earliest).await;
        let a = next_within(&mut *consumer, "a").await;
        consumer.commit(&a).await.unwrap();
        topic
    };
    let bus = open(dir.path(), EmbeddedOptions::default()).await;
    assert!(bus.list_topics().await.unwrap().contains(&topic));
    let mut consumer = join(&bus, &group, &topic, StartFrom::Earliest).await;
    let b = next_within(&mut *consumer, "b after reopening").await;
    assert_eq!(
        (b.offset, text(&b.value), b.key_str(), b.header_str("h")),
        (1, "b", Some("k"), Some("1"))
    );
    let delivery = bus
        .publish(OutgoingMessage::new(&topic, "d"))
        .await
        .unwrap();
    assert_eq!(
        delivery,
        Delivery {
            partition: 0,
            offset: 3
        },
        "offsets continue after a reopen"
    );
}

#[tokio::test]
async fn two_instances_on_one_directory_exchange_messages_and_share_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let one = open(dir.path(), EmbeddedOptions::default()).await;
    let two = open(dir.path(), EmbeddedOptions::default()).await;
    let topic = fresh_topic(&one, "shared-dir", 1).await;

    let mut on_two = join(&two, &unique("g"), &topic, StartFrom::Earliest).await;
    one.publish(OutgoingMessage::new(&topic, "from one"))
        .await
        .unwrap();
    assert_eq!(
        text(
            &next_within(&mut *on_two, "a message from the other instance")
                .await
                .value
        ),
        "from one"
    );
    let mut on_one = join(&one, &unique("g"), &topic, StartFrom::Latest).await;
    two.publish(OutgoingMessage::new(&topic, "from two"))
        .await
        .unwrap();
    assert_eq!(
        text(
            &next_within(&mut *on_one, "a message from the other instance")
                .await
                .value
        ),
        "from two"
    );

    // One group across both instances: the second member waits while the first holds the topic.
    let group = unique("g");
    let mut holder = join(&one, &group, &topic, StartFrom::Earliest).await;
    let mut waiter = join(&two, &group, &topic, StartFrom::Earliest).await;
    let first = next_within(&mut *holder, "the holder's first message").await;
    holder.commit(&first).await.unwrap();
    assert_quiet(&mut *waiter, "a waiting member").await;
    drop(holder);
    let got = next_within(&mut *waiter, "the waiting member after the holder left").await;
    assert_eq!((got.offset, text(&got.value)), (1, "from two"));
}

/// A consumer woken by its own process's publishes knows those partitions' ends without asking
/// the database; what another process appends after them must still arrive, in order.
#[tokio::test]
async fn a_consumer_sees_another_instances_publishes_after_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let one = open(dir.path(), EmbeddedOptions::default()).await;
    let two = open(dir.path(), EmbeddedOptions::default()).await;
    let topic = fresh_topic(&one, "ends", 1).await;
    let mut reader = join(&one, &unique("g"), &topic, StartFrom::Earliest).await;
    for round in 0..3 {
        for i in 0..5 {
            one.publish(OutgoingMessage::new(&topic, format!("one {round} {i}")))
                .await
                .unwrap();
        }
        for i in 0..5 {
            two.publish(OutgoingMessage::new(&topic, format!("two {round} {i}")))
                .await
                .unwrap();
        }
    }
    let mut got = Vec::new();
    for _ in 0..30 {
        let m = next_within(&mut *reader, "every message of both instances").await;
        got.push((m.offset, text(&m.value).to_owned()));
    }
    let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..30).collect::<Vec<_>>());
    assert_eq!(got[29].1, "two 2 4");
    assert_quiet(&mut *reader, "a reader at the end").await;
}

#[test]
fn a_crashed_members_lease_expires_and_the_next_member_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        lease_expiry: Duration::from_millis(1500),
        ..EmbeddedOptions::default()
    };
    let (topic, group) = (unique("crash"), unique("g"));

    // The crashing process: it reads two messages, commits the first, and dies without releasing.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let crashed = runtime.block_on(async {
        let bus = open(dir.path(), options.clone()).await;
        for v in ["m0", "m1", "m2"] {
            bus.publish(OutgoingMessage::new(&topic, v)).await.unwrap();
        }
        let mut consumer = join(&bus, &group, &topic, StartFrom::Earliest).await;
        let m0 = next_within(&mut *consumer, "m0").await;
        consumer.commit(&m0).await.unwrap();
        assert_eq!(text(&next_within(&mut *consumer, "m1").await.value), "m1");
        (bus, consumer)
    });
    drop(runtime);
    // Nothing of the dead process may run any more (no heartbeat, no release).
    std::mem::forget(crashed);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bus = open(dir.path(), options).await;
        let mut next = join(&bus, &group, &topic, StartFrom::Earliest).await;
        let started = std::time::Instant::now();
        let m1 = next_within(&mut *next, "m1, redelivered after the lease expired").await;
        assert_eq!((m1.offset, text(&m1.value)), (1, "m1"));
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "the dead member's lease was not honoured"
        );
        assert_eq!(text(&next_within(&mut *next, "m2").await.value), "m2");
    });
}

#[tokio::test]
async fn retention_deletes_old_messages_and_keeps_offsets_growing() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Duration::from_secs(1);
    let topic = unique("retention");
    let published = {
        let bus = open(dir.path(), EmbeddedOptions::default()).await;
        for v in ["old0", "old1", "old2"] {
            bus.publish(OutgoingMessage::new(&topic, v)).await.unwrap();
        }
        std::time::Instant::now()
    };
    age_past(published, retention).await;
    // Opening sweeps at once.
    let bus = open(
        dir.path(),
        EmbeddedOptions {
            retention,
            ..EmbeddedOptions::default()
        },
    )
    .await;
    let fresh = bus
        .publish(OutgoingMessage::new(&topic, "fresh"))
        .await
        .unwrap();
    assert_eq!(fresh.offset, 3);
    let mut consumer = join(&bus, &unique("g"), &topic, StartFrom::Earliest).await;
    let got = next_within(&mut *consumer, "the only retained message").await;
    assert_eq!((got.offset, text(&got.value)), (3, "fresh"));
    assert_eq!(
        bus.sweep_retention().await.unwrap(),
        0,
        "a young message is kept"
    );
}

#[tokio::test]
async fn publish_times_out_while_another_process_holds_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        publish_timeout: Duration::from_millis(300),
        ..EmbeddedOptions::default()
    };
    let bus = open(dir.path(), options).await;
    let topic = fresh_topic(&bus, "timeout", 1).await;

    use sqlx::Connection;
    let mut other = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join(DATABASE_FILE).display()
    ))
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    match bus.publish(OutgoingMessage::new(&topic, "blocked")).await {
        Err(BusError::Timeout {
            topic: t,
            timeout_ms: 300,
        }) => assert_eq!(t, topic),
        other => panic!("expected a timeout, got {other:?}"),
    }
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    bus.publish(OutgoingMessage::new(&topic, "free"))
        .await
        .expect("publishing once the lock is gone");
}

#[tokio::test]
async fn tail_prints_json_lines_from_the_beginning_or_from_now() {
    let bus = temp_bus().await;
    let topic = fresh_topic(&*bus, "tail", 1).await;
    let json = OutgoingMessage::new(&topic, r#"{"request_id":"abc","size":3}"#)
        .key("web01")
        .header("service", "advisor")
        .header("request_id", "abc");
    bus.publish(json).await.unwrap();
    bus.publish(OutgoingMessage::new(&topic, "plain text"))
        .await
        .unwrap();

    let mut lines = Vec::new();
    let n = intake_bus::tail(&*bus, &topic, true, Some(2), |r: TailRecord| {
        lines.push(r.to_json_line())
    })
    .await
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        lines,
        [
            format!(
                r#"{{"topic":"{topic}","partition":0,"offset":0,"key":"web01","headers":{{"service":"advisor","request_id":"abc"}},"value":{{"request_id":"abc","size":3}}}}"#
            ),
            format!(
                r#"{{"topic":"{topic}","partition":0,"offset":1,"key":null,"headers":{{}},"value":"plain text"}}"#
            ),
        ]
    );

    let from_now = tokio::spawn({
        let (bus, topic) = (bus.clone(), topic.clone());
        async move {
            let mut got = Vec::new();
            intake_bus::tail(&*bus, &topic, false, Some(1), |r| got.push(r))
                .await
                .unwrap();
            got
        }
    });
    let bus_ref = &bus;
    poll::until_true(
        Duration::from_secs(10),
        "tail from now to see a new message",
        || {
            let done = from_now.is_finished();
            let topic = topic.clone();
            async move {
                if !done {
                    bus_ref
                        .publish(OutgoingMessage::new(topic, "late"))
                        .await
                        .unwrap();
                }
                done
            }
        },
    )
    .await;
    let got = from_now.await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].offset >= 2,
        "tail from now showed an old message: {:?}",
        got[0]
    );
    assert_eq!(got[0].value, serde_json::json!("late"));
}

#[tokio::test]
async fn the_factory_opens_the_embedded_bus_in_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let env: intake_core::config::EnvMap = [(
        "BUS_DATA_DIR".to_owned(),
        dir.path().join("nested/bus").display().to_string(),
    )]
    .into_iter()
    .collect();
    let config = intake_core::config::BusConfig::from_env(&env, dir.path()).unwrap();
    let bus = intake_bus::open(&config)
        .await
        .expect("the embedded bus opens");
    bus.check().await.unwrap();
    assert!(dir.path().join("nested/bus").join(DATABASE_FILE).exists());
}

#[tokio::test]
async fn invalid_topic_names_are_refused() {
    let bus = temp_bus().await;
    for bad in ["", "has space", "slash/x", &"x".repeat(250)] {
        assert!(
            matches!(
                bus.publish(OutgoingMessage::new(bad, "v")).await,
                Err(BusError::Config { .. })
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn the_faulty_bus_fails_publish_and_check_on_demand_and_passes_consumers_through() {
    let faulty = FaultyBus::new(temp_bus().await);
    let faults = faulty.faults();
    let topic = fresh_topic(&faulty, "faults", 1).await;
    let other = fresh_topic(&faulty, "faults-other", 1).await;

    faults.fail_publish(PublishFault::Unavailable);
    assert!(matches!(
        faulty.publish(OutgoingMessage::new(&topic, "x")).await,
        Err(BusError::Unavailable { .. })
    ));
    let only = topic.clone();
    faults.fail_publish_where(PublishFault::Timeout, move |t| t == only);
    assert!(matches!(
        faulty.publish(OutgoingMessage::new(&topic, "x")).await,
        Err(BusError::Timeout { .. })
    ));
    faulty
        .publish(OutgoingMessage::new(&other, "passes"))
        .await
        .expect("other topics pass");
    assert_eq!(faults.injected_publish_failures(), 2);

    faults.fail_check(true);
    assert!(matches!(
        faulty.check().await,
        Err(BusError::Unavailable { .. })
    ));
    faults.heal();
    faulty.check().await.unwrap();
    faulty
        .publish(OutgoingMessage::new(&topic, "healed"))
        .await
        .unwrap();
    let mut consumer = join(&faulty, &unique("g"), &topic, StartFrom::Earliest).await;
    assert_eq!(
        text(
            &next_within(&mut *consumer, "the healed publish")
                .await
                .value
        ),
        "healed"
    );
}

#[tokio::test]
async fn one_consumer_reads_several_topics() {
    let bus = temp_bus().await;
    let (a, b) = (
        fresh_topic(&*bus, "multi-a", 1).await,
        fresh_topic(&*bus, "multi-b", 1).await,
    );
    for i in 0..3 {
        bus.publish(OutgoingMessage::new(&a, format!("a{i}")))
            .await
            .unwrap();
        bus.publish(OutgoingMessage::new(&b, format!("b{i}")))
            .await
            .unwrap();
    }
    let subscription = Subscription {
        group: unique("g"),
        topics: vec![a.clone(), b.clone(), a.clone()],
        start: StartFrom::Earliest,
    };
    let mut consumer = bus.subscribe(subscription).await.unwrap();
    let mut per_topic: std::collections::HashMap<String, Vec<String>> = Default::default();
    for _ in 0..6 {
        let m = next_within(&mut *consumer, "a message of either topic").await;
        per_topic
            .entry(m.topic.clone())
            .or_default()
            .push(text(&m.value).to_owned());
    }
    assert_eq!(per_topic[&a], ["a0", "a1", "a2"]);
    assert_eq!(per_topic[&b], ["b0", "b1", "b2"]);
    assert_quiet(&mut *consumer, "after both topics were read").await;
}

async fn open_with_partitions(dir: &Path, default_partitions: i32) -> EmbeddedBus {
    open(
        dir,
        EmbeddedOptions {
            default_partitions,
            ..EmbeddedOptions::default()
        },
    )
    .await
}

#[tokio::test]
async fn topics_get_the_partitions_asked_for_or_the_configured_default() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open_with_partitions(dir.path(), 4).await;
    let spec = |name: &str, partitions: i32| TopicSpec {
        name: name.to_owned(),
        partitions,
        replication: 1,
    };
    let (three, default) = (unique("three"), unique("default"));
    bus.create_topics(&[spec(&three, 3), spec(&default, -1)])
        .await
        .unwrap();
    bus.create_topics(&[spec(&three, 8)])
        .await
        .expect("an existing topic is left as it is");
    let auto = unique("auto");
    let keyless = |topic: &str| OutgoingMessage::new(topic, "x");
    let mut partitions = std::collections::BTreeMap::<&str, Vec<i32>>::new();
    for (name, topic) in [("three", &three), ("default", &default), ("auto", &auto)] {
        for _ in 0..9 {
            let d = bus.publish(keyless(topic)).await.unwrap();
            partitions.entry(name).or_default().push(d.partition);
        }
    }
    assert_eq!(
        partitions["three"],
        [0, 1, 2, 0, 1, 2, 0, 1, 2],
        "keyless in turn"
    );
    assert_eq!(partitions["default"], [0, 1, 2, 3, 0, 1, 2, 3, 0]);
    assert_eq!(
        partitions["auto"],
        [0, 1, 2, 3, 0, 1, 2, 3, 0],
        "created on first publish"
    );
    // Kafka's default partitioner: toPositive(murmur2("foobar")) % 4 = 1357151166 % 4 = 2.
    let keyed = bus
        .publish(OutgoingMessage::new(&auto, "k").key("foobar"))
        .await
        .unwrap();
    assert_eq!(
        keyed,
        Delivery {
            partition: 2,
            offset: 2
        },
        "each partition counts its own offsets"
    );
    match bus.create_topics(&[spec(&unique("huge"), 5000)]).await {
        Err(BusError::Config { context, .. }) => assert!(context.contains("1024"), "{context}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    match EmbeddedBus::open(
        dir.path(),
        EmbeddedOptions {
            default_partitions: 0,
            ..EmbeddedOptions::default()
        },
    )
    .await
    {
        Err(BusError::Config { .. }) => {}
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn members_of_a_group_split_the_partitions_and_one_takes_all_when_the_other_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path(), EmbeddedOptions::default()).await;
    let topic = fresh_topic(&bus, "split", 4).await;
    let group = unique("g");
    for i in 0..8 {
        bus.publish(OutgoingMessage::new(&topic, format!("a{i}")))
            .await
            .unwrap();
    }
    let mut first = join(&bus, &group, &topic, StartFrom::Earliest).await;
    let held = |lags: Vec<intake_bus::PartitionLag>| -> Vec<i32> {
        lags.into_iter().map(|l| l.partition).collect()
    };
    assert_eq!(
        held(first.lag().await.unwrap()),
        [0, 1, 2, 3],
        "alone, it holds all"
    );
    let mut second = join(&bus, &group, &topic, StartFrom::Earliest).await;

    // The first member hands partitions 1 and 3 over within a poll interval of asking for a
    // message; the second takes them once they are free. What the first read of them is not
    // committed, so the second reads them from their start.
    let mut by_first = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let kept = by_first
            .iter()
            .filter(|m: &&intake_bus::ReceivedMessage| matches!(m.partition, 0 | 2));
        if kept.count() == 4 && held(first.lag().await.unwrap()) == [0, 2] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first member kept partitions 1 and 3: {:?}",
            first.lag().await
        );
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), first.next()).await {
            let m = m.unwrap();
            if matches!(m.partition, 0 | 2) {
                first.commit(&m).await.unwrap();
            }
            by_first.push(m);
        }
    }
    let mut by_second = Vec::new();
    for _ in 0..4 {
        by_second.push(next_within(&mut *second, "the handed-over partitions").await);
    }
    let partitions: std::collections::BTreeSet<i32> =
        by_second.iter().map(|m| m.partition).collect();
    assert_eq!(partitions, [1, 3].into(), "{by_second:?}");
    assert_eq!(held(second.lag().await.unwrap()), [1, 3]);
    if let Some(late) = by_first.iter().find(|m| matches!(m.partition, 1 | 3)) {
        assert!(
            matches!(first.commit(late).await, Err(BusError::NotOwned(_))),
            "a handed-over partition's commit is refused"
        );
    }
    for m in &by_second {
        second.commit(m).await.unwrap();
    }
    assert_quiet(&mut *second, "the second member after its partitions").await;

    // Both keep receiving their own partitions' new messages.
    for i in 0..8 {
        bus.publish(OutgoingMessage::new(&topic, format!("b{i}")))
            .await
            .unwrap();
    }
    for (member, mine) in [(&mut first, [0, 2]), (&mut second, [1, 3])] {
        for _ in 0..4 {
            let m = next_within(&mut **member, "a new message").await;
            assert!(
                mine.contains(&m.partition),
                "{m:?} went to the wrong member"
            );
            assert!(text(&m.value).starts_with('b'));
            member.commit(&m).await.unwrap();
        }
    }

    // The first leaves: the second takes all four and reads on after the committed offsets.
    drop(first);
    bus.publish(OutgoingMessage::new(&topic, "c0"))
        .await
        .unwrap();
    let got = next_within(&mut *second, "the message after the first member left").await;
    assert_eq!((got.partition, text(&got.value)), (0, "c0"));
    let lags = second.lag().await.unwrap();
    assert_eq!(held(lags.clone()), [0, 1, 2, 3]);
    assert_eq!(lags.iter().map(|l| l.lag()).sum::<u64>(), 1, "{lags:?}");
}

#[tokio::test]
async fn retention_works_per_partition_and_offsets_keep_growing_in_each() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Duration::from_secs(1);
    let topic = unique("retention-parts");
    let published = {
        let bus = open_with_partitions(dir.path(), 3).await;
        for i in 0..6 {
            bus.publish(OutgoingMessage::new(&topic, format!("old{i}")))
                .await
                .unwrap();
        }
        std::time::Instant::now()
    };
    age_past(published, retention).await;
    let bus = open(
        dir.path(),
        EmbeddedOptions {
            retention,
            default_partitions: 3,
            ..EmbeddedOptions::default()
        },
    )
    .await;
    let mut fresh = Vec::new();
    for i in 0..3 {
        fresh.push(
            bus.publish(OutgoingMessage::new(&topic, format!("fresh{i}")))
                .await
                .unwrap(),
        );
    }
    let mut offsets: Vec<(i32, i64)> = fresh.iter().map(|d| (d.partition, d.offset)).collect();
    offsets.sort();
    assert_eq!(offsets, [(0, 2), (1, 2), (2, 2)]);
    let mut consumer = join(&bus, &unique("g"), &topic, StartFrom::Earliest).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = next_within(&mut *consumer, "a retained message").await;
        got.push((m.partition, m.offset, text(&m.value).to_owned()));
    }
    got.sort();
    assert_eq!(
        got,
        [
            (0, 2, "fresh0".to_owned()),
            (1, 2, "fresh1".to_owned()),
            (2, 2, "fresh2".to_owned())
        ]
    );
    assert_quiet(&mut *consumer, "after the retained messages").await;
    for lag in consumer.lag().await.unwrap() {
        assert_eq!((lag.start, lag.end), (2, 3), "{lag:?}");
    }
}

/// The schema and rows a version-1 bus (one partition per topic) left on disk.
const VERSION_1: &str = "
CREATE TABLE topics (name TEXT PRIMARY KEY NOT NULL, partitions INTEGER NOT NULL,
    next_pos INTEGER NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE messages (topic TEXT NOT NULL, pos INTEGER NOT NULL, key BLOB, headers BLOB NOT NULL,
    value BLOB NOT NULL, timestamp_ms INTEGER NOT NULL);
CREATE UNIQUE INDEX messages_by_topic_pos ON messages (topic, pos);
CREATE TABLE group_offsets (grp TEXT NOT NULL, topic TEXT NOT NULL, next_pos INTEGER NOT NULL,
    PRIMARY KEY (grp, topic));
CREATE TABLE leases (grp TEXT NOT NULL, topic TEXT NOT NULL, holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL, PRIMARY KEY (grp, topic));
PRAGMA user_version = 1;
";

#[tokio::test]
async fn a_version_1_directory_keeps_working_its_messages_in_partition_0() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    {
        let mut v1 = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}?mode=rwc",
            dir.path().join(DATABASE_FILE).display()
        ))
        .await
        .unwrap();
        sqlx::raw_sql(VERSION_1).execute(&mut v1).await.unwrap();
        // Asked for 3 partitions under version 1, which kept one: it stays one.
        sqlx::query("INSERT INTO topics VALUES ('old.topic', 3, 3, ?1)")
            .bind(now)
            .execute(&mut v1)
            .await
            .unwrap();
        for (pos, value) in ["m0", "m1", "m2"].iter().enumerate() {
            // Headers: name "h" and value "1", each as a u32 big-endian length and its bytes.
            sqlx::query("INSERT INTO messages VALUES ('old.topic', ?1, 'k', ?2, ?3, ?4)")
                .bind(pos as i64)
                .bind(&b"\0\0\0\x01h\0\0\0\x011"[..])
                .bind(value.as_bytes())
                .bind(now)
                .execute(&mut v1)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO group_offsets VALUES ('old-group', 'old.topic', 1)")
            .execute(&mut v1)
            .await
            .unwrap();
        v1.close().await.unwrap();
    }

    let bus = open_with_partitions(dir.path(), 4).await;
    assert_eq!(bus.list_topics().await.unwrap(), ["old.topic"]);
    let mut consumer = join(&bus, "old-group", "old.topic", StartFrom::Earliest).await;
    let m1 = next_within(&mut *consumer, "m1, after the version-1 commit").await;
    assert_eq!(
        (
            m1.partition,
            m1.offset,
            text(&m1.value),
            m1.key_str(),
            m1.header_str("h")
        ),
        (0, 1, "m1", Some("k"), Some("1"))
    );
    assert_eq!(
        consumer.lag().await.unwrap(),
        [intake_bus::PartitionLag {
            topic: "old.topic".into(),
            partition: 0,
            committed: Some(1),
            start: 0,
            end: 3
        }]
    );
    consumer.commit(&m1).await.unwrap();
    let keyed = bus
        .publish(OutgoingMessage::new("old.topic", "m3").key("foobar"))
        .await
        .unwrap();
    assert_eq!(
        keyed,
        Delivery {
            partition: 0,
            offset: 3
        },
        "the upgraded topic keeps one partition and its offsets"
    );
    assert_eq!(text(&next_within(&mut *consumer, "m2").await.value), "m2");
    assert_eq!(text(&next_within(&mut *consumer, "m3").await.value), "m3");
    drop(consumer);
    drop(bus);

    // Opened again (already upgraded), the commit made after the upgrade is there.
    let bus = open(dir.path(), EmbeddedOptions::default()).await;
    let mut consumer = join(&bus, "old-group", "old.topic", StartFrom::Earliest).await;
    assert_eq!(
        text(
            &next_within(&mut *consumer, "m2 again, after m1's commit")
                .await
                .value
        ),
        "m2"
    );
    // A new topic on the upgraded directory gets the configured partitions.
    let fresh = fresh_topic(&bus, "after-upgrade", 2).await;
    let d = bus
        .publish(OutgoingMessage::new(&fresh, "x"))
        .await
        .unwrap();
    assert_eq!(
        d,
        Delivery {
            partition: 0,
            offset: 0
        }
    );
    let d = bus
        .publish(OutgoingMessage::new(&fresh, "y"))
        .await
        .unwrap();
    assert_eq!(
        d,
        Delivery {
            partition: 1,
            offset: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parts_opening_a_new_directory_at_the_same_time_all_open_it() {
    // `intake ingress` and `intake validator` started together on a fresh data directory race to
    // create the bus; none may fail with "database is locked".
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let open = || EmbeddedBus::open(dir.path(), EmbeddedOptions::default());
        let opened = tokio::join!(open(), open(), open(), open(), open(), open());
        for bus in [opened.0, opened.1, opened.2, opened.3, opened.4, opened.5] {
            assert!(bus.is_ok(), "round {round}: {:?}", bus.err());
        }
    }
}

/// Waits until messages published at `published` are older than `retention`.
async fn age_past(published: std::time::Instant, retention: Duration) {
    poll::until_true(
        Duration::from_secs(5),
        "the messages to age past the retention",
        || async { published.elapsed() > retention + Duration::from_millis(100) },
    )
    .await;
}

/// A member renews its lease through the same writer as the publishes: with publishers keeping
/// the writer busy without a pause, its renewals still land in time, so it never loses its
/// partition and every commit of what it reads is accepted. (Written beside the writer, a renewal
/// waited for SQLite's lock in its busy handler, which a writer taking the lock back to back can
/// starve for seconds: under `intake serve`'s steady load the validator lost its lease within
/// 30 s. Here that took larger messages, and then happened in one run of two to four.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_keeps_its_lease_while_publishers_keep_the_writer_busy() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let lease_expiry = Duration::from_millis(300);
    let bus = open(
        dir.path(),
        EmbeddedOptions {
            lease_expiry,
            ..EmbeddedOptions::default()
        },
    )
    .await;
    let topic = fresh_topic(&bus, "busy", 1).await;
    let noise = fresh_topic(&bus, "noise", 1).await;
    let mut consumer = join(&bus, &unique("g"), &topic, StartFrom::Earliest).await;
    let (stop, published) = (Arc::new(AtomicBool::new(false)), AtomicU64::new(0));
    // The disk shared with others' fsyncs (payload files, as in `intake serve`), so each of the
    // writer's commits holds SQLite's lock for longer.
    let disk = {
        let (stop, file) = (stop.clone(), dir.path().join("other-fsyncs"));
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::create(file).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all_at(&[7; 64 * 1024], 0).unwrap();
                f.sync_data().unwrap();
            }
        })
    };

    let publishers = futures::future::join_all((0..32).map(|p| {
        let (bus, noise, stop, published) = (&bus, &noise, &*stop, &published);
        async move {
            while !stop.load(Ordering::Relaxed) {
                bus.publish(OutgoingMessage::new(noise, format!("p{p}").repeat(700)))
                    .await
                    .expect("a busy bus still publishes");
                published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }));
    let reader = async {
        // Ten lease lifetimes of reading and committing under the load.
        let until = std::time::Instant::now() + lease_expiry * 10;
        let mut read = 0;
        while std::time::Instant::now() < until {
            let value = format!("m{read}");
            bus.publish(OutgoingMessage::new(&topic, value.as_str()))
                .await
                .unwrap();
            let got = next_within(&mut *consumer, "the next message of a held partition").await;
            assert_eq!(
                text(&got.value),
                value,
                "nothing skipped or delivered twice"
            );
            consumer
                .commit(&got)
                .await
                .expect("the member still holds its partition");
            read += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        read
    };
    let (_, read) = tokio::join!(publishers, reader);
    disk.join().unwrap();
    assert!(
        read > 10,
        "only {read} messages read in {:?}",
        lease_expiry * 10
    );
    assert!(
        published.load(Ordering::Relaxed) > 100,
        "the publishers did not keep the writer busy"
    );
    println!(
        "{read} read and committed beside {} publishes",
        published.load(Ordering::Relaxed)
    );
    let held = consumer.lag().await.unwrap();
    assert_eq!(held.len(), 1, "the partition is still held: {held:?}");
}

/// After a burst the write-ahead log is cut back to its limit once it is checkpointed, instead of
/// keeping the burst's size on disk for good.
#[tokio::test]
async fn the_write_ahead_log_is_cut_back_after_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 256 << 10;
    let bus = open(
        dir.path(),
        EmbeddedOptions {
            wal_size_limit: limit,
            ..EmbeddedOptions::default()
        },
    )
    .await;
    let topic = fresh_topic(&bus, "burst", 1).await;
    let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
    let value = "x".repeat(4096);
    for chunk in 0..40 {
        futures::future::join_all(
            (0..50)
                .map(|i| bus.publish(OutgoingMessage::new(&topic, format!("{chunk}-{i}{value}")))),
        )
        .await
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });
    }
    let burst = std::fs::metadata(&wal).unwrap().len();
    assert!(
        burst > 4 * limit,
        "the burst left a log of only {burst} bytes"
    );
    // The background checkpoint copies the log into the database; the next write starts the log
    // over and cuts the file back.
    poll::until_true(
        Duration::from_secs(20),
        "the log to be cut back to its limit",
        || async {
            bus.publish(OutgoingMessage::new(&topic, "after"))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::fs::metadata(&wal).unwrap().len() <= limit
        },
    )
    .await;
}
