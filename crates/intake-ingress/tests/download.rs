//! `GET|HEAD /download/{request_id}?expires=&signature=` on localdisk (ingress.md, "GET /download";
//! storage.md, "Download URLs"): 400 for a bad id, 403 for anything wrong with the signature or an
//! expired one, 404 when the payload was rejected or deleted, 200 with the stored bytes (a quarantine
//! link follows its payload to perm).

use crate::harness;

use axum::body::Body;
use harness::{payload, PUBLIC_URL, TGZ};
use http::Request;
use intake_core::RequestId;
use intake_storage::faults::{Fault, Operation};
use intake_storage::signing::UrlSigner;
use intake_storage::Bucket;

fn id(text: &str) -> RequestId {
    RequestId::parse(text).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The path and query of a URL ingress issued.
fn path_of(url: &str) -> &str {
    url.strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{url} is not under {PUBLIC_URL}"))
}

/// A download path signed for `bucket` with the harness key.
fn signed(h: &harness::Ingress, bucket: Bucket, request_id: &str, expires: i64) -> String {
    let signature = h
        .signer
        .signature(h.state.store.bucket_name(bucket), request_id, expires);
    format!("/download/{request_id}?expires={expires}&signature={signature}")
}

fn assert_error(answer: &harness::Answer, status: u16, title: &str) {
    assert_eq!(answer.status, status, "{}", answer.json());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(body["status"], status);
    assert_eq!(body["title"], title);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn a_signed_url_serves_the_stored_bytes_with_their_headers() {
    let h = harness::start(&[]).await;
    let bytes = payload(700);
    h.upload_ok("dl-ok", &bytes, None).await;

    // The URL in the announce is the one a validator uses.
    let announces = h.messages(&h.service_topic()).await;
    let announce: serde_json::Value = serde_json::from_slice(&announces[0].value).unwrap();
    let url = announce["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{PUBLIC_URL}/download/dl-ok?expires=")),
        "{url}"
    );

    let answer = h.get(path_of(url), None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some(TGZ));
    assert_eq!(answer.header("content-length"), Some("700"));
    assert_eq!(
        answer.header("content-disposition"),
        Some("attachment; filename=\"dl-ok\"")
    );
    assert_eq!(answer.body.as_ref(), bytes.as_slice());

    // HEAD: the same headers, no body.
    let head = h
        .call(Request::head(path_of(url)).body(Body::empty()).unwrap())
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some(TGZ));
    assert_eq!(head.header("content-length"), Some("700"));
    assert_eq!(
        head.header("content-disposition"),
        Some("attachment; filename=\"dl-ok\"")
    );
    assert!(head.body.is_empty());

    // A URL the store issues now works the same way.
    let fresh = h
        .state
        .store
        .url(Bucket::Quarantine, &id("dl-ok"))
        .await
        .unwrap();
    assert_eq!(h.get(path_of(&fresh), None).await.body.as_ref(), bytes);
}

#[tokio::test]
async fn a_request_id_off_the_pattern_is_400() {
    let h = harness::start(&[]).await;
    let expires = now() + 3600;
    let long = "a".repeat(65);
    for bad in ["bad.id", "bad_id", long.as_str()] {
        let signature =
            h.signer
                .signature(h.state.store.bucket_name(Bucket::Quarantine), bad, expires);
        let answer = h
            .get(
                &format!("/download/{bad}?expires={expires}&signature={signature}"),
                None,
            )
            .await;
        assert_error(&answer, 400, "Bad Request");
    }
}

#[tokio::test]
async fn missing_malformed_wrong_or_expired_signatures_are_403() {
    let h = harness::start(&[]).await;
    h.upload_ok("dl-403", &payload(10), None).await;
    let quarantine = h.state.store.bucket_name(Bucket::Quarantine).to_owned();
    let expires = now() + 3600;
    let good = h.signer.signature(&quarantine, "dl-403", expires);
    let mut flipped = good.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let other_id = h.signer.signature(&quarantine, "dl-other", expires);
    let other_key = UrlSigner::new(b"not-the-key").signature(&quarantine, "dl-403", expires);
    let reject = h
        .signer
        .signature(h.state.store.bucket_name(Bucket::Reject), "dl-403", expires);
    let cases = [
        "/download/dl-403".to_owned(),
        format!("/download/dl-403?expires={expires}"),
        format!("/download/dl-403?signature={good}"),
        format!("/download/dl-403?expires=&signature={good}"),
        format!("/download/dl-403?expires={expires}&signature="),
        format!("/download/dl-403?expires=soon&signature={good}"),
        format!("/download/dl-403?expires=%2B{expires}&signature={good}"),
        format!("/download/dl-403?expires={}&signature={good}", expires + 1),
        format!("/download/dl-403?expires={expires}&signature={flipped}"),
        format!("/download/dl-403?expires={expires}&signature={other_id}"),
        format!("/download/dl-403?expires={expires}&signature={other_key}"),
        format!("/download/dl-403?expires={expires}&signature={reject}"),
        // Signed correctly, but a minute ago.
        signed(&h, Bucket::Quarantine, "dl-403", now() - 60),
    ];
    for path in &cases {
        let answer = h.get(path, None).await;
        assert_error(&answer, 403, "Forbidden");
        assert_eq!(
            answer.json()["message"],
            "the download link is invalid or has expired",
            "{path}"
        );
    }
    // The same object with the right signature is served.
    let ok = h
        .get(
            &format!("/download/dl-403?expires={expires}&signature={good}"),
            None,
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn a_valid_signature_for_an_object_not_in_its_bucket_is_404() {
    let h = harness::start(&[]).await;
    let bytes = payload(50);
    h.upload_ok("dl-404", &bytes, None).await;
    let expires = now() + 3600;
    let perm_url = signed(&h, Bucket::Perm, "dl-404", expires);

    // Signed for perm while the payload is still in quarantine: a perm link never looks back.
    assert_error(&h.get(&perm_url, None).await, 404, "Not Found");
    // Never uploaded.
    assert_error(
        &h.get(&signed(&h, Bucket::Perm, "dl-never", expires), None)
            .await,
        404,
        "Not Found",
    );
    assert_error(
        &h.get(&signed(&h, Bucket::Quarantine, "dl-never", expires), None)
            .await,
        404,
        "Not Found",
    );
}

#[tokio::test]
async fn a_quarantine_link_follows_its_payload_to_perm_but_not_to_reject() {
    let h = harness::start(&[]).await;
    let expires = now() + 3600;
    for (request_id, to, served) in [
        ("dl-moved", Bucket::Perm, true),
        ("dl-rejected", Bucket::Reject, false),
    ] {
        let bytes = payload(50);
        h.upload_ok(request_id, &bytes, None).await;
        let quarantine_url = signed(&h, Bucket::Quarantine, request_id, expires);
        // Mid-move (in both buckets) and after it, the same link serves the same bytes.
        h.state
            .store
            .copy(Bucket::Quarantine, to, &id(request_id))
            .await
            .unwrap();
        let answer = h.get(&quarantine_url, None).await;
        assert_eq!(answer.status, 200, "{request_id} mid-move");
        assert_eq!(answer.body.as_ref(), bytes.as_slice());
        h.state
            .store
            .delete(Bucket::Quarantine, &id(request_id))
            .await
            .unwrap();
        let answer = h.get(&quarantine_url, None).await;
        if served {
            assert_eq!(answer.status, 200, "{request_id} after the move");
            assert_eq!(answer.header("content-type"), Some(TGZ));
            assert_eq!(answer.header("content-length"), Some("50"));
            assert_eq!(answer.body.as_ref(), bytes.as_slice());
            let perm = h
                .get(&signed(&h, Bucket::Perm, request_id, expires), None)
                .await;
            assert_eq!(perm.body.as_ref(), bytes.as_slice());
        } else {
            // Rejected: a JSON 404, nothing that looks like an archive.
            assert_error(&answer, 404, "Not Found");
        }
    }
}

#[tokio::test]
async fn storage_failing_is_503() {
    let h = harness::start(&[]).await;
    h.upload_ok("dl-503", &payload(5), None).await;
    h.store_faults.set(Operation::Get, Fault::Times(1));
    let answer = h
        .get(&signed(&h, Bucket::Quarantine, "dl-503", now() + 60), None)
        .await;
    assert_error(&answer, 503, "Service Unavailable");
    assert_eq!(answer.header("retry-after"), Some("30"));
}

#[tokio::test]
async fn other_methods_are_405_naming_get_and_head() {
    let h = harness::start(&[]).await;
    let path = signed(&h, Bucket::Quarantine, "dl-405", now() + 60);
    for method in ["POST", "PUT", "DELETE"] {
        let answer = h
            .call(
                Request::builder()
                    .method(method)
                    .uri(&path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_error(&answer, 405, "Method Not Allowed");
        let allow = answer.header("allow").unwrap_or_default();
        assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
    }
}
