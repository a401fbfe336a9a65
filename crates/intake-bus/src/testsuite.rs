//! The bus contract: one test per promise of [`Bus`] and [`Consumer`], run by every driver through
//! [`bus_contract_tests!`](crate::bus_contract_tests). Feature `testsuite`.
//!
//! Each case creates its own topics (unique names, created explicitly, since a real broker need not
//! auto-create them) and its own consumer groups (never reused: a rejoining group can stall on a real
//! broker), so cases run in parallel against one server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code behind the testsuite feature: a broken promise fails the test"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use intake_testkit::poll;

use crate::{
    Bus, Consumer, Delivery, Header, OutgoingMessage, ReceivedMessage, StartFrom, Subscription,
    TopicSpec,
};

/// Header of the end markers [`read_to_end`] publishes.
pub const END_MARKER_HEADER: &str = "x-test-end-of-read";

/// Every message on `topic` so far, in order. Publishes an end marker and reads from the start in a
/// fresh group until the marker comes back, so the answer is exact without waiting for a quiet
/// period. Markers (this read's and earlier ones) are left out.
pub async fn read_to_end(bus: &dyn Bus, topic: &str) -> Vec<ReceivedMessage> {
    static READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let marker = format!("{}-{n}", std::process::id());
    bus.publish(
        OutgoingMessage::new(topic, b"{}".to_vec()).header(END_MARKER_HEADER, marker.clone()),
    )
    .await
    .unwrap();
    let mut consumer = bus
        .subscribe(Subscription {
            group: format!("test-read-{marker}"),
            topics: vec![topic.to_owned()],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("reading {topic} to its end marker timed out"))
            .unwrap();
        match message.header_str(END_MARKER_HEADER) {
            Some(m) if m == marker => return out,
            Some(_) => {}
            None => out.push(message),
        }
    }
}

/// Longest wait for one expected message (a real broker's first group join can take seconds).
pub const WAIT: Duration = Duration::from_secs(30);
/// How long "nothing more arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(700);

/// Runs every contract case as its own `#[tokio::test]`. `$make_bus` is an expression evaluated
/// once per test giving a future of `Arc<dyn Bus>`. The invoking crate needs `tokio` (with macros).
///
/// ```ignore
/// async fn make_bus() -> std::sync::Arc<dyn intake_bus::Bus> { /* open a fresh bus */ }
/// intake_bus::bus_contract_tests!(make_bus());
/// ```
#[macro_export]
macro_rules! bus_contract_tests {
    ($make_bus:expr) => {
        $crate::bus_contract_tests!(@cases $make_bus;
            round_trip_keeps_key_headers_and_value,
            order_is_kept_within_a_partition,
            a_new_member_starts_after_the_committed_offset,
            uncommitted_messages_are_redelivered_to_the_next_member,
            every_group_receives_every_message,
            members_of_one_group_never_share_a_message,
            earliest_and_latest_for_a_new_group,
            create_topics_is_idempotent_and_topics_are_listed,
            check_answers,
            next_is_cancel_safe,
            many_messages_arrive_exactly_once_in_order,
            lag_counts_what_the_group_has_not_committed,
            keyed_messages_for_one_key_keep_their_order_on_one_partition,
            a_groups_commits_are_per_partition,
            lag_lists_every_partition
        );
    };
    (@cases $make_bus:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let bus: ::std::sync::Arc<dyn $crate::Bus> = $make_bus.await;
                $crate::testsuite::$case(bus).await;
            }
        )+
    };
}

/// Partitions of the topics of cases whose messages share one key (the key keeps them on one
/// partition, whichever it is) or that are about partitions.
pub const PARTITIONS: i32 = 3;

/// A topic or group name no other test uses.
pub fn unique(what: &str) -> String {
    format!("contract-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates a fresh topic with `partitions` partitions and returns its name.
pub async fn fresh_topic(bus: &dyn Bus, what: &str, partitions: i32) -> String {
    let name = unique(what);
    bus.create_topics(&[TopicSpec {
        name: name.clone(),
        partitions,
        replication: 1,
    }])
    .await
    .unwrap_or_else(|e| panic!("create_topics({name}): {e}"));
    name
}

/// Joins a consumer group on one topic.
pub async fn join(bus: &dyn Bus, group: &str, topic: &str, start: StartFrom) -> Box<dyn Consumer> {
    let subscription = Subscription {
        group: group.to_owned(),
        topics: vec![topic.to_owned()],
        start,
    };
    bus.subscribe(subscription)
        .await
        .unwrap_or_else(|e| panic!("subscribe({group}, {topic}): {e}"))
}

/// The next message, or a panic naming `what` after [`WAIT`].
pub async fn next_within(consumer: &mut dyn Consumer, what: &str) -> ReceivedMessage {
    match tokio::time::timeout(WAIT, consumer.next()).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => panic!("next() failed waiting for {what}: {e}"),
        Err(_) => panic!("no message within {WAIT:?} waiting for {what}"),
    }
}

/// Asserts that nothing arrives for [`QUIET`].
pub async fn assert_quiet(consumer: &mut dyn Consumer, what: &str) {
    if let Ok(result) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!(
            "{what}: expected no message, got {:?}",
            result.map(|m| (m.offset, text(&m.value)))
        );
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn publish(bus: &dyn Bus, message: OutgoingMessage) -> Delivery {
    let topic = message.topic.clone();
    bus.publish(message)
        .await
        .unwrap_or_else(|e| panic!("publish to {topic}: {e}"))
}

/// Publishes `values` one after the other with key `key`.
async fn publish_values(bus: &dyn Bus, topic: &str, key: &str, values: &[String]) -> Vec<Delivery> {
    let mut deliveries = Vec::new();
    for v in values {
        deliveries.push(publish(bus, OutgoingMessage::new(topic, v.as_bytes()).key(key)).await);
    }
    deliveries
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{{\"{prefix}\":{i}}}")).collect()
}

pub async fn round_trip_keeps_key_headers_and_value(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(&*bus, "round-trip", PARTITIONS).await;
    let key = b"key-\x00\xff-web01".to_vec();
    let value = b"{\"request_id\":\"abc\"}\n\x00\xfe binary tail".to_vec();
    let headers = vec![
        Header {
            name: "service".into(),
            value: b"advisor".to_vec(),
        },
        Header {
            name: "Request_ID".into(),
            value: b"2439a2974ff44273afcd8b1d18077bf1".to_vec(),
        },
        Header {
            name: "binary".into(),
            value: vec![0, 159, 146, 150, 255],
        },
        Header {
            name: "empty".into(),
            value: Vec::new(),
        },
    ];
    let message = OutgoingMessage {
        topic: topic.clone(),
        key: Some(key.clone()),
        headers: headers.clone(),
        value: value.clone(),
    };
    let delivery = publish(&*bus, message).await;

    let mut consumer = join(&*bus, &unique("g"), &topic, StartFrom::Earliest).await;
    let got = next_within(&mut *consumer, "the published message").await;
    assert_eq!(got.topic, topic);
    assert_eq!(
        (got.partition, got.offset),
        (delivery.partition, delivery.offset)
    );
    assert_eq!(got.key, Some(key));
    assert_eq!(
        got.headers, headers,
        "headers keep their order, case and bytes"
    );
    assert_eq!(got.value, value);
    assert_eq!(
        got.header_str("request_id"),
        Some("2439a2974ff44273afcd8b1d18077bf1")
    );
    if let Some(ts) = got.timestamp_ms {
        let now = chrono::Utc::now().timestamp_millis();
        assert!(
            (now - ts).abs() < 3_600_000,
            "timestamp {ts} is not near now ({now})"
        );
    }
}

pub async fn order_is_kept_within_a_partition(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(&*bus, "order", PARTITIONS).await;
    let values = numbered("n", 30);
    let deliveries = publish_values(&*bus, &topic, "same-key", &values).await;
    assert!(deliveries
        .windows(2)
        .all(|w| w[0].partition == w[1].partition && w[0].offset < w[1].offset));

    let mut consumer = join(&*bus, &unique("g"), &topic, StartFrom::Earliest).await;
    for (value, delivery) in values.iter().zip(&deliveries) {
        let got = next_within(&mut *consumer, value).await;
        assert_eq!(
            (text(&got.value), got.offset),
            (value.clone(), delivery.offset)
        );
    }
}

pub async fn a_new_member_starts_after_the_committed_offset(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(&*bus, "commit", PARTITIONS).await;
    let group = unique("g");
    let values = numbered("c", 5);
    publish_values(&*bus, &topic, "k", &values).await;

    let mut first = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    let mut last = None;
    for value in &values[..3] {
        let got = next_within(&mut *first, value).await;
        assert_eq!(&text(&got.value), value);
        last = Some(got);
    }
    let third = last.expect("three messages were read");
    first.commit(&third).await.expect("commit");
    drop(first);

    let mut second = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    for value in &values[3..] {
        let got = next_within(&mut *second, value).await;
        assert_eq!(
            &text(&got.value),
            value,
            "the new member resumes after the committed offset"
        );
    }
}

pub async fn uncommitted_messages_are_redelivered_to_the_next_member(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(&*bus, "redeliver", PARTITIONS).await;
    let group = unique("g");
    let values = numbered("r", 3);
    let deliveries = publish_values(&*bus, &topic, "k", &values).await;

    let mut first = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    let m0 = next_within(&mut *first, "r0").await;
    first.commit(&m0).await.expect("commit");
    for value in &values[1..] {
        assert_eq!(&text(&next_within(&mut *first, value).await.value), value);
    }
    drop(first);

    let mut second = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    for (value, delivery) in values[1..].iter().zip(&deliveries[1..]) {
        let got = next_within(&mut *second, value).await;
        assert_eq!(
            (text(&got.value), got.offset),
            (value.clone(), delivery.offset),
            "delivered again"
        );
    }
}

pub async fn every_group_receives_every_message(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(&*bus, "fanout", PARTITIONS).await;
    let values = numbered("f", 5);
    publish_values(&*bus, &topic, "k", &values).await;
    for _ in 0..2 {
        let mut consumer = join(&*bus, &unique("g"), &topic, StartFrom::Earliest).await;
        for value in &values {
            let got = next_within(&mut *consumer, value).await;
            assert_eq!(&text(&got.value), value);
            consumer.commit(&got).await.expect("commit");
        }
    }
}

pub async fn members_of_one_group_never_share_a_message(bus: Arc<dyn Bus>) {
    const N: usize = 40;
    let topic = fresh_topic(&*bus, "share", 2).await;
    let group = unique("g");
    let received: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let mut members = Vec::new();
    for member in 0..2 {
        let mut consumer = join(&*bus, &group, &topic, StartFrom::Earliest).await;
        let received = received.clone();
        members.push(tokio::spawn(async move {
            loop {
                let Ok(m) = consumer.next().await else {
                    continue;
                };
                if consumer.commit(&m).await.is_ok() {
                    received
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((member, text(&m.value)));
                }
            }
        }));
    }
    let values = numbered("s", N);
    for (i, v) in values.iter().enumerate() {
        publish(
            &*bus,
            OutgoingMessage::new(&topic, v.as_bytes()).key(format!("key-{i}")),
        )
        .await;
    }
    poll::until_true(WAIT, "both members together receive every message", || {
        let received = received.clone();
        async move {
            let got = received.lock().unwrap_or_else(PoisonError::into_inner);
            got.iter().map(|(_, v)| v).collect::<HashSet<_>>().len() == N
        }
    })
    .await;
    for member in &members {
        member.abort();
    }
    let got = received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut by_value: HashMap<&str, HashSet<usize>> = HashMap::new();
    for (member, value) in &got {
        by_value.entry(value.as_str()).or_default().insert(*member);
    }
    let shared: Vec<_> = by_value
        .iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(v, _)| *v)
        .collect();
    assert!(
        shared.is_empty(),
        "messages received by both members: {shared:?}"
    );
    let all: HashSet<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(by_value.keys().copied().collect::<HashSet<_>>(), all);
}

pub async fn earliest_and_latest_for_a_new_group(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(&*bus, "start", PARTITIONS).await;
    publish(&*bus, OutgoingMessage::new(&topic, &b"before"[..])).await;

    let mut earliest = join(&*bus, &unique("g"), &topic, StartFrom::Earliest).await;
    assert_eq!(
        text(
            &next_within(&mut *earliest, "the earlier message")
                .await
                .value
        ),
        "before"
    );

    // A real broker assigns partitions some time after subscribe; keep publishing until the
    // latest-reading member sees something, which must never be the earlier message.
    let mut latest = join(&*bus, &unique("g"), &topic, StartFrom::Latest).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut i = 0;
    let got = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the latest-reading member received nothing"
        );
        publish(
            &*bus,
            OutgoingMessage::new(&topic, format!("after-{i}").into_bytes()),
        )
        .await;
        i += 1;
        if let Ok(result) = tokio::time::timeout(Duration::from_secs(1), latest.next()).await {
            break result.expect("next()");
        }
    };
    assert!(
        text(&got.value).starts_with("after-"),
        "Latest delivered {:?}",
        text(&got.value)
    );
}

pub async fn create_topics_is_idempotent_and_topics_are_listed(bus: Arc<dyn Bus>) {
    let a = TopicSpec {
        name: unique("create-a"),
        partitions: 1,
        replication: 1,
    };
    let b = TopicSpec {
        name: unique("create-b"),
        partitions: 3,
        replication: 1,
    };
    bus.create_topics(&[a.clone(), b.clone()])
        .await
        .expect("create");
    bus.create_topics(&[a.clone(), b.clone()])
        .await
        .expect("creating existing topics again");
    bus.create_topics(std::slice::from_ref(&a))
        .await
        .expect("creating an existing topic again");
    let bus = &bus;
    poll::until_true(WAIT, "both topics listed", || async {
        let topics = bus.list_topics().await.expect("list_topics");
        topics.contains(&a.name) && topics.contains(&b.name)
    })
    .await;
}

pub async fn check_answers(bus: Arc<dyn Bus>) {
    bus.check().await.expect("check() on a working bus");
}

pub async fn next_is_cancel_safe(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(&*bus, "cancel", PARTITIONS).await;
    let values = numbered("x", 10);
    publish_values(&*bus, &topic, "k", &values).await;
    let mut consumer = join(&*bus, &unique("g"), &topic, StartFrom::Earliest).await;
    // Abandon many next() calls part-way; no message may be lost or repeated.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut attempt = 0u64;
    while got.len() < values.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} messages arrived",
            got.len(),
            values.len()
        );
        // 1 to 20 ms: most calls are cut short at varying points, some complete.
        attempt += 1;
        let patience = Duration::from_millis(attempt % 20 + 1);
        if let Ok(result) = tokio::time::timeout(patience, consumer.next()).await {
            got.push(text(&result.expect("next()").value));
        }
    }
    assert_eq!(got, values);
}

pub async fn many_messages_arrive_exactly_once_in_order(bus: Arc<dyn Bus>) {
    const N: usize = 2000;
    const CONCURRENT: usize = 50;
    let topic = fresh_topic(&*bus, "many", PARTITIONS).await;
    let values = numbered("m", N);
    // Published in concurrent waves; the log order is then what the deliveries say.
    let mut sent: Vec<(Delivery, String)> = Vec::with_capacity(N);
    for wave in values.chunks(CONCURRENT) {
        let mut tasks = tokio::task::JoinSet::new();
        for v in wave {
            let (bus, topic, v) = (bus.clone(), topic.clone(), v.clone());
            tasks.spawn(async move {
                (
                    publish(&*bus, OutgoingMessage::new(topic, v.as_bytes()).key("k")).await,
                    v,
                )
            });
        }
        while let Some(done) = tasks.join_next().await {
            sent.push(done.expect("publish task"));
        }
    }
    sent.sort_by_key(|(d, _)| (d.partition, d.offset));
    let offsets: HashSet<_> = sent.iter().map(|(d, _)| (d.partition, d.offset)).collect();
    assert_eq!(offsets.len(), N, "every publish got its own offset");

    let mut consumer = join(&*bus, &unique("g"), &topic, StartFrom::Earliest).await;
    for (delivery, value) in &sent {
        let got = next_within(&mut *consumer, value).await;
        assert_eq!(
            (got.offset, text(&got.value)),
            (delivery.offset, value.clone())
        );
        consumer.commit(&got).await.expect("commit");
    }
    assert_quiet(&mut *consumer, "after all messages").await;
}

/// The partition's lag as `consumer` reports it, once it holds the partition.
async fn lag_of(consumer: &mut dyn Consumer, topic: &str) -> crate::PartitionLag {
    let held = consumer.lag().await.expect("lag");
    let mut mine: Vec<_> = held.into_iter().filter(|l| l.topic == topic).collect();
    assert_eq!(mine.len(), 1, "one partition of {topic} held: {mine:?}");
    mine.remove(0)
}

pub async fn lag_counts_what_the_group_has_not_committed(bus: Arc<dyn Bus>) {
    let topic = fresh_topic(&*bus, "lag", 1).await;
    let group = unique("g");
    let values = numbered("l", 5);
    publish_values(&*bus, &topic, "k", &values).await;

    let mut consumer = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    let first = next_within(&mut *consumer, "the first message").await;
    let lag = lag_of(&mut *consumer, &topic).await;
    assert_eq!((lag.committed, lag.start, lag.end), (None, 0, 5), "{lag:?}");
    assert_eq!(lag.lag(), 5, "nothing committed: everything kept counts");

    let mut third = first;
    for value in &values[1..3] {
        third = next_within(&mut *consumer, value).await;
    }
    consumer.commit(&third).await.expect("commit");
    let lag = lag_of(&mut *consumer, &topic).await;
    assert_eq!(
        (lag.committed, lag.end, lag.lag()),
        (Some(3), 5, 2),
        "{lag:?}"
    );

    publish_values(&*bus, &topic, "k", &numbered("m", 2)).await;
    let lag = lag_of(&mut *consumer, &topic).await;
    assert_eq!(
        (lag.end, lag.lag()),
        (7, 4),
        "new messages count at once: {lag:?}"
    );

    let mut last = third;
    for _ in 3..7 {
        last = next_within(&mut *consumer, "the rest").await;
    }
    consumer.commit(&last).await.expect("commit");
    assert_eq!(lag_of(&mut *consumer, &topic).await.lag(), 0);
}

/// Publishes one message for each of `n` keys (`key-0`, `key-1`, ...), value `v<i>`; returns the
/// deliveries by partition, in offset order.
async fn publish_spread(bus: &dyn Bus, topic: &str, n: usize) -> BTreeMap<i32, Vec<(i64, String)>> {
    let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for i in 0..n {
        let value = format!("v{i}");
        let d = publish(
            bus,
            OutgoingMessage::new(topic, value.as_bytes()).key(format!("key-{i}")),
        )
        .await;
        assert!(
            (0..PARTITIONS).contains(&d.partition),
            "partition {} of a {PARTITIONS}-partition topic",
            d.partition
        );
        by_partition
            .entry(d.partition)
            .or_default()
            .push((d.offset, value));
    }
    for sent in by_partition.values_mut() {
        sent.sort();
    }
    by_partition
}

pub async fn keyed_messages_for_one_key_keep_their_order_on_one_partition(bus: Arc<dyn Bus>) {
    // Not a multiple of the partitions, so placing messages in turn would spread every key.
    const KEYS: usize = 5;
    const EACH: usize = 10;
    let topic = fresh_topic(&*bus, "keys", PARTITIONS).await;
    let mut sent: BTreeMap<String, Vec<(Delivery, String)>> = BTreeMap::new();
    // Keys interleaved, so each key's messages are mixed with the others' in the log.
    for i in 0..EACH {
        for k in 0..KEYS {
            let (key, value) = (format!("key-{k}"), format!("{k}/{i}"));
            let d = publish(
                &*bus,
                OutgoingMessage::new(&topic, value.as_bytes()).key(key.as_bytes()),
            )
            .await;
            sent.entry(key).or_default().push((d, value));
        }
    }
    for (key, messages) in &sent {
        let partitions: BTreeSet<i32> = messages.iter().map(|(d, _)| d.partition).collect();
        assert_eq!(
            partitions.len(),
            1,
            "{key} landed on partitions {partitions:?}"
        );
        assert!(
            messages.windows(2).all(|w| w[0].0.offset < w[1].0.offset),
            "{key}'s offsets grow in publish order"
        );
    }

    let mut consumer = join(&*bus, &unique("g"), &topic, StartFrom::Earliest).await;
    let mut got: BTreeMap<String, Vec<(Delivery, String)>> = BTreeMap::new();
    for _ in 0..KEYS * EACH {
        let m = next_within(&mut *consumer, "a keyed message").await;
        let key = m.key_str().expect("a key").to_owned();
        let delivery = Delivery {
            partition: m.partition,
            offset: m.offset,
        };
        got.entry(key).or_default().push((delivery, text(&m.value)));
    }
    assert_eq!(
        got, sent,
        "each key's messages arrive in publish order, where published"
    );
    assert_quiet(&mut *consumer, "after every keyed message").await;
}

pub async fn a_groups_commits_are_per_partition(bus: Arc<dyn Bus>) {
    const N: usize = 30;
    let topic = fresh_topic(&*bus, "per-partition", PARTITIONS).await;
    let sent = publish_spread(&*bus, &topic, N).await;
    assert!(
        sent.values().filter(|m| m.len() >= 2).count() >= 2,
        "{N} keys fill at least two partitions with two messages each: {sent:?}"
    );
    let group = unique("g");

    // The first member reads everything and commits only the first message of one partition.
    let mut first = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    let mut read = Vec::new();
    for _ in 0..N {
        read.push(next_within(&mut *first, "a message").await);
    }
    let (&committed_partition, committed_messages) = sent
        .iter()
        .find(|(_, m)| m.len() >= 2)
        .expect("a partition with two messages");
    let (first_offset, _) = &committed_messages[0];
    let chosen = read
        .iter()
        .find(|m| m.partition == committed_partition && m.offset == *first_offset)
        .expect("the first message of the partition was read")
        .clone();
    first.commit(&chosen).await.expect("commit");
    let lags = first.lag().await.expect("lag");
    for lag in lags.iter().filter(|l| l.topic == topic) {
        let expected = (lag.partition == committed_partition).then_some(first_offset + 1);
        assert_eq!(
            lag.committed, expected,
            "partition {}: {lag:?}",
            lag.partition
        );
    }
    drop(first);

    // The next member redelivers every other partition from its start, and that one after the commit.
    let mut second = join(&*bus, &group, &topic, StartFrom::Earliest).await;
    let mut expected: BTreeSet<(i32, i64)> = sent
        .iter()
        .flat_map(|(p, m)| m.iter().map(move |(o, _)| (*p, *o)))
        .collect();
    expected.remove(&(committed_partition, *first_offset));
    let mut got = BTreeSet::new();
    for _ in 0..expected.len() {
        let m = next_within(&mut *second, "a message not committed").await;
        assert!(
            got.insert((m.partition, m.offset)),
            "delivered twice: {m:?}"
        );
    }
    assert_eq!(got, expected);
    assert_quiet(&mut *second, "after every uncommitted message").await;
}

pub async fn lag_lists_every_partition(bus: Arc<dyn Bus>) {
    const N: usize = 30;
    let topic = fresh_topic(&*bus, "lag-all", PARTITIONS).await;
    let sent = publish_spread(&*bus, &topic, N).await;
    let mut consumer = join(&*bus, &unique("g"), &topic, StartFrom::Earliest).await;
    // A real broker assigns partitions once the member polls.
    let read = next_within(&mut *consumer, "a message").await;
    let consumer = tokio::sync::Mutex::new(consumer);
    let lags = poll::until(WAIT, "every partition in the lag", || async {
        let lags: Vec<_> = consumer
            .lock()
            .await
            .lag()
            .await
            .expect("lag")
            .into_iter()
            .filter(|l| l.topic == topic)
            .collect();
        (lags.len() == PARTITIONS as usize).then_some(lags)
    })
    .await;
    let mut consumer = consumer.into_inner();
    let partitions: Vec<i32> = lags.iter().map(|l| l.partition).collect();
    let mut sorted = partitions.clone();
    sorted.sort();
    assert_eq!(sorted, (0..PARTITIONS).collect::<Vec<_>>(), "{lags:?}");
    for lag in &lags {
        let end = sent
            .get(&lag.partition)
            .and_then(|m| m.last())
            .map_or(0, |(offset, _)| offset + 1);
        assert_eq!((lag.committed, lag.end), (None, end), "{lag:?}");
    }
    assert_eq!(lags.iter().map(|l| l.lag()).sum::<u64>(), N as u64);

    consumer.commit(&read).await.expect("commit");
    let lags = consumer.lag().await.expect("lag");
    for lag in lags.iter().filter(|l| l.topic == topic) {
        let expected = (lag.partition == read.partition).then_some(read.offset + 1);
        assert_eq!(lag.committed, expected, "{lag:?}");
    }
    assert_eq!(
        lags.iter()
            .filter(|l| l.topic == topic)
            .map(|l| l.lag())
            .sum::<u64>(),
        N as u64 - 1,
        "the committed message no longer counts"
    );
}
