//! Black-box, through the real binary: a download link from an announce keeps serving the payload
//! after the validator moved it to perm (storage.md, "a link follows its payload"), as an announce
//! consumer that downloads late expects: on localdisk (ingress serves the link) and on S3 (a
//! presigned link of the quarantine copy, kept for `S3_QUARANTINE_RETAIN`, then swept). A rejected
//! payload's link stops serving at once.

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

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::engines::Engines;
use common::serve::{ready, start, start_with, statuses};
use common::upload::{archive, post};
use intake_testkit::poll;
use serde_json::Value;

const REQUEST_ID: &str = "5c7e0f5a9b0d4e6f8a1b2c3d4e5f6a7b";

/// `intake topics tail <topic> --from-beginning --count 1` against the same data dir.
async fn tail_one(dir: &Path, topic: &str) -> Value {
    tail(dir, topic, 1).await.remove(0)
}

/// The first `count` records of `topic` on the embedded bus of `dir`.
async fn tail(dir: &Path, topic: &str, count: usize) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["topics", "tail", topic, "--from-beginning", "--count"])
        .arg(count.to_string())
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("LOG_LEVEL", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let status = poll::until(Duration::from_secs(20), "topics tail to end", || {
        let done = child.try_wait().unwrap();
        async move { done }
    })
    .await;
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let records: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), count, "{out}");
    records
}

/// Polls the tracker until `id` has ingress's `status`.
async fn wait_for(client: &reqwest::Client, tracker: &str, id: &str, status: &str) {
    poll::until_true(
        Duration::from_secs(60),
        &format!("ingress's {status} of {id}"),
        || async {
            statuses(client, tracker, id)
                .await
                .contains(&("ingress".to_owned(), status.to_owned()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_announce_link_serves_the_archive_5_s_after_validation() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let serve = start(dir.path());
    ready(&client, &serve).await;

    let bytes = archive("late-consumer");
    let answer = post(&client, &serve.ingress, REQUEST_ID, bytes.clone())
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);

    // The link an announce consumer holds: the one in the announce, for quarantine.
    let record = tail_one(dir.path(), "platform.upload.testareno").await;
    let announce = &record["value"];
    assert_eq!(announce["request_id"], REQUEST_ID);
    let url = announce["url"]
        .as_str()
        .expect("an announce url")
        .to_owned();

    // Validated: ingress's success, and the payload has left quarantine for perm.
    poll::until_true(Duration::from_secs(60), "ingress's success", || {
        let (client, tracker) = (&client, &serve.tracker);
        async move {
            statuses(client, tracker, REQUEST_ID)
                .await
                .contains(&("ingress".to_owned(), "success".to_owned()))
        }
    })
    .await;
    let storage = dir.path().join("data/storage");
    assert!(!storage
        .join("insights-upload-quarantine")
        .join(REQUEST_ID)
        .exists());
    assert!(storage
        .join("insights-upload-perm-test")
        .join(REQUEST_ID)
        .exists());

    tokio::time::sleep(Duration::from_secs(5)).await;
    let late = client.get(&url).send().await.unwrap();
    assert_eq!(late.status(), 200, "{url}");
    assert_eq!(
        late.headers()["content-type"],
        "application/vnd.redhat.testareno.something+tgz"
    );
    assert_eq!(late.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_s3_an_announce_link_serves_after_validation_until_swept_and_a_rejected_one_stops() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let engines = Engines::harness("links");
    let mut env: Vec<(String, String)> = engines
        .env()
        .into_iter()
        .filter(|(k, _)| {
            !k.starts_with("KAFKA") && k != "BUS_DRIVER" && k != "INGRESS_CONSUMER_GROUP"
        })
        .collect();
    env.push(("S3_QUARANTINE_RETAIN".into(), "15s".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let serve = start_with(dir.path(), &env);
    ready(&client, &serve).await;
    let s3 = engines.s3();

    let (good, junk) = (REQUEST_ID, "6d8f1a6bac1e4f70b92c3d4e5f6a7b8c");
    let bytes = archive("late-consumer-s3");
    let answer = post(&client, &serve.ingress, good, bytes.clone())
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let answer = post(&client, &serve.ingress, junk, b"not an archive".to_vec())
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let announces = tail(dir.path(), "platform.upload.testareno", 2).await;
    let link = |id: &str| {
        let record = announces
            .iter()
            .find(|r| r["value"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no announce of {id}"));
        record["value"]["url"].as_str().expect("a url").to_owned()
    };
    let (good_url, junk_url) = (link(good), link(junk));
    assert!(
        good_url.contains(&format!("/{}/{good}?X-Amz-Algorithm=", engines.quarantine)),
        "a presigned link of the quarantine copy: {good_url}"
    );

    wait_for(&client, &serve.tracker, good, "success").await;
    wait_for(&client, &serve.tracker, junk, "rejected").await;
    assert!(s3.exists(&engines.perm, good).await);
    assert!(!s3.awaiting(&engines.quarantine, good).await, "validated");
    assert!(
        !s3.exists(&engines.quarantine, junk).await,
        "rejected: deleted at once"
    );
    let status = |url: String| {
        let client = client.clone();
        async move { client.get(&url).send().await.unwrap().status() }
    };
    assert_eq!(status(junk_url).await, 404, "a rejected payload's link");

    tokio::time::sleep(Duration::from_secs(5)).await;
    let late = client.get(&good_url).send().await.unwrap();
    assert_eq!(late.status(), 200, "{good_url}");
    assert_eq!(late.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // Once S3_QUARANTINE_RETAIN has passed, the sweep deletes the copy and the link ends.
    poll::until_true(Duration::from_secs(60), "the retired copy swept", || {
        let (s3, bucket) = (s3.clone(), engines.quarantine.clone());
        async move { !s3.exists(&bucket, good).await }
    })
    .await;
    assert_eq!(status(good_url).await, 404);
    assert_eq!(s3.get(&engines.perm, good).await, bytes, "perm untouched");
}
