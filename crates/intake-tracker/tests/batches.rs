//! Batch sizes that follow the backlog: a backlog is stored in batches up to `batch_max`, larger than
//! `TRACKER_BATCH_SIZE`; a lone status is still stored within `batch_wait`, in a batch of its own.

use crate::common;

use std::time::{Duration, Instant};

use common::Harness;
use intake_bus::{OutgoingMessage, StartFrom, Subscription};
use intake_testkit::poll::until_true;
use intake_tracker::ingest::{self, IngestSettings, Ingestor, DEFAULT_BATCH_MAX};
use intake_tracker::store::testsuite::status_query;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn settings(h: &Harness, batch_size: usize, batch_max: usize) -> IngestSettings {
    IngestSettings {
        dlq_topic: h.bus_config.topic(&h.bus_config.topics.payload_status_dlq),
        batch_size,
        batch_max,
        writers: 1,
        batch_wait: Duration::from_millis(50),
        retention: Duration::from_secs(7 * 86_400),
        future_skew: Duration::from_secs(86_400),
    }
}

fn status(h: &Harness, request_id: &str) -> OutgoingMessage {
    let value = json!({"service": "ingress", "request_id": request_id, "status": "received",
        "org_id": "54321", "date": intake_core::time::now_string()});
    OutgoingMessage::new(
        h.bus_config.topic(&h.bus_config.topics.payload_status),
        value.to_string().into_bytes(),
    )
}

type StartedLoop = tokio::task::JoinHandle<Result<(), intake_bus::runtime::RuntimeError>>;

async fn start(h: &Harness, settings: IngestSettings, cancel: &CancellationToken) -> StartedLoop {
    let consumer = h
        .bus
        .subscribe(Subscription {
            group: "payload_tracker".into(),
            topics: vec![h.bus_config.topic(&h.bus_config.topics.payload_status)],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let ingestor = Ingestor::new(h.store.clone(), h.bus.clone(), h.metrics.clone(), settings);
    tokio::spawn(ingest::run_loop(ingestor, consumer, cancel.clone()))
}

async fn stored(h: &Harness) -> i64 {
    h.store.list_statuses(&status_query()).await.unwrap().count
}

#[tokio::test]
async fn a_backlog_is_stored_in_batches_larger_than_the_batch_size() {
    let h = Harness::new().await;
    const BACKLOG: usize = 2_000;
    for i in 0..BACKLOG {
        h.bus
            .publish(status(&h, &format!("backlog-{i}")))
            .await
            .unwrap();
    }
    let cancel = CancellationToken::new();
    let task = start(&h, settings(&h, 50, 500), &cancel).await;
    until_true(WAIT, "the backlog stored", || async {
        stored(&h).await == BACKLOG as i64
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    let batches = h.metrics.batch_size.get_sample_count();
    let statuses = h.metrics.batch_size.get_sample_sum();
    assert_eq!(statuses as usize, BACKLOG);
    // Batches of 50 would take 40; a backlog fills each batch while the one before is stored.
    assert!(
        batches <= 10,
        "{batches} batches for {BACKLOG} statuses: batches of {:.0} on average",
        statuses / batches as f64
    );
}

#[tokio::test]
async fn a_lone_status_is_stored_within_the_batch_wait_when_large_batches_are_allowed() {
    let h = Harness::new().await;
    let cancel = CancellationToken::new();
    let task = start(&h, settings(&h, 500, DEFAULT_BATCH_MAX), &cancel).await;
    // Caught up first: the consumer has joined and found nothing to read.
    h.bus.publish(status(&h, "first")).await.unwrap();
    until_true(WAIT, "the first status stored", || async {
        stored(&h).await == 1
    })
    .await;
    let published = Instant::now();
    h.bus.publish(status(&h, "lone")).await.unwrap();
    until_true(WAIT, "the lone status stored", || async {
        stored(&h).await == 2
    })
    .await;
    let took = published.elapsed();
    cancel.cancel();
    task.await.unwrap().unwrap();
    // It waited for the batch wait (50 ms) and its transaction, not for a batch to fill; the
    // bound leaves room for a loaded two-core host.
    assert!(
        took < Duration::from_secs(2),
        "stored {took:?} after it was published"
    );
    assert_eq!(
        (
            h.metrics.batch_size.get_sample_count(),
            h.metrics.batch_size.get_sample_sum() as usize
        ),
        (2, 2),
        "each status in a batch of its own"
    );
}
