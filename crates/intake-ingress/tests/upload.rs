//! Black-box HTTP tests of `POST /upload` on the real router with the embedded bus and localdisk
//! storage (both real drivers, from the shared harness), plus a fault-injecting bus wrapper.

use crate::harness;

use axum::body::Body;
use harness::{identity, multipart, Ingress, BOUNDARY, TGZ};
use http::Request;
use intake_bus::faults::PublishFault;
use intake_core::Identity;
use intake_storage::Bucket;
use serde_json::Value;
use tower::ServiceExt;

async fn send(h: &Ingress, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let mut req = Request::post("/api/ingress/v1/upload").header(
        "content-type",
        format!("multipart/form-data; boundary={BOUNDARY}"),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let answer = h.call(req.body(Body::from(body)).unwrap()).await;
    (answer.status.as_u16(), answer.json())
}

#[tokio::test]
async fn accepted_upload_answers_202_and_is_kept() {
    let h = harness::start(&[]).await;
    let id = identity();
    let (code, body) = send(
        &h,
        &[
            ("x-rh-identity", &id),
            ("x-rh-insights-request-id", "abc123"),
        ],
        multipart(&[("file", Some(TGZ), b"payload")]),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["request_id"], "abc123");
    assert_eq!(body["upload"]["org_id"], "54321");
    assert_eq!(h.read(Bucket::Quarantine, "abc123").unwrap(), b"payload");
    // The same id again is a conflict; the stored payload is untouched.
    let (code, body) = send(
        &h,
        &[
            ("x-rh-identity", &id),
            ("x-rh-insights-request-id", "abc123"),
        ],
        multipart(&[("file", Some(TGZ), b"other")]),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(h.read(Bucket::Quarantine, "abc123").unwrap(), b"payload");
}

#[tokio::test]
async fn identity_and_request_id_checks() {
    let h = harness::start(&[("INGRESS_DENY_ORG_IDS", "54321")]).await;
    let file = || multipart(&[("file", Some(TGZ), b"x")]);
    assert_eq!(send(&h, &[], file()).await.0, 401);
    assert_eq!(send(&h, &[("x-rh-identity", "%%%")], file()).await.0, 400);
    let (code, body) = send(&h, &[("x-rh-identity", &identity())], file()).await;
    assert_eq!(code, 403);
    assert_eq!(body["status"], 403);
    assert_eq!(body["title"], "Forbidden");
    let ok_org = Identity::encode("1", "777");
    assert_eq!(
        send(
            &h,
            &[
                ("x-rh-identity", &ok_org),
                ("x-rh-insights-request-id", "../x")
            ],
            file()
        )
        .await
        .0,
        400
    );
    let long = "a".repeat(65);
    assert_eq!(
        send(
            &h,
            &[
                ("x-rh-identity", &ok_org),
                ("x-rh-insights-request-id", &long)
            ],
            file()
        )
        .await
        .0,
        400
    );
}

/// Base64 of a raw identity document, so tests can send what `Identity::encode` never would.
fn raw_identity(doc: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(doc)
}

#[tokio::test]
async fn deny_list_sees_the_canonical_org_id() {
    let h = harness::start(&[("INGRESS_DENY_ORG_IDS", "666")]).await;
    let file = || multipart(&[("file", Some(TGZ), b"x")]);
    // Every spelling of org 666 is either refused as malformed (400) or denied (403); none is 202.
    for (doc, want) in [
        (r#"{"identity":{"org_id":"666"}}"#, 403),
        (r#"{"identity":{"org_id":666}}"#, 403),
        (r#"{"identity":{"org_id":" 666"}}"#, 403),
        (
            r#"{"identity":{"org_id":"","internal":{"org_id":666}}}"#,
            403,
        ),
        (r#"{"identity":{"org_id":666.0}}"#, 400),
        (r#"{"identity":{"org_id":6.66e2}}"#, 400),
        (r#"{"identity":{"org_id":"0666"}}"#, 400),
        (
            r#"{"identity":{"org_id":"666"},"identity":{"org_id":"777"}}"#,
            400,
        ),
        (r#"{"identity":{"org_id":"666","org_id":"777"}}"#, 400),
        (
            r#"{"identity":{"org_id":"","internal":{"org_id":"666","org_id":"777"}}}"#,
            400,
        ),
        (r#"{"identity":{"org_id":"777"}}"#, 202),
    ] {
        let (code, body) = send(&h, &[("x-rh-identity", &raw_identity(doc))], file()).await;
        assert_eq!(code, want, "{doc}: {body}");
        if want != 202 {
            assert_eq!(body["status"], want, "{doc}: {body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{body}"
            );
        }
        if want == 400 {
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("x-rh-identity"),
                "{doc}: {body}"
            );
        }
    }
    assert!(
        h.keys(Bucket::Quarantine).len() == 1,
        "only the allowed org's payload is kept"
    );
}

#[tokio::test]
async fn parts_types_and_sizes() {
    let h = harness::start(&[]).await;
    let id = identity();
    let hdr = [("x-rh-identity", id.as_str())];
    // 415 for the spec's examples.
    for ct in [
        "application/vnd.redhat.compliance+tgz",
        "application/vnd.redhat.my_app.x+zip",
        "application/json",
    ] {
        let (code, body) = send(&h, &hdr, multipart(&[("file", Some(ct), b"x")])).await;
        assert_eq!(code, 415, "{ct}: {body}");
    }
    // Exactly the limit passes; one byte more is 413 naming limit and size.
    assert_eq!(
        send(&h, &hdr, multipart(&[("file", Some(TGZ), &[b'a'; 1000])]))
            .await
            .0,
        202
    );
    let (code, body) = send(&h, &hdr, multipart(&[("file", Some(TGZ), &[b'a'; 1001])])).await;
    assert_eq!(code, 413);
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("1000") && msg.contains("1001") && msg.contains("testareno"),
        "{msg}"
    );
    // No file part, two file parts, bad metadata after the file: 400 and nothing kept.
    let before = h.everything_in(Bucket::Quarantine).len();
    assert_eq!(
        send(&h, &hdr, multipart(&[("other", None, b"x")])).await.0,
        400
    );
    assert_eq!(
        send(
            &h,
            &hdr,
            multipart(&[("file", Some(TGZ), b"x"), ("upload", Some(TGZ), b"y")])
        )
        .await
        .0,
        400
    );
    let (code, body) = send(
        &h,
        &hdr,
        multipart(&[("file", Some(TGZ), b"x"), ("metadata", None, b"[1]")]),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(body["message"], "metadata is not a JSON object");
    assert_eq!(h.everything_in(Bucket::Quarantine).len(), before);
}

#[tokio::test]
async fn bus_down_answers_503_and_keeps_nothing() {
    let h = harness::start(&[]).await;
    h.bus_faults.fail_publish(PublishFault::Unavailable);
    let (code, body) = send(
        &h,
        &[("x-rh-identity", &identity())],
        multipart(&[("file", Some(TGZ), b"x")]),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    h.assert_bucket_empty(Bucket::Quarantine);
    h.bus_faults.heal_publish();
    let (code, _) = send(
        &h,
        &[("x-rh-identity", &identity())],
        multipart(&[("file", Some(TGZ), b"x")]),
    )
    .await;
    assert_eq!(code, 202);
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let h = harness::start(&[]).await;
    let r = h
        .router
        .clone()
        .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let r = h
        .router
        .clone()
        .oneshot(
            Request::get("/api/ingress/v1/upload")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(
        r.headers()["allow"].to_str().unwrap().contains("POST"),
        "{:?}",
        r.headers()
    );
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn framework_rejections_answer_json() {
    let h = harness::start(&[]).await;
    // Path segments that are not UTF-8 once decoded, and query strings axum cannot read: axum
    // rejects them before any handler runs; the answer is still the error body.
    for uri in [
        "/api/ingress/v1/track/%FF%FE",
        "/download/%C3%28",
        "/api/ingress/v1/track/abc?verbosity=%FF",
    ] {
        let answer = h
            .call(
                Request::get(uri)
                    .header("x-rh-identity", identity())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let code = answer.status.as_u16();
        assert!((400..500).contains(&code), "{uri}: {code}");
        let body = answer.json();
        assert_eq!(body["status"], code, "{uri}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{uri}: {body}"
        );
    }
}

#[tokio::test]
async fn openapi_paths_are_all_routed() {
    let h = harness::start(&[]).await;
    let doc = intake_ingress::openapi::document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{request_id}", "abc");
            for prefix in intake_ingress::openapi::PREFIXES {
                let p = concrete.replacen(intake_ingress::openapi::PREFIXES[0], prefix, 1);
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&p)
                    .body(Body::empty())
                    .unwrap();
                let code = h
                    .router
                    .clone()
                    .oneshot(req)
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                assert!(
                    code != 404 && code != 405 || p.starts_with("/download"),
                    "{method} {p} answered {code}"
                );
            }
        }
    }
}

/// insights-client's `--test-connection` uploads an empty `test.tar.gz` with the metadata
/// `{"test": "test"}`: 202 as for an upload, but nothing is kept, announced or tracked.
#[tokio::test]
async fn the_clients_connection_test_upload_is_202_and_leaves_nothing() {
    let h = harness::start(&[]).await;
    let advisor = "application/vnd.redhat.advisor.collection+tgz";
    let test_upload = multipart(&[
        ("file", Some(advisor), b""),
        ("metadata", None, br#"{"test": "test"}"#),
    ]);
    let (code, body) = send(
        &h,
        &[
            ("x-rh-identity", &identity()),
            ("x-rh-insights-request-id", "conn-test"),
        ],
        test_upload,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["request_id"], "conn-test");
    assert_eq!(body["upload"]["org_id"], harness::ORG_ID);
    for bucket in Bucket::ALL {
        h.assert_bucket_empty(bucket);
    }

    // Not a connection test: an empty file with other metadata, or bytes with the test metadata.
    // Both are uploads like any other (a validator judges them).
    for (request_id, bytes, metadata) in [
        (
            "empty-real",
            &b""[..],
            r#"{"test": "test", "display_name": "web01"}"#,
        ),
        ("bytes-test", &b"archive"[..], r#"{"test": "test"}"#),
    ] {
        let parts = multipart(&[
            ("file", Some(TGZ), bytes),
            ("metadata", None, metadata.as_bytes()),
        ]);
        let (code, body) = send(
            &h,
            &[
                ("x-rh-identity", &identity()),
                ("x-rh-insights-request-id", request_id),
            ],
            parts,
        )
        .await;
        assert_eq!(code, 202, "{request_id}: {body}");
    }
    assert_eq!(h.keys(Bucket::Quarantine), vec!["bytes-test", "empty-real"]);
    let announced: Vec<Value> = h
        .messages(&h.service_topic())
        .await
        .iter()
        .map(|m| serde_json::from_slice(&m.value).unwrap())
        .collect();
    let ids: Vec<&str> = announced
        .iter()
        .filter_map(|a| a["request_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["empty-real", "bytes-test"]);
    // The real uploads' statuses arrive; the connection test has none.
    let statuses = intake_testkit::poll::until(
        std::time::Duration::from_secs(10),
        "the statuses of both uploads",
        || async {
            let s = h.statuses().await;
            (s.len() >= 4).then_some(s)
        },
    )
    .await;
    assert!(
        statuses.iter().all(|s| s.request_id != "conn-test"),
        "{statuses:?}"
    );
    let advisor_topic = h.bus_config.service_topic("advisor");
    assert!(h.messages(&advisor_topic).await.is_empty());
}
