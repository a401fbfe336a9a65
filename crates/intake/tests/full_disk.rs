//! Black-box: `intake serve` with its whole data directory (payload storage, embedded bus, tracker
//! database) on a small tmpfs that the test fills. Uploads of 1 MiB archives over a few connections
//! go on until the disk refuses them: every answer is 202, or 503/507 with `Retry-After` and the JSON
//! error body, never a 202 for something that was not kept. No stored object is ever partial and no
//! refused id is kept or tracked. Once the ballast is deleted, uploads are accepted again, and every
//! request id answered 202 ends in perm with the bytes that were sent: lost = 0, printed.
//!
//! Mounting a tmpfs needs root; where the test cannot, it says so and checks the same answers with
//! the store failing with ENOSPC under ingress (`intake-ingress`'s `full_disk` test).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::serve::{ready, start_with};
use common::upload::{post, sha256, IDENTITY};
use intake_testkit::poll;
use serde_json::Value;

const TMPFS_SIZE: &str = "48m";
/// Free space left beside the ballast: room for a dozen uploads and the databases' growth.
const LEFT_FREE: u64 = 16 * 1024 * 1024;
const PAYLOAD_BYTES: usize = 1024 * 1024;
const CONNECTIONS: usize = 4;
/// Uploads stop once this many were refused (the disk is full) or after `MAX_UPLOADS` in all.
const REFUSALS_WANTED: usize = 12;
const MAX_UPLOADS: usize = 160;
/// Uploads after space returns; each must be accepted.
const AFTER_RECOVERY: usize = 5;
const PERM: &str = "insights-upload-perm-test";
const QUARANTINE: &str = "insights-upload-quarantine-test";
const REJECT: &str = "insights-upload-rejected-test";

/// A tmpfs of `size` on a fresh directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        mounted.then_some(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// Fills the file system with one file, then gives `LEFT_FREE` bytes of it back.
fn ballast(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let len = file.metadata().unwrap().len();
    assert!(
        len > LEFT_FREE,
        "the tmpfs holds more than {LEFT_FREE} bytes"
    );
    file.set_len(len - LEFT_FREE).unwrap();
    file.sync_all().unwrap();
    path
}

/// A valid archive of about `PAYLOAD_BYTES` that does not compress (xorshift bytes from `seed`).
fn big_archive(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut noise = Vec::with_capacity(PAYLOAD_BYTES);
    while noise.len() < PAYLOAD_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let tar = intake_testkit::archives::TarBuilder::new()
        .dir("insights-web01")
        .file("insights-web01/data/hostname", b"web01\n")
        .file("insights-web01/data/noise", &noise)
        .finish();
    intake_testkit::archives::gzip(&tar)
}

/// Keys in one bucket folder (data files only) and whether anything is left in its `.tmp/`.
fn keys(data: &Path, bucket: &str) -> BTreeSet<String> {
    match std::fs::read_dir(data.join("storage").join(bucket)) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".tmp" && !n.ends_with(".meta.json"))
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn tmp_leftovers(data: &Path, bucket: &str) -> Vec<String> {
    match std::fs::read_dir(data.join("storage").join(bucket).join(".tmp")) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every stored object is whole: it was accepted, its sidecar exists and agrees with its bytes, and
/// those are the bytes that were sent.
fn check_whole(data: &Path, accepted: &BTreeMap<String, String>) {
    for bucket in [QUARANTINE, PERM, REJECT] {
        let dir = data.join("storage").join(bucket);
        for key in keys(data, bucket) {
            let sent = accepted
                .get(&key)
                .unwrap_or_else(|| panic!("{bucket}/{key} is stored but was never answered 202"));
            // The validator moves objects on meanwhile: one that vanished between the listing
            // and the read was moved or deleted whole, and is checked where it went.
            let Ok(bytes) = std::fs::read(dir.join(&key)) else {
                continue;
            };
            assert_eq!(&sha256(&bytes), sent, "{bucket}/{key} holds other bytes");
            let sidecar = match std::fs::read(dir.join(format!("{key}.meta.json"))) {
                Ok(sidecar) => sidecar,
                Err(_) if !dir.join(&key).exists() => continue,
                Err(e) => panic!("{bucket}/{key} has no sidecar: {e}"),
            };
            let sidecar: Value = serde_json::from_slice(&sidecar).unwrap();
            assert_eq!(
                sidecar["size"].as_str(),
                Some(bytes.len().to_string().as_str()),
                "{bucket}/{key}'s sidecar: {sidecar}"
            );
            assert_eq!(
                sidecar["sha256"].as_str(),
                Some(sent.as_str()),
                "{bucket}/{key}'s sidecar: {sidecar}"
            );
        }
    }
}

/// Rows the tracker holds for `id`.
async fn tracked(client: &reqwest::Client, tracker: &str, id: &str) -> usize {
    let Ok(answer) = client
        .get(format!("{tracker}/api/v1/payloads/{id}"))
        .header("x-rh-identity", IDENTITY)
        .send()
        .await
    else {
        return 0;
    };
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    body["data"].as_array().map_or(0, Vec::len)
}

#[derive(Default)]
struct Tally {
    /// Request id → sha256 of the archive, for every 202.
    accepted: BTreeMap<String, String>,
    refused: BTreeSet<String>,
    /// Answers that are neither: (id, status, detail).
    wrong: Vec<(String, u16, String)>,
}

/// One upload; its answer goes into `tally`. Returns whether it was accepted.
async fn upload(client: &reqwest::Client, base: &str, id: &str, tally: &Mutex<Tally>) -> bool {
    let seed = id.bytes().fold(7u64, |h, b| h.wrapping_mul(31) ^ b as u64);
    let archive = big_archive(seed);
    let sum = sha256(&archive);
    let (code, retry_after, body) = match post(client, base, id, archive).await {
        Ok(answer) => {
            let code = answer.status().as_u16();
            let retry_after = answer
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            (code, retry_after, body)
        }
        Err(e) => (0, None, Value::String(e.to_string())),
    };
    let mut tally = tally.lock().unwrap();
    match code {
        202 => {
            tally.accepted.insert(id.to_owned(), sum);
            true
        }
        503 | 507
            if retry_after.is_some_and(|s| s > 0)
                && body["status"].as_u64() == Some(u64::from(code))
                && body["message"].is_string() =>
        {
            tally.refused.insert(id.to_owned());
            false
        }
        _ => {
            let detail = format!("Retry-After {retry_after:?}, body {body}");
            tally.wrong.push((id.to_owned(), code, detail));
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_uploads_and_loses_nothing() {
    let Some(tmpfs) = Tmpfs::mount(TMPFS_SIZE) else {
        eprintln!(
            "full_disk: cannot mount a tmpfs here (needs root); the full store is covered by \
             intake-ingress's full_disk test instead"
        );
        return;
    };
    let root = tmpfs.path();
    let data = root.join("data");
    let serve = start_with(
        root,
        &[
            ("INGRESS_MAX_CONCURRENT_UPLOADS", "16"),
            ("INGRESS_REANNOUNCE_AFTER", "10s"),
        ],
    );
    let client = reqwest::Client::new();
    ready(&client, &serve).await;
    let ballast = ballast(root);

    // Fill the disk with uploads.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, tally, next) = (client.clone(), tally.clone(), next.clone());
            let base = serve.ingress.clone();
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= MAX_UPLOADS || tally.lock().unwrap().refused.len() >= REFUSALS_WANTED {
                        return;
                    }
                    let id = format!("fulldisk{n:04}");
                    if !upload(&client, &base, &id, &tally).await {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (accepted_full, refused) = {
        let t = tally.lock().unwrap();
        assert!(
            t.wrong.is_empty(),
            "answers other than 202/503/507: {:?}",
            t.wrong
        );
        (t.accepted.len(), t.refused.clone())
    };
    assert!(
        refused.len() >= REFUSALS_WANTED,
        "the disk filled up: {accepted_full} accepted, {} refused",
        refused.len()
    );
    assert!(
        accepted_full > 0,
        "uploads were accepted before the disk filled"
    );

    // Nothing partial, nothing refused kept, while the disk is still full.
    let accepted = tally.lock().unwrap().accepted.clone();
    check_whole(&data, &accepted);
    for bucket in [QUARANTINE, PERM, REJECT] {
        let left = tmp_leftovers(&data, bucket);
        assert!(left.is_empty(), "{bucket}/.tmp keeps {left:?}");
    }

    // Space returns: uploads are accepted again.
    std::fs::remove_file(&ballast).unwrap();
    for i in 0..AFTER_RECOVERY {
        let id = format!("recovered{i:02}");
        let (client, base, id, tally) = (&client, serve.ingress.as_str(), id.as_str(), &*tally);
        poll::until_true(Duration::from_secs(60), "an upload accepted", || {
            upload(client, base, id, tally)
        })
        .await;
    }
    let (accepted, wrong) = {
        let t = tally.lock().unwrap();
        (t.accepted.clone(), t.wrong.clone())
    };
    assert!(
        wrong.is_empty(),
        "answers other than 202/503/507: {wrong:?}"
    );

    // Every 202 ends in perm, whole; nothing refused is stored or tracked.
    poll::until_true(
        Duration::from_secs(180),
        "every accepted upload in perm",
        || async {
            let perm = keys(&data, PERM);
            accepted.keys().all(|id| perm.contains(id))
        },
    )
    .await;
    check_whole(&data, &accepted);
    let stored: BTreeSet<String> = [QUARANTINE, PERM, REJECT]
        .iter()
        .flat_map(|b| keys(&data, b))
        .collect();
    let kept_refused: Vec<_> = refused.intersection(&stored).collect();
    assert!(
        kept_refused.is_empty(),
        "refused but stored: {kept_refused:?}"
    );
    let mut tracked_refused = Vec::new();
    for id in &refused {
        if tracked(&client, &serve.tracker, id).await > 0 {
            tracked_refused.push(id.clone());
        }
    }
    assert!(
        tracked_refused.is_empty(),
        "refused but tracked: {tracked_refused:?}"
    );
    let perm = keys(&data, PERM);
    let lost = accepted.keys().filter(|id| !stored.contains(*id)).count();
    let pending = accepted
        .keys()
        .filter(|id| !perm.contains(*id) && stored.contains(*id))
        .count();
    println!(
        "full disk: {accepted_full} accepted and {} refused while filling, {AFTER_RECOVERY} accepted after space returned; {} in perm, pending = {pending}, lost = {lost}",
        refused.len(),
        accepted.keys().filter(|id| perm.contains(*id)).count()
    );
    assert_eq!(lost, 0);
    drop(serve);
}
