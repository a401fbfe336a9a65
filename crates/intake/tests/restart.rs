//! Black-box: `intake ingress` alone (no validator), killed with SIGKILL between the steps of a
//! payload's journey and started again on the same data directory (messages.md, "How ingress
//! processes a response": a crash at any step replays safely). The test plays the validator by
//! publishing responses on the embedded bus opened on the same directory, as a second process would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use intake_bus::{Bus, OutgoingMessage};
use intake_core::config::{BusConfig, EnvMap, StorageConfig};
use intake_core::{Identity, RequestId};
use intake_storage::Bucket;
use intake_testkit::poll;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const SIGNING_KEY: &str = "restart-test-key";
const TGZ: &str = "application/vnd.redhat.testareno.something+tgz";
const VALIDATION: &str = "platform.upload.validation";
const AVAILABLE: &str = "platform.upload.available";
const STATUS: &str = "platform.payload-status";
const VALIDATION_DLQ: &str = "platform.upload.validation.dlq";
/// One `intake ingress` process; killed (SIGKILL) when dropped.
struct Ingress {
    child: Child,
    base: String,
    /// What it has written to stderr so far (also passed on to the test's stderr).
    log: Arc<Mutex<String>>,
}

impl Ingress {
    fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().contains(text)
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        // `Child::kill` is SIGKILL: no draining, no last commit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn bucket_dir(dir: &Path, bucket: &str) -> PathBuf {
    data_dir(dir).join("storage").join(bucket)
}

fn has(dir: &Path, bucket: &str, key: &str) -> bool {
    bucket_dir(dir, bucket).join(key).exists()
}

/// Starts `intake ingress` on `dir` and waits until it is ready.
async fn start(dir: &Path) -> Ingress {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("ingress")
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", data_dir(dir))
        .env("INGRESS_LISTEN", format!("127.0.0.1:{port}"))
        .env("INGRESS_PUBLIC_URL", &base)
        .env("STORAGE_URL_SIGNING_KEY", SIGNING_KEY)
        .env("LOG_LEVEL", "warn")
        // A killed member's topics go to the next one after this (default 10 s).
        .env("BUS_LEASE_EXPIRY", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let ingress = Ingress { child, base, log };
    let client = reqwest::Client::new();
    poll::until_true(
        Duration::from_secs(60),
        "intake ingress to become ready",
        || async {
            matches!(
                client.get(format!("{}/readyz", ingress.base)).send().await,
                Ok(r) if r.status() == 200
            )
        },
    )
    .await;
    ingress
}

async fn upload(ingress: &Ingress, request_id: &str, bytes: &[u8]) {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec())
        .file_name("archive.tar.gz")
        .mime_str(TGZ)
        .unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/api/ingress/v1/upload", ingress.base))
        .header("x-rh-identity", Identity::encode("12345", "54321"))
        .header("x-rh-insights-request-id", request_id)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
}

/// The embedded bus in `dir`, opened by this (second) process.
async fn bus(dir: &Path) -> Arc<dyn Bus> {
    let config = BusConfig::from_env(&EnvMap::new(), &data_dir(dir)).unwrap();
    intake_bus::open(&config).await.unwrap()
}

async fn respond(bus: &dyn Bus, request_id: &str, validation: &str) -> Vec<u8> {
    let value = json!({"request_id": request_id, "service": "testareno", "validation": validation})
        .to_string()
        .into_bytes();
    bus.publish(OutgoingMessage::new(VALIDATION, value.clone()).key(request_id))
        .await
        .unwrap();
    value
}

/// The JSON values on `topic` whose `request_id` is `request_id`.
async fn values_for(bus: &dyn Bus, topic: &str, request_id: &str) -> Vec<Value> {
    intake_bus::testsuite::read_to_end(bus, topic)
        .await
        .iter()
        .filter_map(|m| serde_json::from_slice::<Value>(&m.value).ok())
        .filter(|v| v["request_id"] == request_id)
        .collect()
}

/// Statuses with status `status` about `request_id`.
async fn statuses(bus: &dyn Bus, request_id: &str, status: &str) -> usize {
    values_for(bus, STATUS, request_id)
        .await
        .iter()
        .filter(|v| v["status"] == status)
        .count()
}

fn archive() -> Vec<u8> {
    intake_testkit::archives::gzip(&intake_testkit::archives::sample_tar())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_sent_while_ingress_is_down_is_applied_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let bytes = archive();

    let first = start(dir).await;
    upload(&first, "restart-1", &bytes).await;
    assert!(has(dir, "insights-upload-quarantine", "restart-1"));
    drop(first); // SIGKILL

    // The validator answers while ingress is down.
    let bus = bus(dir).await;
    assert_eq!(
        values_for(bus.as_ref(), "platform.upload.testareno", "restart-1")
            .await
            .len(),
        1,
        "announced once before the kill"
    );
    respond(bus.as_ref(), "restart-1", "success").await;

    let second = start(dir).await;
    poll::until_true(
        Duration::from_secs(60),
        "the payload to leave quarantine",
        || async { !has(dir, "insights-upload-quarantine", "restart-1") },
    )
    .await;
    assert_eq!(
        std::fs::read(bucket_dir(dir, "insights-upload-perm-test").join("restart-1")).unwrap(),
        bytes
    );
    let available = values_for(bus.as_ref(), AVAILABLE, "restart-1").await;
    assert_eq!(available.len(), 1, "{available:?}");

    // The available URL is served by the restarted process, with the payload's bytes.
    let url = available[0]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/download/restart-1?", second.base)));
    let download = reqwest::get(url).await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());

    poll::until_true(Duration::from_secs(30), "the success status", || async {
        statuses(bus.as_ref(), "restart-1", "success").await == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_between_the_steps_of_a_verdict_replay_without_doing_anything_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bytes = archive();

    let first = start(dir).await;
    upload(&first, "restart-2", &bytes).await;
    drop(first); // SIGKILL

    // Killed after step 1 of a success: the copy to perm was made, nothing was announced. (Done
    // here by hand on the stopped process's storage, the same operation ingress runs.)
    let env: EnvMap = [("STORAGE_URL_SIGNING_KEY".to_owned(), SIGNING_KEY.to_owned())].into();
    let storage_config = StorageConfig::from_env(&env, &data_dir(dir)).unwrap();
    let storage = intake_storage::open(&storage_config, "http://unused")
        .await
        .unwrap();
    storage
        .store
        .copy(
            Bucket::Quarantine,
            Bucket::Perm,
            &RequestId::parse("restart-2").unwrap(),
        )
        .await
        .unwrap();
    drop(storage);
    let bus = bus(dir).await;
    let response = respond(bus.as_ref(), "restart-2", "success").await;

    // The restart runs the remaining steps: announce, delete from quarantine, status.
    let second = start(dir).await;
    poll::until_true(
        Duration::from_secs(60),
        "the interrupted move to finish",
        || async { !has(dir, "insights-upload-quarantine", "restart-2") },
    )
    .await;
    poll::until_true(Duration::from_secs(30), "the success status", || async {
        statuses(bus.as_ref(), "restart-2", "success").await == 1
    })
    .await;
    assert_eq!(
        values_for(bus.as_ref(), AVAILABLE, "restart-2").await.len(),
        1
    );

    // Killed right after the verdict was fully applied, whether or not its offset was committed;
    // the bus then delivers the same response again (here: published again, byte for byte).
    drop(second); // SIGKILL
    bus.publish(OutgoingMessage::new(VALIDATION, response).key("restart-2"))
        .await
        .unwrap();
    // Responses are handled in order: once this later one is dead-lettered, the replay is done.
    respond(bus.as_ref(), "restart-marker", "success").await;
    let _third = start(dir).await;
    poll::until_true(
        Duration::from_secs(60),
        "the marker response to be dead-lettered",
        || async {
            !values_for(bus.as_ref(), VALIDATION_DLQ, "restart-marker")
                .await
                .is_empty()
        },
    )
    .await;

    // Nothing happened twice: one available message, one success, the payload in perm only, and
    // the replay was not dead-lettered.
    assert_eq!(
        values_for(bus.as_ref(), AVAILABLE, "restart-2").await.len(),
        1
    );
    assert_eq!(statuses(bus.as_ref(), "restart-2", "success").await, 1);
    assert!(values_for(bus.as_ref(), VALIDATION_DLQ, "restart-2")
        .await
        .is_empty());
    assert!(!has(dir, "insights-upload-quarantine", "restart-2"));
    assert!(!has(dir, "insights-upload-rejected", "restart-2"));
    assert_eq!(
        std::fs::read(bucket_dir(dir, "insights-upload-perm-test").join("restart-2")).unwrap(),
        bytes
    );
}

fn tmp_files(dir: &Path) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(bucket_dir(dir, "insights-upload-quarantine").join(".tmp"))
        .map(|d| d.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_during_an_upload_leaves_nothing_and_the_id_free() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Larger than what localdisk gathers in memory before writing (256 KiB), so that half of it
    // is already in a file under `.tmp/` when the process is killed.
    let mut bytes = archive();
    bytes.extend((0..1_048_576u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));

    // A client that sends half of its file part, then waits.
    let first = start(dir).await;
    let boundary = "XyZboundary";
    let part_head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\nContent-Type: {TGZ}\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let addr = first.base.strip_prefix("http://").unwrap().to_owned();
    let head = format!(
        "POST /api/ingress/v1/upload HTTP/1.1\r\nHost: {addr}\r\nx-rh-identity: {}\r\n\
         x-rh-insights-request-id: restart-3\r\ncontent-type: multipart/form-data; boundary={boundary}\r\n\
         content-length: {}\r\n\r\n",
        Identity::encode("12345", "54321"),
        part_head.len() + bytes.len() + tail.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(part_head.as_bytes()).await.unwrap();
    stream.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    poll::until_true(
        Duration::from_secs(30),
        "the upload to be written into quarantine",
        || async { !tmp_files(dir).is_empty() },
    )
    .await;
    drop(first); // SIGKILL in the middle of the write
    drop(stream);
    assert!(
        !tmp_files(dir).is_empty(),
        "the killed process could not clean up"
    );
    assert!(!has(dir, "insights-upload-quarantine", "restart-3"));

    // Start-up empties the writes in progress; the id is free and the upload goes through once.
    let second = start(dir).await;
    let left: Vec<_> = tmp_files(dir).iter().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
    upload(&second, "restart-3", &bytes).await;
    assert_eq!(
        std::fs::read(bucket_dir(dir, "insights-upload-quarantine").join("restart-3")).unwrap(),
        bytes
    );
    let bus = bus(dir).await;
    let announces = values_for(bus.as_ref(), "platform.upload.testareno", "restart-3").await;
    assert_eq!(announces.len(), 1, "{announces:?}");
    assert_eq!(announces[0]["size"], bytes.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_consumed_but_not_committed_when_killed_is_applied_once_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bytes = archive();

    let first = start(dir).await;
    upload(&first, "restart-4", &bytes).await;
    // Perm goes away: the response is consumed, its first step fails, and the consumer waits for
    // storage with the offset uncommitted.
    let perm = bucket_dir(dir, "insights-upload-perm-test");
    let moved = data_dir(dir).join("perm-elsewhere");
    std::fs::rename(&perm, &moved).unwrap();
    let bus = bus(dir).await;
    respond(bus.as_ref(), "restart-4", "success").await;
    poll::until_true(
        Duration::from_secs(30),
        "the consumer to hold the response while storage is down",
        || async { first.logged("validation processing paused") },
    )
    .await;
    drop(first); // SIGKILL with the response consumed but not committed
    let killed = std::time::Instant::now();
    std::fs::rename(&moved, &perm).unwrap();
    assert!(has(dir, "insights-upload-quarantine", "restart-4"));

    // The restarted process receives it again and applies it once.
    let _second = start(dir).await;
    poll::until_true(
        Duration::from_secs(60),
        "the payload to leave quarantine",
        || async { !has(dir, "insights-upload-quarantine", "restart-4") },
    )
    .await;
    // The killed member's lease lapsed after BUS_LEASE_EXPIRY (2 s), not the default 10 s.
    assert!(
        killed.elapsed() < Duration::from_secs(9),
        "the restarted ingress took {:?} to take the topic over",
        killed.elapsed()
    );
    assert_eq!(std::fs::read(perm.join("restart-4")).unwrap(), bytes);
    assert_eq!(
        values_for(bus.as_ref(), AVAILABLE, "restart-4").await.len(),
        1
    );
    poll::until_true(Duration::from_secs(30), "the success status", || async {
        statuses(bus.as_ref(), "restart-4", "success").await == 1
    })
    .await;
    assert!(values_for(bus.as_ref(), VALIDATION_DLQ, "restart-4")
        .await
        .is_empty());
}
