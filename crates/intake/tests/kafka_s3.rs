//! Black-box: the seed's workflow through the real binary on Kafka and S3 (the harness's tansu
//! broker and S3 server). The test reads and writes the topics with its own rdkafka clients and looks
//! into the buckets with its own S3 client, so it checks the contract of spec/messages.md and
//! spec/storage.md on the wire, not intake's drivers.

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

use std::collections::BTreeSet;
use std::time::Duration;

use common::engines::Engines;
use common::kafka::{self, Reader, Record, Writer};
use common::process::{self, Intake};
use common::upload::{self, CONTENT_TYPE, IDENTITY};
use intake_testkit::poll;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// RFC3339 UTC with `Z` and exactly 6 fractional digits (spec README.md, rule 4).
fn assert_time(value: &Value, field: &str) {
    let text = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {value}"));
    let pattern = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$").unwrap();
    assert!(
        pattern.is_match(text),
        "{field} {text:?} is not RFC3339 UTC with 6 digits"
    );
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

/// Downloads `url` (a presigned S3 URL) and returns the bytes.
async fn download(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let answer = client.get(url).send().await.unwrap();
    assert_eq!(answer.status(), 200, "GET {url}");
    answer.bytes().await.unwrap().to_vec()
}

/// Creates this test's topics with `intake topics create` (only the testareno service topic).
fn create_topics(engines: &Engines, dir: &std::path::Path) {
    let created = process::run(
        &["topics", "create", "--services", "testareno"],
        engines,
        dir,
    );
    assert!(
        created
            .lines()
            .any(|l| l == engines.topic("platform.upload.testareno")),
        "{created}"
    );
}

/// Uploads as the seed's curl example does and checks the 202 answer.
async fn upload_accepted(client: &reqwest::Client, ingress: &Intake, id: &str, archive: &[u8]) {
    let answer = upload::post(client, &ingress.url, id, archive.to_vec())
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    assert_eq!(answer.headers()["x-rh-insights-request-id"], id);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body,
        json!({"request_id": id, "upload": {"account_number": "12345", "org_id": "54321"}})
    );
}

/// Every field of the announce table (spec/messages.md, "Announce"), its key and headers.
async fn check_announce(client: &reqwest::Client, announce: &Record, id: &str, archive: &[u8]) {
    let v = &announce.value;
    assert_eq!(
        announce.key.as_deref(),
        Some(id),
        "key: no queue_key, so the request id"
    );
    assert_eq!(
        announce.headers.get("service").map(String::as_str),
        Some("testareno")
    );
    assert_eq!(
        announce.headers.get("request_id").map(String::as_str),
        Some(id)
    );
    let expected: BTreeSet<&str> = [
        "account",
        "rh_account",
        "principal",
        "org_id",
        "request_id",
        "payload_id",
        "hash",
        "size",
        "service",
        "category",
        "content_type",
        "b64_identity",
        "url",
        "timestamp",
    ]
    .into();
    assert_eq!(
        keys(v),
        expected,
        "no metadata part, so no metadata field: {v}"
    );
    assert_eq!(v["account"], "12345");
    assert_eq!(v["rh_account"], "12345");
    assert_eq!(v["principal"], "54321");
    assert_eq!(v["org_id"], "54321");
    for field in ["request_id", "payload_id", "hash"] {
        assert_eq!(v[field], id, "{field}");
    }
    assert_eq!(v["size"], json!(archive.len()));
    assert_eq!(v["service"], "testareno");
    assert_eq!(v["category"], "something");
    assert_eq!(v["content_type"], CONTENT_TYPE);
    assert_eq!(v["b64_identity"], IDENTITY);
    assert_time(v, "timestamp");
    // The URL is a presigned GET of the quarantine object, signed for S3_ENDPOINT_URL.
    let url = v["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert_eq!(
        upload::sha256(&download(client, url).await),
        upload::sha256(archive)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_upload_round_trip_on_kafka_and_s3() {
    let dir = tempfile::tempdir().unwrap();
    let engines = Engines::harness("kafkas3");
    let s3 = engines.s3();
    let client = reqwest::Client::new();
    create_topics(&engines, dir.path());
    let announces = Reader::new(
        &engines.brokers,
        &engines.topic("platform.upload.testareno"),
    );
    let available = Reader::new(
        &engines.brokers,
        &engines.topic("platform.upload.available"),
    );
    let statuses = Reader::new(&engines.brokers, &engines.topic("platform.payload-status"));
    let replies = Writer::new(&engines.brokers);
    let validation_topic = engines.topic("platform.upload.validation");
    let ingress = Intake::ingress(&engines, dir.path(), &[]).await;

    // Success: upload → announce → the test's reply → perm, then available.
    let good = "52df9f748eabcfea";
    let archive = upload::archive(good);
    upload_accepted(&client, &ingress, good, &archive).await;
    let stored = s3
        .metadata(&engines.quarantine, good)
        .await
        .expect("the payload waits in quarantine until its verdict");
    assert_eq!(stored.get("sha256"), Some(&upload::sha256(&archive)));
    assert_eq!(stored.get("size"), Some(&archive.len().to_string()));
    assert_eq!(stored.get("request-id").map(String::as_str), Some(good));
    let announce = announces
        .find(WAIT, "the announce", |r| r.value["request_id"] == good)
        .await;
    check_announce(&client, &announce, good, &archive).await;

    // A validator echoes the announce and adds its verdict, an inventory id and a field of its own.
    let inventory_id = "f4d3c2b1-0a9e-4f8d-9c7b-6a5e4d3c2b1a";
    let mut reply = announce.value.clone();
    reply["validation"] = json!("success");
    reply["id"] = json!(inventory_id);
    reply["hostname"] = json!("web01");
    replies.send(&validation_topic, good, &reply, &[]).await;

    let message = available
        .find(WAIT, "the available message", |r| {
            r.value["request_id"] == good
        })
        .await;
    let v = &message.value;
    assert_eq!(message.key.as_deref(), Some(good));
    assert_eq!(
        message.headers.get("service").map(String::as_str),
        Some("testareno")
    );
    assert_eq!(
        message.headers.get("request_id").map(String::as_str),
        Some(good)
    );
    let expected: BTreeSet<&str> = [
        "request_id",
        "payload_id",
        "account",
        "rh_account",
        "principal",
        "rh_principal",
        "org_id",
        "service",
        "category",
        "content_type",
        "size",
        "b64_identity",
        "id",
        "satellite_managed",
        "extras",
        "url",
        "timestamp",
    ]
    .into();
    assert_eq!(keys(v), expected, "{v}");
    assert_eq!(v["payload_id"], good);
    for field in ["account", "rh_account"] {
        assert_eq!(v[field], "12345", "{field}");
    }
    for field in ["principal", "rh_principal", "org_id"] {
        assert_eq!(v[field], "54321", "{field}");
    }
    assert_eq!(v["service"], "testareno");
    assert_eq!(v["category"], "something");
    assert_eq!(v["content_type"], CONTENT_TYPE);
    assert_eq!(v["size"], json!(archive.len()));
    assert_eq!(v["b64_identity"], IDENTITY);
    assert_eq!(v["id"], inventory_id);
    assert_eq!(
        v["satellite_managed"],
        Value::Null,
        "always present, null when unknown"
    );
    assert_eq!(
        v["extras"],
        json!({"hostname": "web01", "id": inventory_id})
    );
    assert_eq!(
        v["timestamp"], announce.value["timestamp"],
        "the received time, as announced"
    );
    // A fresh URL of the perm object, which downloads the very bytes uploaded.
    let url = v["url"].as_str().unwrap();
    assert!(url.contains(&format!("/{}/{good}?", engines.perm)), "{url}");
    assert_eq!(
        upload::sha256(&download(&client, url).await),
        upload::sha256(&archive)
    );

    let perm = s3.metadata(&engines.perm, good).await.expect("in perm");
    assert_eq!(
        perm.get("sha256"),
        Some(&upload::sha256(&archive)),
        "metadata kept by the move"
    );
    assert_eq!(s3.get(&engines.perm, good).await, archive);
    poll::until_true(WAIT, "the payload to leave quarantine", || {
        let s3 = s3.clone();
        let bucket = engines.quarantine.clone();
        async move { !s3.awaiting(&bucket, good).await }
    })
    .await;
    assert!(!s3.exists(&engines.reject, good).await);

    // Failure: the reply (legacy payload_id only) moves the payload to the reject bucket.
    let bad = "7d2c0e1a9b8f4c3da1e2f3a4b5c6d7e8";
    let archive = upload::archive(bad);
    upload_accepted(&client, &ingress, bad, &archive).await;
    announces
        .find(WAIT, "the second announce", |r| {
            r.value["request_id"] == bad
        })
        .await;
    let reply = json!({"payload_id": bad, "service": "testareno", "validation": "FAILURE ",
                       "reason": "archive is not a tarball"});
    replies.send(&validation_topic, bad, &reply, &[]).await;
    poll::until_true(
        WAIT,
        "the rejected payload in the reject bucket only",
        || {
            let s3 = s3.clone();
            let engines = engines.clone();
            async move {
                s3.exists(&engines.reject, bad).await && !s3.exists(&engines.quarantine, bad).await
            }
        },
    )
    .await;
    assert!(!s3.exists(&engines.perm, bad).await);
    assert_eq!(s3.get(&engines.reject, bad).await, archive);

    // The statuses ingress reports for both (spec/messages.md, "Statuses ingress emits").
    let seen = statuses
        .collect(WAIT, "both terminal statuses", |seen| {
            let terminal = |id: &str, status: &str| {
                seen.iter()
                    .any(|r| r.value["request_id"] == id && r.value["status"] == status)
            };
            terminal(good, "success") && terminal(bad, "rejected")
        })
        .await;
    let of = |id: &str, status: &str| {
        seen.iter()
            .find(|r| r.value["request_id"] == id && r.value["status"] == status)
            .unwrap_or_else(|| panic!("no {status} status for {id}"))
            .clone()
    };
    for id in [good, bad] {
        let received = of(id, "received");
        assert_eq!(received.key.as_deref(), Some(id));
        assert_eq!(received.value["service"], "ingress");
        assert_eq!(received.value["org_id"], "54321");
        assert_eq!(received.value["account"], "12345");
        assert_eq!(received.value["status_msg"], "payload received by ingress");
        assert_time(&received.value, "date");
        assert_eq!(
            of(id, "processing").value["status_msg"],
            "announced to testareno"
        );
    }
    let success = of(good, "success");
    // The configured topic name, as spec/messages.md words it (the prefix is deployment detail).
    assert_eq!(
        success.value["status_msg"],
        "validated by testareno; announced on platform.upload.available"
    );
    assert_eq!(success.value["inventory_id"], inventory_id);
    let rejected = of(bad, "rejected");
    assert_eq!(
        rejected.value["status_msg"],
        format!(
            "rejected by testareno: archive is not a tarball; moved to {}",
            engines.reject
        )
    );
    let more = available.drain(Duration::from_secs(2)).await;
    assert!(
        more.iter()
            .all(|r| r.value["request_id"] != bad && r.value["request_id"] != good),
        "one available message for the validated payload, none for the rejected one: {more:?}"
    );
}

/// `intake validator` in its default check mode on Kafka and S3: it downloads each payload from the
/// presigned quarantine URL, inspects the archive and replies; ingress moves the payload.
#[tokio::test(flavor = "multi_thread")]
async fn validator_check_mode_on_kafka_and_s3() {
    let dir = tempfile::tempdir().unwrap();
    let engines = Engines::harness("kafkas3val");
    let s3 = engines.s3();
    let client = reqwest::Client::new();
    create_topics(&engines, dir.path());
    let available = Reader::new(
        &engines.brokers,
        &engines.topic("platform.upload.available"),
    );
    let ingress = Intake::ingress(&engines, dir.path(), &[]).await;
    let group = format!("{}validator", engines.prefix);
    let _validator = Intake::start(
        &["validator", "--services", "testareno"],
        &engines,
        dir.path(),
        &[("VALIDATOR_CONSUMER_GROUP", group.as_str())],
    );

    let good = "c0ffee00c0ffee00c0ffee00c0ffee00";
    let archive = upload::archive(good);
    upload_accepted(&client, &ingress, good, &archive).await;
    let junk = "deadbeefdeadbeefdeadbeefdeadbeef";
    upload_accepted(
        &client,
        &ingress,
        junk,
        b"this is not an archive".as_slice(),
    )
    .await;

    let message = available
        .find(WAIT, "the validated payload on available", |r| {
            r.value["request_id"] == good
        })
        .await;
    let url = message.value["url"].as_str().unwrap();
    assert_eq!(
        upload::sha256(&download(&client, url).await),
        upload::sha256(&archive)
    );
    poll::until_true(
        WAIT,
        "the good payload in perm only and the junk in reject only",
        || {
            let s3 = s3.clone();
            let e = engines.clone();
            async move {
                s3.exists(&e.perm, good).await
                    && !s3.awaiting(&e.quarantine, good).await
                    && s3.exists(&e.reject, junk).await
                    && !s3.exists(&e.quarantine, junk).await
            }
        },
    )
    .await;
    assert!(!s3.exists(&engines.reject, good).await);
    assert!(!s3.exists(&engines.perm, junk).await);
}

/// `BUS_CREATE_TOPICS=true`: each component creates the topics it uses at start-up, on a broker
/// (prefix) where none exist yet.
#[tokio::test(flavor = "multi_thread")]
async fn bus_create_topics_makes_each_component_create_its_topics() {
    let dir = tempfile::tempdir().unwrap();
    let engines = Engines::harness("createtopics");
    let ours = |all: Vec<String>| -> BTreeSet<String> {
        all.into_iter()
            .filter(|t| t.starts_with(&engines.prefix))
            .collect()
    };
    assert!(ours(kafka::topics(&engines.brokers).await).is_empty());
    let group = format!("{}validator", engines.prefix);
    let tracker_port = process::free_port().to_string();
    let tracker_listen = format!("127.0.0.1:{tracker_port}");
    let _validator = Intake::start(
        &["validator", "--services", "testareno"],
        &engines,
        dir.path(),
        &[
            ("BUS_CREATE_TOPICS", "true"),
            ("VALIDATOR_CONSUMER_GROUP", group.as_str()),
        ],
    );
    let _tracker = Intake::start(
        &["tracker"],
        &engines,
        dir.path(),
        &[
            ("BUS_CREATE_TOPICS", "true"),
            ("TRACKER_LISTEN", tracker_listen.as_str()),
            ("TRACKER_CONSUMER_GROUP", group.as_str()),
        ],
    );
    let expected: BTreeSet<String> = [
        "platform.upload.testareno",
        "platform.upload.validation",
        "platform.payload-status",
        "platform.payload-status.dlq",
    ]
    .iter()
    .map(|t| engines.topic(t))
    .collect();
    poll::until_true(WAIT, "the validator's and the tracker's topics", || {
        let brokers = engines.brokers.clone();
        let expected = expected.clone();
        async move { expected.is_subset(&ours(kafka::topics(&brokers).await)) }
    })
    .await;
    // Ingress creates the rest; a second start over existing topics is fine (idempotent).
    let extra = [
        ("BUS_CREATE_TOPICS", "true"),
        ("INGRESS_VALID_SERVICES", "testareno"),
    ];
    let _ingress = Intake::ingress(&engines, dir.path(), &extra).await;
    let _again = Intake::ingress(&engines, dir.path(), &extra).await;
    let all = ours(kafka::topics(&engines.brokers).await);
    for t in [
        "platform.upload.announce",
        "platform.upload.validation.dlq",
        "platform.upload.available",
    ] {
        assert!(all.contains(&engines.topic(t)), "{t} missing from {all:?}");
    }
}
