//! A real full disk under the SQLite store (a small tmpfs, mounted when the test may mount one):
//! the tracker turns not-ready naming the cause, stores and commits nothing, dead-letters nothing,
//! and once space is freed stores every status, durably (a separate connection pool sees them all).

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::Harness;
use intake_bus::{OutgoingMessage, StartFrom, Subscription};
use intake_testkit::poll::until_true;
use intake_tracker::ingest::{self, IngestSettings, Ingestor};
use intake_tracker::store::sqlite::SqliteStore;
use intake_tracker::store::testsuite::status_query;
use intake_tracker::StatusStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` with a filler file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

fn status(i: usize) -> String {
    json!({"service": "ingress", "request_id": format!("disk-{i}"), "status": "received",
           "org_id": "54321", "status_msg": "x".repeat(2000),
           "date": intake_core::time::format(Utc::now())})
    .to_string()
}

async fn count(store: &dyn StatusStore) -> i64 {
    store.list_statuses(&status_query()).await.unwrap().count
}

#[tokio::test]
async fn a_full_disk_pauses_ingest_until_space_returns_and_loses_nothing() {
    const N: usize = 400;
    let Some(tmpfs) = Tmpfs::mount("4m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let h = Harness::new().await;
    let url = format!("sqlite://{}", tmpfs.path().join("tracker.db").display());
    let store: Arc<dyn StatusStore> = Arc::new(SqliteStore::open(&url).await.unwrap());
    let topic = h.bus_config.topic(&h.bus_config.topics.payload_status);
    let dlq_topic = h.bus_config.topic(&h.bus_config.topics.payload_status_dlq);
    for i in 0..N {
        h.bus
            .publish(OutgoingMessage::new(topic.clone(), status(i).into_bytes()).key(b"k".to_vec()))
            .await
            .unwrap();
    }
    let filler = fill(tmpfs.path());
    let ingestor = Ingestor::new(
        store.clone(),
        h.bus.clone(),
        h.metrics.clone(),
        IngestSettings {
            dlq_topic: dlq_topic.clone(),
            batch_size: 100,
            batch_max: 100,
            writers: 1,
            batch_wait: Duration::from_millis(20),
            retention: Duration::from_secs(7 * 86_400),
            future_skew: Duration::from_secs(86_400),
        },
    );
    let writes = ingestor.write_health();
    let router = intake_tracker::router(
        intake_tracker::AppState::new(
            store.clone(),
            Some(h.bus.clone()),
            h.metrics.clone(),
            intake_tracker::ApiSettings::new(false, 50, 7),
        )
        .with_write_health(writes.clone()),
    );
    let subscription = Subscription {
        group: "payload_tracker".into(),
        topics: vec![topic.clone()],
        start: StartFrom::Earliest,
    };
    let consumer = h.bus.subscribe(subscription.clone()).await.unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ingest::run_loop(ingestor, consumer, cancel.clone()));
    until_true(WAIT, "a failed write", || async {
        writes.failing().is_some()
    })
    .await;
    let (code, body) = common::get(&router, "/readyz", None).await;
    assert_eq!(code, 503, "{body}");
    let cause = body["checks"]["database"].as_str().unwrap_or_default();
    assert!(cause.contains("full"), "the cause is named: {body}");
    // Several retries against the full disk, each of which must leave its connection clean.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        writes.failing().is_some(),
        "still failing while the disk is full"
    );
    let stored_while_full = count(store.as_ref()).await;
    assert!(
        stored_while_full < N as i64,
        "the disk was too small for every status ({stored_while_full} stored)"
    );
    std::fs::remove_file(&filler).unwrap();
    until_true(WAIT, "every status stored once space returns", || async {
        count(store.as_ref()).await == N as i64
    })
    .await;
    until_true(WAIT, "ready again", || async {
        common::get(&router, "/readyz", None).await.0 == 200
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    // Durable, not just visible to one connection: a separate pool sees every status.
    let other = SqliteStore::open(&url).await.unwrap();
    let stored = count(&other).await;
    let mut dlq = h
        .bus
        .subscribe(Subscription {
            group: "dlq-check".into(),
            topics: vec![dlq_topic],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let dead_letters = tokio::time::timeout(Duration::from_millis(500), dlq.next())
        .await
        .is_ok();
    let mut again = h.bus.subscribe(subscription).await.unwrap();
    let redelivered = tokio::time::timeout(Duration::from_secs(3), again.next())
        .await
        .is_ok();
    println!(
        "published {N}, stored {stored} ({stored_while_full} while the disk was full), lost = {}",
        N as i64 - stored
    );
    assert_eq!(stored, N as i64);
    assert!(!dead_letters, "nothing dead-lettered");
    assert!(!redelivered, "every offset committed after the store");
}
