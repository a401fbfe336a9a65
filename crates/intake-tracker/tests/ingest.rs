//! Ingestion through a real (embedded) bus: dead letters with their reason, duplicates stored once,
//! replay after a crash between the database commit and the offset commit, a batch stored in
//! parts (retried whole when one fails; its offset committed once all are stored), a refused row
//! isolated, and a database outage pausing consumption without loss (the lag gauge showing what waits).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::Harness;
use intake_bus::{Bus, OutgoingMessage, ReceivedMessage, StartFrom, Subscription};
use intake_testkit::poll::until_true;
use intake_tracker::ingest::{self, IngestSettings, Ingestor};
use intake_tracker::store::faults::FaultyStore;
use intake_tracker::store::testsuite::status_query;
use intake_tracker::StatusStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn topic(h: &Harness) -> String {
    h.bus_config.topic(&h.bus_config.topics.payload_status)
}

fn dlq_topic(h: &Harness) -> String {
    h.bus_config.topic(&h.bus_config.topics.payload_status_dlq)
}

fn ingestor(h: &Harness, store: Arc<dyn StatusStore>) -> Ingestor {
    ingestor_in_parts(h, store, 100, 1)
}

/// An ingestor that stores a batch of more than `batch_size` statuses in up to `writers`
/// transactions at once.
fn ingestor_in_parts(
    h: &Harness,
    store: Arc<dyn StatusStore>,
    batch_size: usize,
    writers: usize,
) -> Ingestor {
    Ingestor::new(
        store,
        h.bus.clone(),
        h.metrics.clone(),
        IngestSettings {
            dlq_topic: dlq_topic(h),
            batch_size,
            batch_max: 100,
            writers,
            batch_wait: Duration::from_millis(20),
            retention: Duration::from_secs(7 * 86_400),
            future_skew: Duration::from_secs(86_400),
        },
    )
}

/// What a crashed tracker had read: up to `size` messages, those that came within `wait` of the first.
async fn read_batch(
    consumer: &mut dyn intake_bus::Consumer,
    size: usize,
    wait: Duration,
) -> Result<Vec<ReceivedMessage>, intake_bus::BusError> {
    let mut batch = vec![consumer.next().await?];
    while batch.len() < size {
        match tokio::time::timeout(wait, consumer.next()).await {
            Ok(message) => batch.push(message?),
            Err(_) => break,
        }
    }
    Ok(batch)
}

fn good(request_id: &str, status: &str) -> String {
    json!({"service": "ingress", "request_id": request_id, "status": status, "org_id": "54321",
           "date": intake_core::time::format(Utc::now())})
    .to_string()
}

async fn publish(h: &Harness, key: &str, value: &str) {
    h.bus
        .publish(
            OutgoingMessage::new(topic(h), value.as_bytes().to_vec())
                .key(key.as_bytes().to_vec())
                .header("origin", "test"),
        )
        .await
        .unwrap();
}

async fn subscribe(
    bus: &Arc<dyn Bus>,
    group: &str,
    topic: String,
) -> Box<dyn intake_bus::Consumer> {
    bus.subscribe(Subscription {
        group: group.into(),
        topics: vec![topic],
        start: StartFrom::Earliest,
    })
    .await
    .unwrap()
}

/// Reads `n` dead letters.
async fn dead_letters(h: &Harness, n: usize) -> Vec<ReceivedMessage> {
    let mut consumer = subscribe(&h.bus, "dlq-reader", dlq_topic(h)).await;
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a dead letter in time")
            .unwrap();
        out.push(m);
    }
    out
}

async fn stored(store: &dyn StatusStore) -> i64 {
    store.list_statuses(&status_query()).await.unwrap().count
}

#[tokio::test]
async fn every_bad_message_is_dead_lettered_with_its_reason() {
    let h = Harness::new().await;
    let old = intake_core::time::format(Utc::now() - chrono::Duration::days(30));
    let now = intake_core::time::format(Utc::now());
    let cases = [
        ("invalid_json", "{nope".to_string()),
        ("not_an_object", "[1]".to_string()),
        (
            "missing_field",
            json!({"service": "a", "request_id": "r1", "status": "s"}).to_string(),
        ),
        (
            "bad_field_type",
            json!({"service": "a", "request_id": "r1", "status": "s", "date": now, "org_id": [1]})
                .to_string(),
        ),
        (
            "bad_request_id",
            json!({"service": "a", "request_id": "r 1", "status": "s", "date": now}).to_string(),
        ),
        (
            "bad_date",
            json!({"service": "a", "request_id": "r1", "status": "s", "date": "tomorrow"})
                .to_string(),
        ),
        (
            "date_out_of_range",
            json!({"service": "a", "request_id": "r1", "status": "s", "date": old}).to_string(),
        ),
        (
            "field_too_long",
            json!({"service": "a".repeat(129), "request_id": "r1", "status": "s", "date": now})
                .to_string(),
        ),
    ];
    for (i, (_, value)) in cases.iter().enumerate() {
        publish(&h, &format!("key-{i}"), value).await;
        if i == 3 {
            publish(&h, "good", &good("good-1", "received")).await;
        }
    }
    let cancel = CancellationToken::new();
    let consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    let task = tokio::spawn(ingest::run_loop(
        ingestor(&h, h.store.clone()),
        consumer,
        cancel.clone(),
    ));
    let letters = dead_letters(&h, cases.len()).await;
    for (i, (reason, value)) in cases.iter().enumerate() {
        let m = &letters[i];
        assert_eq!(m.header_str("dlq_reason"), Some(*reason));
        assert_eq!(m.value, value.as_bytes(), "the value is kept byte for byte");
        assert_eq!(m.key_str(), Some(format!("key-{i}").as_str()));
        assert_eq!(
            m.header_str("origin"),
            Some("test"),
            "original headers are kept"
        );
        assert_eq!(m.header_str("dlq_source_topic"), Some(topic(&h).as_str()));
        assert!(m
            .header_str("dlq_source_offset")
            .unwrap()
            .parse::<i64>()
            .is_ok());
        assert!(m.header_str("dlq_source_partition").is_some());
        assert!(!m.header_str("dlq_detail").unwrap().is_empty());
        assert!(intake_core::time::parse_rfc3339(m.header_str("dlq_time").unwrap()).is_some());
    }
    assert_eq!(
        letters[2].header_str("dlq_detail"),
        Some("missing field \"date\"")
    );
    until_true(WAIT, "the good status stored", || async {
        stored(h.store.as_ref()).await == 1
    })
    .await;
    until_true(WAIT, "the dead letters counted", || async {
        h.metrics.messages.with_label_values(&["dead_letter"]).get() == 8
    })
    .await;
    assert_eq!(
        h.metrics
            .dead_letters
            .with_label_values(&["bad_date"])
            .get(),
        1
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
    // Offsets were committed: the group sees nothing more.
    let mut again = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), again.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_repeated_message_is_stored_once() {
    let h = Harness::new().await;
    let value = good("dup-1", "received");
    publish(&h, "dup-1", &value).await;
    publish(&h, "dup-1", &value).await;
    let mut consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    let batch = read_batch(consumer.as_mut(), 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(batch.len(), 2);
    let report = ingestor(&h, h.store.clone()).process(&batch).await.unwrap();
    assert_eq!((report.stored, report.duplicates), (1, 1));
    assert_eq!(stored(h.store.as_ref()).await, 1);
    assert_eq!(
        h.metrics.messages.with_label_values(&["duplicate"]).get(),
        1
    );
}

#[tokio::test]
async fn a_crash_between_database_commit_and_offset_commit_replays_without_duplicates() {
    let h = Harness::new().await;
    for i in 0..5 {
        publish(&h, "k", &good(&format!("crash-{i}"), "received")).await;
    }
    let ingestor = ingestor(&h, h.store.clone());
    {
        let mut consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
        let batch = read_batch(consumer.as_mut(), 10, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(batch.len(), 5);
        assert_eq!(ingestor.process(&batch).await.unwrap().stored, 5);
        // The process dies here: the database committed, the offsets did not.
    }
    let mut consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    let batch = tokio::time::timeout(
        WAIT,
        read_batch(consumer.as_mut(), 10, Duration::from_millis(300)),
    )
    .await
    .expect("the batch delivered again")
    .unwrap();
    assert_eq!(batch.len(), 5, "every uncommitted message comes again");
    let report = ingestor.process(&batch).await.unwrap();
    assert_eq!((report.stored, report.duplicates), (0, 5));
    consumer.commit(batch.last().unwrap()).await.unwrap();
    assert_eq!(stored(h.store.as_ref()).await, 5);
}

/// A batch stored in two transactions at once, one of which fails after the other committed (an
/// outage, or a crash between them): the batch fails whole, nothing is committed on the bus, and the
/// retry stores the rest, finding the part already stored as duplicates.
#[tokio::test]
async fn a_batch_whose_part_fails_is_retried_whole_without_duplicates() {
    let h = Harness::new().await;
    let faulty = FaultyStore::new(h.store.clone());
    let faults = faulty.faults();
    faults.fail_writes_of("part-0", true);
    for i in 0..8 {
        publish(&h, "k", &good(&format!("part-{i}"), "received")).await;
    }
    let mut consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    let batch = read_batch(consumer.as_mut(), 10, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(batch.len(), 8);
    let ingestor = ingestor_in_parts(&h, Arc::new(faulty), 2, 2);
    let err = ingestor.process(&batch).await.unwrap_err();
    assert!(
        err.to_string().contains("injected outage for part-0"),
        "{err}"
    );
    let first = stored(h.store.as_ref()).await;
    assert!(
        (1..8).contains(&first),
        "the other part was stored in its own transaction: {first} of 8"
    );
    faults.fail_writes_of("part-0", false);
    let report = ingestor.process(&batch).await.unwrap();
    assert_eq!(
        (report.stored, report.duplicates),
        (8 - first as usize, first as usize)
    );
    assert_eq!(stored(h.store.as_ref()).await, 8);
}

/// A consumer that counts the messages it handed out and records, at each offset commit, how many
/// statuses the store holds.
struct RecordingConsumer {
    inner: Box<dyn intake_bus::Consumer>,
    store: Arc<dyn StatusStore>,
    read: Arc<std::sync::atomic::AtomicUsize>,
    commits: Arc<std::sync::Mutex<Vec<(i64, i64)>>>,
}

#[async_trait::async_trait]
impl intake_bus::Consumer for RecordingConsumer {
    async fn next(&mut self) -> Result<ReceivedMessage, intake_bus::BusError> {
        let message = self.inner.next().await?;
        self.read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(message)
    }

    async fn commit(&mut self, message: &ReceivedMessage) -> Result<(), intake_bus::BusError> {
        let held = stored(self.store.as_ref()).await;
        self.commits.lock().unwrap().push((message.offset, held));
        self.inner.commit(message).await
    }

    async fn lag(&mut self) -> Result<Vec<intake_bus::PartitionLag>, intake_bus::BusError> {
        self.inner.lag().await
    }
}

/// Parts of a batch finish in any order; its offset is committed only once every part is stored:
/// a part held back keeps the commit waiting while the other part is already in the database.
#[tokio::test]
async fn a_batch_in_parts_commits_its_offset_once_every_part_is_stored() {
    const N: i64 = 8;
    let h = Harness::new().await;
    let faulty = FaultyStore::new(h.store.clone());
    let faults = faulty.faults();
    // The first batch (offsets 0 and 1, TRACKER_BATCH_SIZE 2) waits until the rest is read, so the
    // second holds offsets 2 to 7, more than the batch size: two transactions at once.
    faults.hold("slow-0");
    for i in 0..N {
        publish(&h, "k", &good(&format!("slow-{i}"), "received")).await;
    }
    let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let commits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let consumer = RecordingConsumer {
        inner: subscribe(&h.bus, "payload_tracker", topic(&h)).await,
        store: h.store.clone(),
        read: read.clone(),
        commits: commits.clone(),
    };
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ingest::run_loop(
        ingestor_in_parts(&h, Arc::new(faulty), 2, 2),
        Box::new(consumer),
        cancel.clone(),
    ));
    until_true(WAIT, "every message read", || async {
        read.load(std::sync::atomic::Ordering::SeqCst) == N as usize
    })
    .await;
    faults.hold("slow-5");
    faults.release("slow-0");
    until_true(
        WAIT,
        "the second batch's part without slow-5 stored",
        || async { stored(h.store.as_ref()).await > 2 },
    )
    .await;
    assert!(stored(h.store.as_ref()).await < N, "slow-5 is held back");
    assert!(
        commits
            .lock()
            .unwrap()
            .iter()
            .all(|(offset, _)| *offset < 2),
        "no offset of the second batch committed while a part of it is not stored: {:?}",
        commits.lock().unwrap()
    );
    faults.release("slow-5");
    until_true(WAIT, "the last offset committed", || async {
        commits
            .lock()
            .unwrap()
            .last()
            .is_some_and(|(offset, _)| *offset == N - 1)
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(stored(h.store.as_ref()).await, N);
    for (offset, held) in commits.lock().unwrap().iter() {
        assert!(
            *held > *offset,
            "offset {offset} committed while the store held {held} statuses"
        );
    }
}

#[tokio::test]
async fn a_batch_with_one_refused_row_stores_the_rest() {
    let h = Harness::new().await;
    let faulty = FaultyStore::new(h.store.clone());
    faulty.faults().refuse_request_id("bad-2");
    for i in 0..5 {
        publish(&h, "k", &good(&format!("bad-{i}"), "received")).await;
    }
    let mut consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    let batch = read_batch(consumer.as_mut(), 10, Duration::from_millis(200))
        .await
        .unwrap();
    let report = ingestor(&h, Arc::new(faulty))
        .process(&batch)
        .await
        .unwrap();
    assert_eq!(report.stored, 4);
    assert_eq!(report.dead_letters, [(batch[2].offset, "store_rejected")]);
    assert_eq!(stored(h.store.as_ref()).await, 4);
    let letters = dead_letters(&h, 1).await;
    assert_eq!(letters[0].header_str("dlq_reason"), Some("store_rejected"));
    assert_eq!(letters[0].value, batch[2].value);
}

#[tokio::test]
async fn a_database_outage_pauses_consumption_without_loss() {
    let h = Harness::new().await;
    let faulty = FaultyStore::new(h.store.clone());
    let faults = faulty.faults();
    let faulty: Arc<dyn StatusStore> = Arc::new(faulty);
    faults.set_down(true);
    for i in 0..3 {
        publish(&h, "k", &good(&format!("out-{i}"), "received")).await;
    }
    let cancel = CancellationToken::new();
    let consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    let task = tokio::spawn(ingest::run_loop(
        ingestor(&h, faulty.clone()),
        consumer,
        cancel.clone(),
    ));
    until_true(WAIT, "a failed attempt", || async {
        faults.failed_calls() >= 1
    })
    .await;
    let (code, _) = common::get(&h.router_with(faulty.clone(), false), "/health", None).await;
    assert_eq!(code, 503);
    assert_eq!(stored(h.store.as_ref()).await, 0);
    let lag = || h.metrics.consumer_lag.with_label_values(&["0"]).get();
    assert_eq!(
        lag(),
        3,
        "the lag gauge counts what waits behind the outage"
    );
    let mut dlq = subscribe(&h.bus, "dlq-check", dlq_topic(&h)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), dlq.next())
            .await
            .is_err(),
        "nothing dead-lettered"
    );
    faults.set_down(false);
    until_true(WAIT, "the statuses stored after the outage", || async {
        stored(h.store.as_ref()).await == 3
    })
    .await;
    until_true(WAIT, "the lag gauge back to 0", || async { lag() == 0 }).await;
    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// The router with readiness tied to `writes`, as `intake tracker` wires it.
fn router_watching(
    h: &Harness,
    store: Arc<dyn StatusStore>,
    writes: ingest::WriteHealth,
) -> axum::Router {
    intake_tracker::router(
        intake_tracker::AppState::new(
            store,
            Some(h.bus.clone()),
            h.metrics.clone(),
            intake_tracker::ApiSettings::new(false, 50, 7),
        )
        .with_write_health(writes),
    )
}

/// The offset the group resumes from (`None`: nothing left to deliver), read by a new member.
async fn resumes_at(h: &Harness) -> Option<i64> {
    let mut consumer = subscribe(&h.bus, "payload_tracker", topic(h)).await;
    match tokio::time::timeout(Duration::from_secs(3), consumer.next()).await {
        Ok(message) => Some(message.unwrap().offset),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_store_that_cannot_write_is_not_ready_commits_nothing_and_loses_nothing() {
    const N: usize = 250;
    let h = Harness::new().await;
    let faulty = FaultyStore::new(h.store.clone());
    let faults = faulty.faults();
    let faulty: Arc<dyn StatusStore> = Arc::new(faulty);
    faults.set_write_error(Some(
        "error returned from database: (code: 13) database or disk is full",
    ));
    for i in 0..N {
        publish(&h, "k", &good(&format!("full-{i}"), "received")).await;
    }
    let cancel = CancellationToken::new();
    let ingestor = ingestor(&h, faulty.clone());
    let writes = ingestor.write_health();
    let router = router_watching(&h, faulty.clone(), writes.clone());
    let (code, _) = common::get(&router, "/readyz", None).await;
    assert_eq!(code, 200, "ready before the first failed write");
    let consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    let task = tokio::spawn(ingest::run_loop(ingestor.clone(), consumer, cancel.clone()));
    until_true(WAIT, "two failed writes", || async {
        faults.failed_calls() >= 2
    })
    .await;
    for path in ["/readyz", "/health", "/api/v1/readyz", "/v1/health"] {
        let (code, body) = common::get(&router, path, None).await;
        assert_eq!(code, 503, "{path}: {body}");
        let database = body["checks"]["database"].as_str().unwrap_or_default();
        assert!(
            database.contains("database or disk is full"),
            "{path} names the cause: {body}"
        );
    }
    assert_eq!(stored(h.store.as_ref()).await, 0);
    // A restart while the store still fails: nothing was committed, so everything comes again.
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        resumes_at(&h).await,
        Some(0),
        "no offset committed while writes fail"
    );
    let cancel = CancellationToken::new();
    let consumer = subscribe(&h.bus, "payload_tracker", topic(&h)).await;
    let task = tokio::spawn(ingest::run_loop(ingestor, consumer, cancel.clone()));
    until_true(WAIT, "another failed write", || async {
        faults.failed_calls() >= 3
    })
    .await;
    let mut dlq = subscribe(&h.bus, "dlq-check", dlq_topic(&h)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), dlq.next())
            .await
            .is_err(),
        "nothing dead-lettered"
    );
    faults.set_write_error(None);
    until_true(WAIT, "every status stored once writes succeed", || async {
        stored(h.store.as_ref()).await == N as i64
    })
    .await;
    until_true(WAIT, "ready again", || async {
        common::get(&router, "/readyz", None).await.0 == 200
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(resumes_at(&h).await, None, "every offset committed");
    let stored = stored(h.store.as_ref()).await;
    println!(
        "published {N}, stored {stored}, lost = {}",
        N as i64 - stored
    );
    assert_eq!(stored, N as i64);
}
