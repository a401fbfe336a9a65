//! The tracker's ingest end to end: mock journeys (the code behind `intake tracker mock`) published
//! on the bus, then the real ingest (the `Ingestor` on intake-bus's batch runtime) drains them into
//! the store; statuses per second counted until the last one is stored and queryable. On the
//! embedded bus and (under `scripts/with-servers.sh`, `INTAKE_TEST_KAFKA_BROKERS`) on Kafka, into
//! SQLite and (`INTAKE_TEST_POSTGRES_URL`) PostgreSQL. Not a timed test: prints a Markdown table.
//!
//! `cargo bench -p intake-tracker --bench ingest`. Environment: `TRACKER_BENCH_ROWS` (statuses,
//! default 1 000 000), `TRACKER_BATCH_SIZE` (default 500, the tracker's default),
//! `TRACKER_BATCH_MAX` (the most statuses a batch takes from a backlog, default
//! `ingest::DEFAULT_BATCH_MAX`; set it to `TRACKER_BATCH_SIZE` for fixed batches),
//! `TRACKER_WRITERS` (transactions a batch is stored in at once, default the tracker's for the
//! engine: 2 PostgreSQL, 1 SQLite),
//! `TRACKER_BENCH_PARTITIONS` (of the status topic, default 1), `TRACKER_BENCH_ONLY` (a comma list
//! of `embedded`, `kafka`, `sqlite`, `postgres`: runs only the combinations it names). The
//! PostgreSQL rows name the server's durability settings; `benches/with-durable-postgres.sh` runs
//! one with fsync on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a benchmark: a failed step ends it, and its figures are its output"
)]

mod support;

/// jemalloc, as the `intake` binary: on glibc's malloc the bench process spent ~27 % of its
/// samples in malloc and free, which the tracker in production does not pay.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use intake_bus::{OutgoingMessage, StartFrom, Subscription, TopicSpec};
use intake_core::config::{BusConfig, EnvMap};
use intake_tracker::ingest::{self, IngestSettings, Ingestor};
use intake_tracker::mock::Journeys;
use intake_tracker::store::postgres::PostgresStore;
use intake_tracker::store::sqlite::SqliteStore;
use intake_tracker::{Metrics, StatusStore};
use tokio_util::sync::CancellationToken;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wanted(part: &str) -> bool {
    std::env::var("TRACKER_BENCH_ONLY").map_or(true, |only| {
        only.split(',').any(|p| p.trim().eq_ignore_ascii_case(part))
    })
}

enum OnBus {
    Embedded,
    Kafka(String),
}

async fn run(on: &OnBus, store_name: &str, store: Arc<dyn StatusStore>, rows: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = EnvMap::new();
    let bus_name = match on {
        OnBus::Embedded => "embedded",
        OnBus::Kafka(brokers) => {
            env.insert("KAFKA_BROKERS".into(), brokers.clone());
            env.insert(
                "KAFKA_TOPIC_PREFIX".into(),
                format!("bench-{}.", uuid::Uuid::new_v4().simple()),
            );
            "Kafka"
        }
    };
    let bus_config = BusConfig::from_env(&env, dir.path()).unwrap();
    let bus = intake_bus::open(&bus_config).await.unwrap();
    let topic = bus_config.topic(&bus_config.topics.payload_status);
    let dlq_topic = bus_config.topic(&bus_config.topics.payload_status_dlq);
    let partitions = env_usize("TRACKER_BENCH_PARTITIONS", 1) as i32;
    bus.create_topics(&[
        TopicSpec {
            name: topic.clone(),
            partitions,
            replication: 1,
        },
        TopicSpec {
            name: dlq_topic.clone(),
            partitions: 1,
            replication: 1,
        },
    ])
    .await
    .unwrap();

    // Journeys of about ten statuses, one starting every 37 ms, ending a minute ago.
    let spacing = Duration::from_millis(37);
    let first = Utc::now()
        - chrono::Duration::from_std(spacing * (rows / 8 + 1) as u32).unwrap()
        - chrono::Duration::seconds(60);
    let journeys = Journeys::new(rows, first, spacing);
    let started = Instant::now();
    let publishes = journeys.take(rows).map(|status| {
        let (bus, topic) = (bus.clone(), topic.clone());
        async move {
            bus.publish(
                OutgoingMessage::new(topic, status.value).key(status.request_id.into_bytes()),
            )
            .await
            .unwrap();
        }
    });
    futures::stream::iter(publishes)
        .buffer_unordered(256)
        .collect::<Vec<()>>()
        .await;
    let published = started.elapsed();

    let today = Utc::now().date_naive();
    store
        .prepare_days(today - chrono::Days::new(3), today)
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let batch_size = env_usize("TRACKER_BATCH_SIZE", 500);
    let batch_max = env_usize("TRACKER_BATCH_MAX", ingest::DEFAULT_BATCH_MAX).max(batch_size);
    let writers = env_usize(
        "TRACKER_WRITERS",
        if store.engine() == "sqlite" {
            ingest::DEFAULT_WRITERS_SQLITE
        } else {
            ingest::DEFAULT_WRITERS_POSTGRES
        },
    );
    let ingestor = Ingestor::new(
        store.clone(),
        bus.clone(),
        metrics.clone(),
        IngestSettings {
            dlq_topic,
            batch_size,
            batch_max,
            writers,
            batch_wait: Duration::from_millis(50),
            retention: Duration::from_secs(7 * 86_400),
            future_skew: Duration::from_secs(86_400),
        },
    );
    let consumer = bus
        .subscribe(Subscription {
            group: "payload_tracker".into(),
            topics: vec![topic],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let (rss_before, _) = support::rss_mib();
    let mut rss_peak = rss_before;
    let cancel = CancellationToken::new();
    let cpu = || support::cpu_of(store_name);
    let cpu_started = cpu();
    let started = Instant::now();
    let ingest = tokio::spawn(ingest::run_loop(ingestor, consumer, cancel.clone()));
    let handled = |result: &str| metrics.messages.with_label_values(&[result]).get() as usize;
    let mut progress = Instant::now();
    while handled("stored") + handled("duplicate") + handled("dead_letter") < rows {
        tokio::time::sleep(Duration::from_millis(20)).await;
        rss_peak = rss_peak.max(support::rss_mib().0);
        if progress.elapsed() >= Duration::from_secs(30) {
            progress = Instant::now();
            eprintln!(
                "  {bus_name}/{store_name}: {} of {rows} stored after {:.0} s",
                handled("stored"),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let ingested = started.elapsed();
    let cpu_ended = cpu();
    let per_status = |seconds: f64| seconds * 1e6 / rows.max(1) as f64;
    let cpu_used = if store_name.starts_with("PostgreSQL") {
        format!(
            "CPU {:.1} µs/status here + {:.1} in the server",
            per_status(cpu_ended.0 - cpu_started.0),
            per_status(cpu_ended.1 - cpu_started.1)
        )
    } else {
        format!(
            "CPU {:.1} µs/status",
            per_status(cpu_ended.0 - cpu_started.0)
        )
    };
    cancel.cancel();
    ingest.await.unwrap().unwrap();
    assert_eq!(
        (
            handled("stored"),
            handled("duplicate"),
            handled("dead_letter")
        ),
        (rows, 0, 0),
        "every status stored once"
    );
    let batches = metrics.batch_size.get_sample_count().max(1) as f64;
    println!(
        "| {bus_name} | {store_name} | {rows} published in {:.1} s ({:.0}/s) | {rows} stored in {:.1} s: **{:.0} statuses/s** | batches of {:.0} on average (at most {batch_max}, {writers} at once), {:.1} ms each | RSS {:.0} → peak {:.0} MiB | load {}; {cpu_used} |",
        published.as_secs_f64(),
        rows as f64 / published.as_secs_f64(),
        ingested.as_secs_f64(),
        rows as f64 / ingested.as_secs_f64(),
        metrics.batch_size.get_sample_sum() / batches,
        metrics.batch_seconds.get_sample_sum() / batches * 1000.0,
        rss_before,
        rss_peak,
        support::load_average(),
    );
}

#[tokio::main]
async fn main() {
    let rows = env_usize("TRACKER_BENCH_ROWS", 1_000_000);
    let mut buses = Vec::new();
    if wanted("embedded") {
        buses.push(OnBus::Embedded);
    }
    match std::env::var("INTAKE_TEST_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() && wanted("kafka") => buses.push(OnBus::Kafka(brokers)),
        Ok(_) => {}
        Err(_) => eprintln!("INTAKE_TEST_KAFKA_BROKERS is not set: Kafka not measured"),
    }
    let postgres = std::env::var("INTAKE_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty() && wanted("postgres"));
    if postgres.is_none() {
        eprintln!("INTAKE_TEST_POSTGRES_URL is not set (or not wanted): PostgreSQL not measured");
    }
    let durability = match &postgres {
        Some(admin) => support::durability(admin).await,
        None => String::new(),
    };
    println!("| bus | store | published | ingest | batches | memory | load |\n|---|---|---|---|---|---|---|");
    for on in &buses {
        if wanted("sqlite") {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("tracker.db").display());
            run(
                on,
                "SQLite",
                Arc::new(SqliteStore::open(&url).await.unwrap()),
                rows,
            )
            .await;
        }
        if let Some(admin) = &postgres {
            let url = support::fresh_postgres(admin).await;
            run(
                on,
                &format!("PostgreSQL ({durability})"),
                Arc::new(PostgresStore::open(&url).await.unwrap()),
                rows,
            )
            .await;
        }
    }
}
