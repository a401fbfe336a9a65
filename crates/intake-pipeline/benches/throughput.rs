//! Archives per second for 100 KiB cluster archives with the starter rules (BENCHMARKS.md):
//! `engine` (extraction + rules, one thread, into a directory and in memory) and `pipeline` (the
//! whole flow on the embedded bus, downloads from a loopback HTTP server, ccx output acknowledged).
//!
//! `cargo bench -p intake-pipeline --bench throughput` (set `BENCH_ARCHIVES` to change the count,
//! `BENCH_ONLY=pipeline` to skip the engine figure, `BENCH_MAX_IN_FLIGHT` and `BENCH_MAX_IN_MEMORY` to override the defaults:
//! `BENCH_MAX_IN_MEMORY=0` sends every archive through a work directory). Under `scripts/with-servers.sh` the pipeline
//! also runs on the harness's Kafka-protocol broker.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a benchmark: a failed step ends it, and its figures are its output"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use intake_bus::{OutgoingMessage, StartFrom, Subscription};
use intake_core::config::{BusConfig, EnvMap};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ARCHIVE_SIZE: usize = 100 * 1024;

fn archive() -> Vec<u8> {
    // Incompressible padding keeps the gzipped archive at about 100 KiB.
    let a = common::cluster_archive(ARCHIVE_SIZE - 1500);
    assert!(
        (90 * 1024..=110 * 1024).contains(&a.len()),
        "archive is {} bytes",
        a.len()
    );
    a
}

async fn engine(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.tar.gz");
    std::fs::write(&path, archive()).expect("write archive");
    let config = intake_pipeline::load_config_str(
        "plugins: {packages: [intake_ocp]}\n",
        dir.path(),
        &EnvMap::new(),
    )
    .expect("config");
    let engine = intake_pipeline::engine::Engine::build(&config).expect("engine");
    let started = Instant::now();
    for i in 0..n {
        let out = dir.path().join(format!("x{i}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let tree = engine.extract(&path, &out, deadline).expect("extract");
        let eval = engine.run_rules(&tree, deadline).expect("rules");
        assert_eq!(eval.report["reports"].as_array().map(Vec::len), Some(1));
        std::fs::remove_dir_all(&out).expect("cleanup");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "engine   {n} archives in {secs:.2} s: {:.0} archives/s (one thread, into a directory)",
        n as f64 / secs
    );
    let bytes = archive();
    let started = Instant::now();
    for _ in 0..n {
        let deadline = Instant::now() + Duration::from_secs(60);
        let tree = engine
            .extract_in_memory(bytes.clone(), deadline)
            .expect("extract");
        let eval = engine
            .run_rules_on(intake_rules::FileSource::Memory(&tree.files), deadline)
            .expect("rules");
        assert_eq!(eval.report["reports"].as_array().map(Vec::len), Some(1));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "engine   {n} archives in {secs:.2} s: {:.0} archives/s (one thread, in memory)",
        n as f64 / secs
    );
}

/// Which bus the pipeline bench runs on.
enum OnBus {
    Embedded,
    /// The broker at `INTAKE_TEST_KAFKA_BROKERS` (scripts/with-servers.sh starts one).
    Kafka(String),
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// The whole flow with the default configuration's consumer (workers = CPUs, default
/// `max_in_flight`) and watchers (cluster id, payload status), reading the ccx results back.
async fn pipeline(n: usize, on: OnBus) {
    let (server, addr) = common::start_server().await;
    server.route("cluster", common::Reply::Bytes(archive()));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = EnvMap::new();
    let label = match &on {
        OnBus::Embedded => "embedded bus".to_owned(),
        OnBus::Kafka(brokers) => {
            env.insert("KAFKA_BROKERS".into(), brokers.clone());
            env.insert(
                "KAFKA_TOPIC_PREFIX".into(),
                format!("bench-{}.", uuid::Uuid::new_v4().simple()),
            );
            format!("Kafka at {brokers}")
        }
    };
    let bus_config = BusConfig::from_env(&env, dir.path()).expect("bus config");
    let bus = intake_bus::open(&bus_config).await.expect("bus");
    let topics: Vec<intake_bus::TopicSpec> = [
        "platform.upload.available",
        "ccx.ocp.results",
        "intake.pipeline.dlq",
        "platform.payload-status",
    ]
    .iter()
    .map(|t| intake_bus::TopicSpec {
        name: bus_config.topic(t),
        partitions: 1,
        replication: 1,
    })
    .collect();
    bus.create_topics(&topics).await.expect("topics");
    // BENCH_MAX_IN_FLIGHT overrides the default (4 = the former 2 × workers on two cores).
    let in_flight = std::env::var("BENCH_MAX_IN_FLIGHT")
        .map(|v| format!(", max_in_flight: {v}"))
        .unwrap_or_default();
    let in_memory = std::env::var("BENCH_MAX_IN_MEMORY")
        .map(|v| format!("    max_in_memory: {v}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "service:\n  consumer: {{max_record_age: 0, group_id: bench-{group}{in_flight}}}\n  downloader:\n    tmp_dir: {tmp}\n{in_memory}    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z]+']\n  watchers:\n    - {{kind: cluster_id}}\n    - {{kind: payload_status}}\n",
        group = uuid::Uuid::new_v4().simple(),
        tmp = dir.path().join("tmp").display()
    );
    let config =
        intake_pipeline::load_config_str(&yaml, dir.path(), &EnvMap::new()).expect("config");
    let (workers, in_flight) = (config.consumer.workers, config.consumer.max_in_flight);
    let in_memory = config.downloader.max_in_memory;
    let url = format!("http://{addr}/archives/cluster");
    let publishes = (0..n).map(|i| {
        let id = format!("req-{i}");
        let value = json!({"request_id": id, "org_id": "54321", "url": url, "timestamp": "2024-05-02T09:30:12.123456Z"});
        let msg = OutgoingMessage::new(
            bus_config.topic("platform.upload.available"),
            value.to_string(),
        )
        .key(id.clone())
        .header("request_id", id.into_bytes());
        let bus = bus.clone();
        async move { bus.publish(msg).await.expect("publish") }
    });
    futures::stream::iter(publishes)
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let sub = Subscription {
        group: format!("bench-reader-{}", uuid::Uuid::new_v4().simple()),
        topics: vec![bus_config.topic("ccx.ocp.results")],
        start: StartFrom::Earliest,
    };
    let mut reader = bus.subscribe(sub).await.expect("reader");
    let cancel = CancellationToken::new();
    let (bc, b, c) = (bus_config.clone(), bus.clone(), cancel.clone());
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let task = tokio::spawn(async move {
        intake_pipeline::run_with_grace(config, &bc, b, None, c, Duration::from_secs(5)).await
    });
    for _ in 0..n {
        reader.next().await.expect("result");
    }
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "pipeline {n} archives in {secs:.2} s: {:.0} archives/s, {:.2} ms CPU per archive ({workers} workers, {in_flight} in flight, max_in_memory {in_memory}, {label}; CPU of the whole bench process: pipeline, archive server, result reader)",
        n as f64 / secs,
        cpu * 1000.0 / n as f64
    );
    cancel.cancel();
    task.await.expect("join").expect("pipeline");
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_ARCHIVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    println!(
        "100 KiB cluster archives (tar.gz), starter rules intake_ocp, {} CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    if std::env::var("BENCH_ONLY").as_deref() != Ok("pipeline") {
        engine(n).await;
    }
    pipeline(n, OnBus::Embedded).await;
    if let Ok(brokers) = std::env::var("INTAKE_TEST_KAFKA_BROKERS") {
        pipeline(n, OnBus::Kafka(brokers)).await;
    }
}
