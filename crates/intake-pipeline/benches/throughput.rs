//! Archives per second for 100 KiB cluster archives with the starter rules (BENCHMARKS.md):
//! `engine` (extraction + rules, one thread) and `pipeline` (the whole flow on the embedded bus,
//! downloads from a loopback HTTP server, ccx output acknowledged).
//!
//! `cargo bench -p intake-pipeline --bench throughput` (set `BENCH_ARCHIVES` to change the count).

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
        "engine   {n} archives in {secs:.2} s: {:.0} archives/s (one thread)",
        n as f64 / secs
    );
}

async fn pipeline(n: usize, workers: usize) {
    let (server, addr) = common::start_server().await;
    server.route("cluster", common::Reply::Bytes(archive()));
    let dir = tempfile::tempdir().expect("tempdir");
    let bus_config = BusConfig::from_env(&EnvMap::new(), dir.path()).expect("bus config");
    let bus = intake_bus::open(&bus_config).await.expect("bus");
    let yaml = format!(
        "service:\n  consumer: {{workers: {workers}, max_record_age: 0}}\n  downloader:\n    tmp_dir: {}\n    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z]+']\n",
        dir.path().join("tmp").display()
    );
    let config =
        intake_pipeline::load_config_str(&yaml, dir.path(), &EnvMap::new()).expect("config");
    let url = format!("http://{addr}/archives/cluster");
    for i in 0..n {
        let id = format!("req-{i}");
        let value = json!({"request_id": id, "org_id": "54321", "url": url, "timestamp": "2024-05-02T09:30:12.123456Z"});
        let msg = OutgoingMessage::new(
            bus_config.topic("platform.upload.available"),
            value.to_string(),
        )
        .key(id);
        bus.publish(msg).await.expect("publish");
    }
    let sub = Subscription {
        group: "bench-reader".into(),
        topics: vec![bus_config.topic("ccx.ocp.results")],
        start: StartFrom::Earliest,
    };
    let cancel = CancellationToken::new();
    let (bc, b, c) = (bus_config.clone(), bus.clone(), cancel.clone());
    let started = Instant::now();
    let task = tokio::spawn(async move {
        intake_pipeline::run_with_grace(config, &bc, b, None, c, Duration::from_secs(5)).await
    });
    bus.create_topics(&[intake_bus::TopicSpec {
        name: bus_config.topic("ccx.ocp.results"),
        partitions: 1,
        replication: 1,
    }])
    .await
    .expect("topic");
    let mut reader = bus.subscribe(sub).await.expect("reader");
    for _ in 0..n {
        reader.next().await.expect("result");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "pipeline {n} archives in {secs:.2} s: {:.0} archives/s ({workers} workers, embedded bus)",
        n as f64 / secs
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
    engine(n).await;
    pipeline(n, 2).await;
}
