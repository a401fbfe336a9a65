//! Publish and consume rates of the embedded bus on this machine's disk (`synchronous=FULL`, so every
//! commit is an fsync), on a one-partition topic and on one of 8 partitions. Run:
//! `cargo bench -p intake-bus --bench embedded`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a benchmark: a failed step ends it, and its figures are its output"
)]

use std::sync::Arc;
use std::time::Instant;

use intake_bus::embedded::{EmbeddedBus, EmbeddedOptions};
use intake_bus::{Bus, OutgoingMessage, StartFrom, Subscription, TopicSpec};

const VALUE: &str = r#"{"account":"12345","org_id":"54321","request_id":"2439a2974ff44273afcd8b1d18077bf1","service":"advisor","category":"payload","size":356,"url":"https://s3.example.com/insights-upload-quarantine/2439a2974ff44273afcd8b1d18077bf1","timestamp":"2024-05-02T09:30:12.123456Z"}"#;

fn message(topic: &str, i: usize) -> OutgoingMessage {
    OutgoingMessage::new(topic, VALUE)
        .key(format!("host-{i}"))
        .header("service", "advisor")
        .header("request_id", "abc")
}

fn report(what: &str, n: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what:<48} {n:>6} msgs in {secs:>7.3} s = {:>9.0} msg/s",
        n as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus: Arc<dyn Bus> = Arc::new(
        EmbeddedBus::open(dir.path(), EmbeddedOptions::default())
            .await
            .expect("open"),
    );
    run(&bus, "bench.embedded", 1).await;
    run(&bus, "bench.embedded.partitioned", 8).await;
}

/// Every case on `topic`, created with `partitions` partitions (keys spread the messages).
async fn run(bus: &Arc<dyn Bus>, topic: &'static str, partitions: i32) {
    bus.create_topics(&[TopicSpec {
        name: topic.into(),
        partitions,
        replication: 1,
    }])
    .await
    .expect("create the topic");
    let label = |case: &str| format!("{case}, {partitions} partition(s)");

    let n = 500;
    let started = Instant::now();
    for i in 0..n {
        bus.publish(message(topic, i)).await.expect("publish");
    }
    report(&label("publish, one at a time"), n, started);

    let (tasks, per_task) = (64, 200);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let bus = bus.clone();
        set.spawn(async move {
            for i in 0..per_task {
                bus.publish(message(topic, t * per_task + i))
                    .await
                    .expect("publish");
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("publisher");
    }
    report(&label("publish, 64 concurrent"), tasks * per_task, started);

    let total = n + tasks * per_task;
    let subscribe = |group: &str| Subscription {
        group: format!("{group}-{topic}"),
        topics: vec![topic.into()],
        start: StartFrom::Earliest,
    };
    let mut consumer = bus
        .subscribe(subscribe("bench-read"))
        .await
        .expect("subscribe");
    let started = Instant::now();
    for _ in 0..total {
        consumer.next().await.expect("next");
    }
    report(&label("consume, no commits"), total, started);

    let mut consumer = bus
        .subscribe(subscribe("bench-commit"))
        .await
        .expect("subscribe");
    let committed = 1000;
    let started = Instant::now();
    for _ in 0..committed {
        let m = consumer.next().await.expect("next");
        consumer.commit(&m).await.expect("commit");
    }
    report(&label("consume, commit every message"), committed, started);
}
