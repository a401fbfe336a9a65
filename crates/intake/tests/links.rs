//! Black-box, through the real binary: a download link from an announce keeps serving the payload
//! after the validator moved it to perm (storage.md, "a link follows its payload"), as an announce
//! consumer that downloads late expects.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::serve::{ready, start, statuses};
use common::upload::{archive, post};
use intake_testkit::poll;
use serde_json::Value;

const REQUEST_ID: &str = "5c7e0f5a9b0d4e6f8a1b2c3d4e5f6a7b";

/// `intake topics tail <topic> --from-beginning --count 1` against the same data dir.
async fn tail_one(dir: &Path, topic: &str) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["topics", "tail", topic, "--from-beginning", "--count", "1"])
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
    serde_json::from_str(out.lines().next().expect("one line")).unwrap()
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
