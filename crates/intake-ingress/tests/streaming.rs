//! Uploads over a real HTTP/1.1 connection (ingress.md, "POST /upload", "Size limits", "Nothing is
//! left behind", "Test connection"): limits enforced while the body streams and from the declared
//! length, vanished clients, storage breaking mid-stream. Each case checks the answer, the buckets
//! and the bus.

use crate::harness;

use std::time::Duration;

use harness::{identity, multipart, part_head, payload, raw_http, BOUNDARY, MAX_SIZE, TGZ};
use intake_core::Identity;
use intake_storage::faults::{Fault, Operation};
use intake_storage::Bucket;
use intake_testkit::poll;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Multipart framing allowed on top of the largest limit (ingress.md, check 6).
const FORM_OVERHEAD: u64 = 1_048_576;

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// Nothing was announced and no status was sent.
async fn assert_nothing_published(h: &harness::Ingress) {
    let announces = h.messages(&h.service_topic()).await;
    assert!(announces.is_empty(), "announced: {announces:?}");
    let statuses = h.statuses().await;
    assert!(statuses.is_empty(), "statuses: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_oversize_body_is_refused_before_it_is_all_sent() {
    let h = harness::start(&[]).await;
    let addr = h.serve().await;
    let (reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
    let id = identity();
    let ct = multipart_type();
    writer
        .write_all(&raw_http::head(
            "POST",
            "/api/ingress/v1/upload",
            &[
                ("x-rh-identity", &id),
                ("x-rh-insights-request-id", "chunked-too-big"),
                ("content-type", &ct),
                ("transfer-encoding", "chunked"),
            ],
        ))
        .await
        .unwrap();
    writer
        .write_all(&raw_http::chunk(&part_head("file", Some(TGZ))))
        .await
        .unwrap();

    // A client with 1 GiB to send, without a Content-Length: it keeps writing until the answer
    // comes (or the server stops the connection).
    const WOULD_SEND: u64 = 1 << 30;
    const CHUNK: usize = 64 * 1024;
    let frame = raw_http::chunk(&vec![b'a'; CHUNK]);
    let mut answer = tokio::spawn(raw_http::read_until_closed(reader));
    let mut sent = 0u64;
    let bytes = loop {
        assert!(
            sent < WOULD_SEND,
            "the server read the whole {WOULD_SEND}-byte body"
        );
        tokio::select! {
            done = &mut answer => break done.unwrap(),
            written = writer.write_all(&frame) => match written {
                Ok(()) => sent += CHUNK as u64,
                Err(_) => break (&mut answer).await.unwrap(),
            },
        }
    };
    assert!(
        sent < 64 << 20,
        "the answer came only after {sent} bytes were sent"
    );

    let responses = raw_http::parse(&bytes);
    assert_eq!(responses.len(), 1, "{responses:?}");
    let r = &responses[0];
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("x-rh-insights-request-id"),
        Some("chunked-too-big")
    );
    let body = r.json();
    assert_eq!(body["status"], 413);
    assert_eq!(body["title"], "Payload Too Large");
    assert_eq!(body["request_id"], "chunked-too-big");
    let message = body["message"].as_str().unwrap();
    let prefix = format!("file part exceeds the {MAX_SIZE}-byte limit for service \"testareno\" (");
    let received: u64 = message
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(" bytes received)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected message {message:?}"));
    assert!(received > MAX_SIZE && received <= sent, "{message}");

    h.assert_bucket_empty(Bucket::Quarantine);
    assert_nothing_published(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_length_over_the_ceiling_is_refused_without_reading_the_body() {
    let h = harness::start(&[]).await;
    let addr = h.serve().await;
    let id = identity();
    let ct = multipart_type();
    // The largest limit of any service (qpc's, by default), not the general one.
    let largest = h.state.config.largest_limit();
    assert!(largest > MAX_SIZE);
    let ceiling = largest + FORM_OVERHEAD;
    let too_long = (ceiling + 1).to_string();

    for expect_continue in [true, false] {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let mut headers = vec![
            ("x-rh-identity", id.as_str()),
            ("x-rh-insights-request-id", "declared-too-big"),
            ("content-type", ct.as_str()),
            ("content-length", too_long.as_str()),
        ];
        if expect_continue {
            headers.push(("expect", "100-continue"));
        }
        stream
            .write_all(&raw_http::head("POST", "/api/ingress/v1/upload", &headers))
            .await
            .unwrap();
        // Not one byte of the body is sent: the answer comes from the headers alone (no
        // `100 Continue` first), and the server closes the connection.
        let responses = raw_http::parse(&raw_http::read_until_closed(&mut stream).await);
        assert_eq!(
            responses.len(),
            1,
            "expect={expect_continue}: {responses:?}"
        );
        let r = &responses[0];
        assert_eq!(r.status, 413, "{r:?}");
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(
            r.json(),
            json!({
                "status": 413,
                "title": "Payload Too Large",
                "message": format!(
                    "request of {} bytes exceeds the largest upload limit ({largest} bytes plus {FORM_OVERHEAD} bytes of form overhead)",
                    ceiling + 1
                ),
                "request_id": "declared-too-big",
            })
        );
    }

    // Exactly at the ceiling, check 6 passes and the server asks for the body.
    let at_ceiling = ceiling.to_string();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(&raw_http::head(
            "POST",
            "/api/ingress/v1/upload",
            &[
                ("x-rh-identity", &id),
                ("content-type", &ct),
                ("content-length", &at_ceiling),
                ("expect", "100-continue"),
            ],
        ))
        .await
        .unwrap();
    let interim = raw_http::parse(&raw_http::read_until(&mut stream, b"\r\n\r\n").await);
    assert_eq!(interim.first().map(|r| r.status), Some(100), "{interim:?}");
    drop(stream);
    h.assert_bucket_empty(Bucket::Quarantine);
}

/// Sends the request head and the first `cut` bytes of `body` (whose full length is declared).
async fn send_part_of(addr: &str, request_id: &str, body: &[u8], cut: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let len = body.len().to_string();
    stream
        .write_all(&raw_http::head(
            "POST",
            "/api/ingress/v1/upload",
            &[
                ("x-rh-identity", &identity()),
                ("x-rh-insights-request-id", request_id),
                ("content-type", &multipart_type()),
                ("content-length", &len),
            ],
        ))
        .await
        .unwrap();
    stream.write_all(&body[..cut]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn client_gone_in_the_middle_of_the_file_part_leaves_nothing() {
    let h = harness::start(&[]).await;
    let addr = h.serve().await;
    let body = multipart(&[
        ("file", Some(TGZ), &payload(900)),
        ("metadata", None, b"{}"),
    ]);
    let cut = part_head("file", Some(TGZ)).len() + 400;
    let stream = send_part_of(&addr, "gone-mid-file", &body, cut).await;
    let metrics = &h.state.metrics;
    poll::until_true(
        Duration::from_secs(20),
        "the file part to be streaming into quarantine",
        || async { metrics.in_flight.get() == 1 },
    )
    .await;
    drop(stream);
    poll::until_true(
        Duration::from_secs(20),
        "the interrupted write to end",
        || async { metrics.in_flight.get() == 0 && metrics.stage_seconds.get_sample_count() == 1 },
    )
    .await;
    h.assert_bucket_empty(Bucket::Quarantine);
    assert_nothing_published(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_gone_after_the_file_part_was_stored_deletes_it() {
    let h = harness::start(&[]).await;
    let addr = h.serve().await;
    let body = multipart(&[
        ("file", Some(TGZ), &payload(900)),
        ("metadata", None, br#"{"queue_key": "k"}"#),
    ]);
    // Everything up to the first byte of the metadata part's value.
    let metadata_head = part_head("metadata", None);
    let start = body
        .windows(metadata_head.len())
        .position(|w| w == metadata_head.as_slice())
        .unwrap();
    let cut = start + metadata_head.len() + 1;
    let stream = send_part_of(&addr, "gone-after-file", &body, cut).await;
    poll::until_true(
        Duration::from_secs(20),
        "the file part to be stored in quarantine",
        || async { h.keys(Bucket::Quarantine) == ["gone-after-file"] },
    )
    .await;
    drop(stream);
    poll::until_true(
        Duration::from_secs(20),
        "the stored part and its metadata to be deleted",
        || async { h.everything_in(Bucket::Quarantine).is_empty() },
    )
    .await;
    assert!(h.store_faults.calls(Operation::Delete) >= 1);
    h.assert_bucket_empty(Bucket::Quarantine);
    assert_nothing_published(&h).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_uploads_with_one_id_store_exactly_one() {
    let h = harness::start(&[]).await;
    let addr = h.serve().await;
    let (a, b) = (payload(900), vec![b'b'; 800]);
    let bodies = [
        multipart(&[("file", Some(TGZ), &a)]),
        multipart(&[("file", Some(TGZ), &b)]),
    ];
    let cut = part_head("file", Some(TGZ)).len() + 100;
    let mut streams = Vec::new();
    for body in &bodies {
        streams.push(send_part_of(&addr, "same-id", body, cut).await);
    }
    // Both passed check 7 (the id was free) and are streaming into quarantine.
    poll::until_true(
        Duration::from_secs(20),
        "both uploads to be streaming",
        || async { h.state.metrics.in_flight.get() == 2 },
    )
    .await;
    for (stream, body) in streams.iter_mut().zip(&bodies) {
        stream.write_all(&body[cut..]).await.unwrap();
    }
    let mut answers = Vec::new();
    for stream in &mut streams {
        answers.push(raw_http::read_response(stream).await);
    }
    let codes: Vec<u16> = answers.iter().map(|r| r.status).collect();
    let winner = match codes.as_slice() {
        [202, 409] => &a,
        [409, 202] => &b,
        other => panic!("expected one 202 and one 409, got {other:?}"),
    };
    let conflict = answers.iter().find(|r| r.status == 409).unwrap();
    assert_eq!(conflict.json()["request_id"], "same-id");
    assert!(conflict.json()["message"]
        .as_str()
        .unwrap()
        .contains("same-id"));

    // The create-only write kept the winner's bytes, announced once.
    assert_eq!(h.keys(Bucket::Quarantine), ["same-id"]);
    assert_eq!(&h.read(Bucket::Quarantine, "same-id").unwrap(), winner);
    assert!(h.tmp_files(Bucket::Quarantine).is_empty());
    let announces = h.messages(&h.service_topic()).await;
    assert_eq!(announces.len(), 1);
    let announce: Value = serde_json::from_slice(&announces[0].value).unwrap();
    assert_eq!(announce["size"], winner.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_is_aborted_with_408_and_nothing_kept() {
    let h = harness::start(&[("INGRESS_BODY_IDLE_TIMEOUT", "300ms")]).await;
    let addr = h.serve().await;
    let body = multipart(&[("file", Some(TGZ), &payload(900))]);
    let cut = part_head("file", Some(TGZ)).len() + 400;
    // The client sends part of the file, then nothing; the server gives up after the idle timeout.
    let mut stream = send_part_of(&addr, "stalled", &body, cut).await;
    let responses = raw_http::parse(&raw_http::read_until_closed(&mut stream).await);
    assert_eq!(responses.len(), 1, "{responses:?}");
    let r = &responses[0];
    assert_eq!(r.status, 408);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.json()["status"], 408);
    assert_eq!(r.json()["request_id"], "stalled");
    h.assert_bucket_empty(Bucket::Quarantine);
    assert_nothing_published(&h).await;
}

#[tokio::test]
async fn storage_failing_mid_stream_answers_503_and_keeps_nothing() {
    let h = harness::start(&[]).await;
    // 100 bytes reach the store, then it breaks.
    h.store_faults.fail_put_after(100, Fault::Times(1));
    let answer = h.upload("store-breaks", &payload(900), None).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("30"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.header("x-rh-insights-request-id"),
        Some("store-breaks")
    );
    assert_eq!(
        answer.json(),
        json!({
            "status": 503,
            "title": "Service Unavailable",
            "message": "payload storage is unavailable; nothing was kept, retry later",
            "request_id": "store-breaks",
        })
    );
    assert_eq!(h.store_faults.calls(Operation::PutNew), 1);
    h.assert_bucket_empty(Bucket::Quarantine);
    assert_nothing_published(&h).await;

    // Nothing blocks the retry: the same id is accepted, and announced once.
    h.upload_ok("store-breaks", &payload(900), None).await;
    assert_eq!(
        h.read(Bucket::Quarantine, "store-breaks").unwrap(),
        payload(900)
    );
    let announces = h.messages(&h.service_topic()).await;
    assert_eq!(announces.len(), 1);
    assert_eq!(harness::header(&announces[0], "request_id"), "store-breaks");
}

#[tokio::test(flavor = "multi_thread")]
async fn test_connection_over_http_answers_200_and_keeps_nothing() {
    let h = harness::start(&[("INGRESS_DENY_ORG_IDS", "666")]).await;
    let base = format!("http://{}", h.serve().await);
    let client = reqwest::Client::new();
    let tenant = json!({"account_number": "12345", "org_id": "54321"});

    // `test=test` in the query string, with a generated id.
    let r = client
        .post(format!("{base}/api/ingress/v1/upload?test=test"))
        .header("x-rh-identity", identity())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let header_id = r.headers()["x-rh-insights-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"request_id": header_id, "upload": tenant}));
    assert_eq!(header_id.len(), 32);
    assert!(header_id
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));

    // A form body under the seed prefix.
    let r = client
        .post(format!("{base}/api/v1/upload"))
        .header("x-rh-identity", identity())
        .header("x-rh-insights-request-id", "conn-test-form")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1&test=test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"request_id": "conn-test-form", "upload": tenant})
    );

    // A JSON body under the gateway prefix; an org-only tenant has no account_number.
    let r = client
        .post(format!("{base}/r/insights/platform/ingress/v1/upload"))
        .header("x-rh-identity", Identity::encode("", "777"))
        .header("x-rh-insights-request-id", "conn-test-json")
        .header("content-type", "application/json; charset=utf-8")
        .body(" { \"test\" : \"test\" }\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"request_id": "conn-test-json", "upload": {"org_id": "777"}})
    );

    // Any other JSON body is not a test, and not multipart: 400.
    let r = client
        .post(format!("{base}/api/ingress/v1/upload"))
        .header("x-rh-identity", identity())
        .header("content-type", "application/json")
        .body(r#"{"test": "nope"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A deny-listed organization cannot test its connection either.
    let r = client
        .post(format!("{base}/api/ingress/v1/upload?test=test"))
        .header("x-rh-identity", Identity::encode("1", "666"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Nothing stored, published or tracked.
    h.assert_bucket_empty(Bucket::Quarantine);
    for topic in h.bus.list_topics().await.unwrap() {
        let published = h.messages(&topic).await;
        assert!(published.is_empty(), "{topic}: {published:?}");
    }
}
