//! Black-box: `intake serve` on the embedded default, driven over HTTP exactly as the seed's curl
//! example does, through the real binary.

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

use std::time::Duration;

use common::serve::{ready, start, statuses};
use intake_testkit::poll;
use serde_json::Value;

const IDENTITY: &str = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";

async fn upload(
    client: &reqwest::Client,
    base: &str,
    request_id: &str,
    archive: Vec<u8>,
) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(archive)
        .file_name("archive.tar.gz")
        .mime_str("application/vnd.redhat.testareno.something+tgz")
        .unwrap();
    client
        .post(format!("{base}/api/ingress/v1/upload"))
        .header("x-rh-identity", IDENTITY)
        .header("x-rh-insights-request-id", request_id)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_upload_is_validated_tracked_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let archive = intake_testkit::archives::gzip(&intake_testkit::archives::sample_tar());
    let perm = dir.path().join("data/storage/insights-upload-perm-test");

    let serve = start(dir.path());
    ready(&client, &serve).await;
    let answer = upload(&client, &serve.ingress, "52df9f748eabcfea", archive.clone()).await;
    assert_eq!(answer.status(), 202);
    assert_eq!(
        answer.headers()["x-rh-insights-request-id"],
        "52df9f748eabcfea"
    );
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"request_id": "52df9f748eabcfea", "upload": {"account_number": "12345", "org_id": "54321"}})
    );

    poll::until_true(Duration::from_secs(20), "the payload to reach perm", || {
        let p = perm.join("52df9f748eabcfea");
        async move { p.exists() }
    })
    .await;
    assert_eq!(
        std::fs::read(perm.join("52df9f748eabcfea")).unwrap(),
        archive
    );
    // The move is copy, publish, then delete (messages.md): the quarantine copy goes a moment
    // after the perm one appears.
    poll::until_true(
        Duration::from_secs(20),
        "the quarantine copy removed",
        || {
            let q = dir
                .path()
                .join("data/storage/insights-upload-quarantine/52df9f748eabcfea");
            async move { !q.exists() }
        },
    )
    .await;

    poll::until_true(
        Duration::from_secs(20),
        "ingress success in the tracker",
        || async {
            let s = statuses(&client, &serve.tracker, "52df9f748eabcfea").await;
            s.contains(&("ingress".into(), "received".into()))
                && s.contains(&("ingress".into(), "success".into()))
        },
    )
    .await;
    let tracked: Value = client
        .get(format!(
            "{}/api/ingress/v1/track/52df9f748eabcfea",
            serve.ingress
        ))
        .header("x-rh-identity", IDENTITY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in ["status", "status_msg", "date", "service", "inventory_id"] {
        assert!(tracked.get(key).is_some(), "{key} missing from {tracked}");
    }

    // A restart loses nothing and repeats nothing: the id is still taken, and a new upload flows.
    drop(serve);
    let serve = start(dir.path());
    ready(&client, &serve).await;
    assert_eq!(
        upload(&client, &serve.ingress, "52df9f748eabcfea", archive.clone())
            .await
            .status(),
        409
    );
    assert_eq!(
        upload(&client, &serve.ingress, "after-restart-1", archive.clone())
            .await
            .status(),
        202
    );
    poll::until_true(
        Duration::from_secs(20),
        "the second payload to reach perm",
        || {
            let p = perm.join("after-restart-1");
            async move { p.exists() }
        },
    )
    .await;
    let first = statuses(&client, &serve.tracker, "52df9f748eabcfea").await;
    let successes = first
        .iter()
        .filter(|(svc, st)| svc == "ingress" && st == "success")
        .count();
    assert_eq!(
        successes, 1,
        "the first payload's verdict was applied once: {first:?}"
    );
}
