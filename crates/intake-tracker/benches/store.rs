//! Ingest rate and lookup latency of the status store at ≥ 1 M status rows, on SQLite and (when
//! `INTAKE_TEST_POSTGRES_URL` is set) PostgreSQL. Not a timed test: prints a Markdown table for
//! BENCHMARKS.md.
//!
//! `cargo bench -p intake-tracker --bench store` (`TRACKER_BENCH_ROWS`, default 1 000 000;
//! `TRACKER_BENCH_ONLY=sqlite` or `postgres` for one engine; `TRACKER_BENCH_DATES=ordered` for
//! dates in arrival order, see [`date_offset_ms`]; `TRACKER_WRITERS`, batches stored at once,
//! see [`writers`]). The
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

use chrono::{SubsecRound, Utc};
use intake_tracker::check::dedup_key;
use intake_tracker::model::{
    CountMode, NewStatus, PageAt, PayloadQuery, PayloadSort, Scope, SortDir, StatusQuery,
    StatusSort, TimeRange,
};
use intake_tracker::store::postgres::PostgresStore;
use intake_tracker::store::sqlite::SqliteStore;
use intake_tracker::StatusStore;

const STEPS: [(&str, Option<&str>, &str); 5] = [
    ("ingress", None, "received"),
    ("ingress", None, "success"),
    ("puptoo", None, "processing"),
    ("puptoo", Some("inventory"), "success"),
    ("advisor", None, "success"),
];
const BATCH: usize = 500;

/// One instant for the whole run, so that the same payload always yields the same statuses.
fn anchor() -> chrono::DateTime<Utc> {
    static ANCHOR: std::sync::OnceLock<chrono::DateTime<Utc>> = std::sync::OnceLock::new();
    *ANCHOR.get_or_init(|| (Utc::now() - chrono::Duration::hours(60)).trunc_subsecs(6))
}

/// How payloads' dates spread over the 58 hours, from `TRACKER_BENCH_DATES`: `wrap` (the default,
/// and what every figure before 2026-12-03 15:00 UTC used) gives payload `p` the offset
/// `p × 977 ms` modulo 58 hours, so the dates sweep the 58 hours again every ~213 000 payloads
/// (~1.07 M statuses) and each later sweep inserts among the earlier sweeps' rows in every index
/// that leads with the date; `ordered` spreads the run's payloads evenly over the 58 hours in
/// order, as live traffic (dated about now) arrives.
fn date_offset_ms(payload: usize) -> i64 {
    static STEP_US: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
    const SPAN_MS: i64 = 58 * 3_600_000;
    let step_us = STEP_US.get_or_init(|| {
        dates_ordered().then(|| SPAN_MS * 1_000 / payloads_of(rows()).max(1) as i64)
    });
    match step_us {
        Some(step) => payload as i64 * step / 1_000,
        None => (payload as i64 * 977) % SPAN_MS,
    }
}

/// Batches stored at once (`TRACKER_WRITERS`), by default the tracker's for the engine: 2 on
/// PostgreSQL, 1 on SQLite (whose one write lock queues any more).
fn writers(engine: &str) -> usize {
    std::env::var("TRACKER_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if engine == "sqlite" {
            intake_tracker::ingest::DEFAULT_WRITERS_SQLITE
        } else {
            intake_tracker::ingest::DEFAULT_WRITERS_POSTGRES
        })
        .max(1)
}

fn dates_ordered() -> bool {
    std::env::var("TRACKER_BENCH_DATES").is_ok_and(|v| v == "ordered")
}

fn rows() -> usize {
    std::env::var("TRACKER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn payloads_of(rows: usize) -> usize {
    rows.div_ceil(STEPS.len())
}

fn statuses(payload: usize) -> Vec<NewStatus> {
    let base = anchor() + chrono::Duration::milliseconds(date_offset_ms(payload));
    let request_id = format!("{payload:032x}");
    STEPS
        .iter()
        .enumerate()
        .map(|(i, (service, source, status))| {
            let date = base + chrono::Duration::milliseconds(i as i64 * 850);
            let status_msg = format!("{service} step {i}");
            NewStatus {
                dedup_key: dedup_key(&request_id, service, *source, status, &status_msg, date),
                request_id: request_id.clone(),
                service: (*service).to_owned(),
                source: source.map(str::to_owned),
                status: (*status).to_owned(),
                status_msg,
                date,
                account: format!("{}", 1_000 + payload % 500),
                org_id: format!("{}", 5_000 + payload % 500),
                inventory_id: format!("inv-{payload}"),
                system_id: String::new(),
            }
        })
        .collect()
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

async fn time_many<F, Fut>(n: usize, mut f: F) -> (Duration, Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f(i).await;
        samples.push(started.elapsed());
    }
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    )
}

/// CPU time per status between two readings of (this process, the PostgreSQL server's processes):
/// `µs/status` for the bench process (driver and SQLite) and, when a server ran, for the server.
fn cpu_per_status(from: (f64, f64), to: (f64, f64), statuses: usize) -> String {
    let per = |seconds: f64| seconds * 1e6 / statuses.max(1) as f64;
    let server = to.1 - from.1;
    if server > 0.0 {
        format!(
            "{:.1} µs/status here + {:.1} µs/status in the server",
            per(to.0 - from.0),
            per(server)
        )
    } else {
        format!("{:.1} µs/status", per(to.0 - from.0))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn bench(name: &str, store: Arc<dyn StatusStore>, rows: usize) {
    let payloads = payloads_of(rows);
    let today = Utc::now().date_naive();
    store
        .prepare_days(today - chrono::Days::new(4), today)
        .await
        .unwrap();
    let started = Instant::now();
    let cpu = || support::cpu_of(name);
    let cpu_started = cpu();
    let mut stretch_cpu = cpu_started;
    let writers = writers(store.engine());
    // Up to `writers` batches stored at once, each its own transaction on its own connection (as
    // the ingest stores a backlog's batch in parts); batches hold whole payloads, so no two touch
    // the same payload.
    let mut in_flight = tokio::task::JoinSet::new();
    let mut pending = Vec::with_capacity(BATCH);
    let mut stored = 0usize;
    let mut rss_peak = 0.0f64;
    let (mut stretch_started, mut stretch_rows) = (Instant::now(), 0usize);
    for p in 0..payloads {
        pending.extend(statuses(p));
        if pending.len() >= BATCH {
            if in_flight.len() >= writers {
                stored += in_flight.join_next().await.unwrap().unwrap();
            }
            let (store, batch) = (
                store.clone(),
                std::mem::replace(&mut pending, Vec::with_capacity(BATCH)),
            );
            in_flight.spawn(async move { store.store_batch(&batch).await.unwrap().stored.len() });
            if stored - stretch_rows >= 1_000_000 {
                rss_peak = rss_peak.max(support::rss_mib().0);
                let now = cpu();
                eprintln!(
                    "  {name}: {stored} stored, the last {} at {:.0} statuses/s, CPU {} (load {}, RSS {:.0} MiB)",
                    stored - stretch_rows,
                    (stored - stretch_rows) as f64 / stretch_started.elapsed().as_secs_f64(),
                    cpu_per_status(stretch_cpu, now, stored - stretch_rows),
                    support::load_average(),
                    support::rss_mib().0
                );
                (stretch_started, stretch_rows, stretch_cpu) = (Instant::now(), stored, now);
            }
        }
    }
    if !pending.is_empty() {
        stored += store.store_batch(&pending).await.unwrap().stored.len();
    }
    while let Some(done) = in_flight.join_next().await {
        stored += done.unwrap();
    }
    let ingest = started.elapsed();
    rss_peak = rss_peak.max(support::rss_mib().0);
    let cpu_used = cpu_per_status(cpu_started, cpu(), stored);
    let dates = if dates_ordered() {
        "dates in order"
    } else {
        "dates wrapping"
    };
    println!("| {name} | ingest, batches of {BATCH}, {writers} at once, {dates} | {stored} statuses in {:.1} s (load {}, RSS peak {rss_peak:.0} MiB; CPU {cpu_used}) | **{:.0} statuses/s** |", ingest.as_secs_f64(), support::load_average(), stored as f64 / ingest.as_secs_f64());

    let redelivered: Vec<NewStatus> = (0..BATCH / STEPS.len()).flat_map(statuses).collect();
    let started = Instant::now();
    let outcome = store.store_batch(&redelivered).await.unwrap();
    assert_eq!(outcome.duplicates, redelivered.len());
    println!(
        "| {name} | redelivered batch of {BATCH} (all duplicates) | {} | {:.0} statuses/s |",
        ms(started.elapsed()),
        BATCH as f64 / started.elapsed().as_secs_f64()
    );

    let (p50, p99) = time_many(1_000, |i| {
        let store = store.clone();
        async move {
            let id = format!("{:032x}", (i * 7919) % payloads);
            let payload = store.payload(&id, &Scope::All).await.unwrap().unwrap();
            assert_eq!(
                store.payload_statuses(&payload, None).await.unwrap().len(),
                STEPS.len()
            );
        }
    })
    .await;
    println!(
        "| {name} | `/payloads/{{id}}` lookup (payload + statuses), 1 000 ids | p50 {} | p99 {} |",
        ms(p50),
        ms(p99)
    );

    let query = |scope: Scope, inventory: Option<String>| PayloadQuery {
        scope,
        account: None,
        org_id: None,
        inventory_id: inventory,
        system_id: None,
        service: None,
        status: None,
        created_at: TimeRange::default(),
        sort_by: PayloadSort::CreatedAt,
        sort_dir: SortDir::Desc,
        page_size: 10,
        at: PageAt::Offset(0),
        count: CountMode::Exact,
    };
    let (p50, p99) = time_many(200, |i| {
        let (store, q) = (
            store.clone(),
            query(
                Scope::All,
                Some(format!("inv-{}", (i * 104_729) % payloads)),
            ),
        );
        async move {
            assert_eq!(store.list_payloads(&q).await.unwrap().count, 1);
        }
    })
    .await;
    println!(
        "| {name} | `/payloads?inventory_id=` with exact count | p50 {} | p99 {} |",
        ms(p50),
        ms(p99)
    );
    let (p50, p99) = time_many(50, |i| {
        let (store, q) = (
            store.clone(),
            query(Scope::Org(format!("{}", 5_000 + i % 500)), None),
        );
        async move {
            store.list_payloads(&q).await.unwrap();
        }
    })
    .await;
    println!("| {name} | `/payloads` first page of one org ({} payloads) with exact count | p50 {} | p99 {} |", payloads / 500, ms(p50), ms(p99));
    let (p50, p99) = time_many(10, |_| {
        let (store, q) = (store.clone(), query(Scope::All, None));
        async move {
            assert_eq!(
                store.list_payloads(&q).await.unwrap().count as usize,
                payloads
            );
        }
    })
    .await;
    println!("| {name} | `/payloads` first page, all {payloads} payloads, exact count | p50 {} | p99 {} |", ms(p50), ms(p99));
    let (p50, p99) = time_many(200, |_| {
        let (store, mut q) = (store.clone(), query(Scope::All, None));
        q.count = CountMode::Estimate;
        async move {
            let page = store.list_payloads(&q).await.unwrap();
            assert!(page.count as usize >= payloads && page.rows.len() == 10);
        }
    })
    .await;
    println!("| {name} | `/payloads` first page, all {payloads} payloads, `count=estimate` | p50 {} | p99 {} |", ms(p50), ms(p99));

    let statuses = payloads * STEPS.len();
    let status_query = |count: CountMode| StatusQuery {
        scope: Scope::All,
        service: None,
        source: None,
        status: None,
        status_msg: None,
        request_id: None,
        date: TimeRange::default(),
        created_at: TimeRange::default(),
        sort_by: StatusSort::Date,
        sort_dir: SortDir::Desc,
        page_size: 10,
        at: PageAt::Offset(0),
        count,
    };
    let (p50, p99) = time_many(10, |_| {
        let (store, q) = (store.clone(), status_query(CountMode::Exact));
        async move {
            assert_eq!(
                store.list_statuses(&q).await.unwrap().count as usize,
                statuses
            );
        }
    })
    .await;
    println!("| {name} | `/statuses` first page, all {statuses} statuses, exact count | p50 {} | p99 {} |", ms(p50), ms(p99));
    let (p50, p99) = time_many(200, |_| {
        let (store, q) = (store.clone(), status_query(CountMode::Estimate));
        async move {
            let page = store.list_statuses(&q).await.unwrap();
            assert!(page.count as usize >= statuses && page.rows.len() == 10);
        }
    })
    .await;
    println!("| {name} | `/statuses` first page, all {statuses} statuses, `count=estimate` | p50 {} | p99 {} |", ms(p50), ms(p99));
}

/// Whether `TRACKER_BENCH_ONLY` (engines separated by commas: `sqlite`, `postgres`) names the
/// engine; without it, every engine is measured.
fn wanted(engine: &str) -> bool {
    std::env::var("TRACKER_BENCH_ONLY").map_or(true, |only| {
        only.split(',')
            .any(|e| e.trim().eq_ignore_ascii_case(engine))
    })
}

#[tokio::main]
async fn main() {
    let rows = rows();
    println!("| engine | measure | result | rate / p99 |\n|---|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    if wanted("sqlite") {
        bench(
            "SQLite",
            Arc::new(SqliteStore::open(&url).await.unwrap()),
            rows,
        )
        .await;
    }
    match std::env::var("INTAKE_TEST_POSTGRES_URL") {
        _ if !wanted("postgres") => {}
        Ok(admin) if !admin.is_empty() => {
            let durability = support::durability(&admin).await;
            let url = support::fresh_postgres(&admin).await;
            bench(
                &format!("PostgreSQL ({durability})"),
                Arc::new(PostgresStore::open(&url).await.unwrap()),
                rows,
            )
            .await;
        }
        _ => eprintln!("INTAKE_TEST_POSTGRES_URL is not set: PostgreSQL not measured"),
    }
}
