//! The bad-input corpus: every request here is wrong in one way, and each gets exactly the status
//! the spec names and the shared JSON error body (status, title, a message naming what failed).
//! Nothing refused here leaves an object behind.

use crate::harness;

use axum::body::Body;
use base64::Engine;
use harness::{identity, multipart, part_head, Ingress, BOUNDARY, TGZ};
use http::{Method, Request};
use intake_storage::Bucket;

const UPLOAD: &str = "/api/ingress/v1/upload";

/// One bad request and what it must get.
struct Case {
    name: String,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    /// A word the message must contain (case-insensitive); empty for any non-empty message.
    mentions: &'static str,
}

fn b64(doc: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(doc)
}

fn multipart_ct() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn upload(
    name: String,
    headers: Vec<(&str, String)>,
    body: Vec<u8>,
    status: u16,
    mentions: &'static str,
) -> Case {
    let mut all: Vec<(String, String)> = vec![("content-type".into(), multipart_ct())];
    for (k, v) in headers {
        all.retain(|(n, _)| n != k);
        all.push((k.to_owned(), v));
    }
    Case {
        name,
        method: Method::POST,
        uri: UPLOAD.into(),
        headers: all,
        body,
        status,
        mentions,
    }
}

fn file() -> Vec<u8> {
    multipart(&[("file", Some(TGZ), b"payload")])
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let id = || ("x-rh-identity", identity());

    // Identity: missing, malformed, duplicate keys, org_id spellings, deny list.
    out.push(upload(
        "no identity".into(),
        vec![],
        file(),
        401,
        "x-rh-identity",
    ));
    for raw in ["%%%", "not base64!", "====", "eyJ", "!!"] {
        out.push(upload(
            format!("identity {raw:?}"),
            vec![("x-rh-identity", raw.to_owned())],
            file(),
            400,
            "x-rh-identity",
        ));
    }
    for doc in [
        "not json",
        "[1]",
        "1",
        "null",
        "\"s\"",
        "{}",
        r#"{"identity":"x"}"#,
        r#"{"identity":[]}"#,
        r#"{"identity":null}"#,
        r#"{"identity":{}}"#,
        r#"{"identity":{"type":"User"}}"#,
        r#"{"identity":{"org_id":""}}"#,
        r#"{"identity":{"org_id":"1"}"#,
        r#"{"identity":{"org_id":"1"}} x"#,
        r#"{"identity":{"org_id":"1"},"identity":{"org_id":"2"}}"#,
        r#"{"identity":{"org_id":"1","org_id":"2"}}"#,
        r#"{"identity":{"org_id":"","internal":{"org_id":"1","org_id":"2"}}}"#,
        r#"{"identity":{"org_id":"1","type":"User","type":"Associate"}}"#,
        r#"{"identity":{"org_id":"1","x":{"a":1,"a":2}}}"#,
        r#"{"a":1,"a":2,"identity":{"org_id":"1"}}"#,
        r#"{"identity":{"org_id":"1"},"identit\u0079":{"org_id":"2"}}"#,
        r#"{"identity":{"org_id":666.0}}"#,
        r#"{"identity":{"org_id":6.66e2}}"#,
        r#"{"identity":{"org_id":666e0}}"#,
        r#"{"identity":{"org_id":-666}}"#,
        r#"{"identity":{"org_id":1.5}}"#,
        r#"{"identity":{"org_id":18446744073709551616}}"#,
        r#"{"identity":{"org_id":"0666"}}"#,
        r#"{"identity":{"org_id":"666.0"}}"#,
        r#"{"identity":{"org_id":"+666"}}"#,
        r#"{"identity":{"org_id":"6 66"}}"#,
        r#"{"identity":{"org_id":"abc"}}"#,
        r#"{"identity":{"org_id":true}}"#,
        r#"{"identity":{"org_id":["666"]}}"#,
        r#"{"identity":{"org_id":{"id":"666"}}}"#,
        r#"{"identity":{"internal":{"org_id":666.5}}}"#,
    ] {
        out.push(upload(
            format!("identity document {doc}"),
            vec![("x-rh-identity", b64(doc))],
            file(),
            400,
            "x-rh-identity",
        ));
    }
    out.push(upload(
        "identity longer than 32 KiB".into(),
        vec![("x-rh-identity", "A".repeat(33 * 1024))],
        file(),
        400,
        "x-rh-identity",
    ));
    for doc in [
        r#"{"identity":{"org_id":"666"}}"#,
        r#"{"identity":{"org_id":666}}"#,
        r#"{"identity":{"org_id":" 666 "}}"#,
        r#"{"identity":{"org_id":"","internal":{"org_id":666}}}"#,
        r#"{"identity":{"org_id":null,"internal":{"org_id":"666"}}}"#,
    ] {
        out.push(upload(
            format!("denied org {doc}"),
            vec![("x-rh-identity", b64(doc))],
            file(),
            403,
            "contact support",
        ));
    }

    // Request ids.
    for rid in [
        "../x",
        "a/b",
        "a b",
        "a.b",
        "a_b",
        "%41",
        "ä",
        "x".repeat(65).as_str(),
        "a+b",
        "a:b",
        "a;b",
        "a=b",
        "*",
        "a\\b",
    ] {
        out.push(upload(
            format!("request id {rid:?}"),
            vec![id(), ("x-rh-insights-request-id", rid.to_owned())],
            file(),
            400,
            "x-rh-insights-request-id",
        ));
    }

    // Content types of the file part.
    for ct in [
        "text/plain",
        "application/json",
        "application/octet-stream",
        "application/x-tar",
        "text/html",
        "application/vnd.redhat.nosuchservice.x+tgz",
        "application/vnd.redhat.",
        "application/vnd.redhat.advisor",
        "application/vnd.redhat..x+tgz",
        "image/png",
        "application/vnd.redhat.testareno",
        "application/vnd.redhat.unknown.collection+tgz",
        "application/vnd.redhat.validation.x+tgz",
        "garbage",
        "application/vnd.example.advisor.x+tgz",
    ] {
        out.push(upload(
            format!("file content type {ct}"),
            vec![id()],
            multipart(&[("file", Some(ct), b"x")]),
            415,
            "",
        ));
    }

    // The body is not a multipart form, or not a sound one.
    for ct in [
        "text/plain",
        "application/octet-stream",
        "multipart/form-data",
        "multipart/mixed",
        "multipart/form-data; boundary=",
        "image/png",
    ] {
        out.push(upload(
            format!("body content type {ct}"),
            vec![id(), ("content-type", ct.to_owned())],
            file(),
            400,
            "multipart",
        ));
    }
    out.push(upload(
        "no parts".into(),
        vec![id()],
        format!("--{BOUNDARY}--\r\n").into_bytes(),
        400,
        "file",
    ));
    out.push(upload("empty body".into(), vec![id()], Vec::new(), 400, ""));
    out.push(upload(
        "only a metadata part".into(),
        vec![id()],
        multipart(&[("metadata", None, b"{}")]),
        400,
        "file",
    ));
    out.push(upload(
        "wrongly named part".into(),
        vec![id()],
        multipart(&[("payload", Some(TGZ), b"x")]),
        400,
        "file",
    ));
    out.push(upload(
        "two file parts".into(),
        vec![id()],
        multipart(&[("file", Some(TGZ), b"x"), ("upload", Some(TGZ), b"y")]),
        400,
        "file",
    ));
    out.push(upload(
        "two file parts, same name".into(),
        vec![id()],
        multipart(&[("file", Some(TGZ), b"x"), ("file", Some(TGZ), b"y")]),
        400,
        "file",
    ));
    let many: Vec<(&str, Option<&str>, &[u8])> =
        (0..17).map(|_| ("extra", None, &b"x"[..])).collect();
    out.push(upload(
        "17 parts".into(),
        vec![id()],
        multipart(&many),
        400,
        "parts",
    ));
    for meta in [
        "[]", "1", "\"s\"", "null", "true", "{", "{\"a\":}", "not json",
    ] {
        out.push(upload(
            format!("metadata {meta}"),
            vec![id()],
            multipart(&[
                ("metadata", None, meta.as_bytes()),
                ("file", Some(TGZ), b"x"),
            ]),
            400,
            "metadata",
        ));
    }
    let big_meta = format!("{{\"a\":\"{}\"}}", "x".repeat(70 * 1024));
    out.push(upload(
        "metadata past its limit".into(),
        vec![id()],
        multipart(&[
            ("metadata", None, big_meta.as_bytes()),
            ("file", Some(TGZ), b"x"),
        ]),
        413,
        "metadata",
    ));
    out.push(upload(
        "an ignored part over 64 KiB".into(),
        vec![id()],
        multipart(&[
            ("extra", None, &vec![b'x'; 70 * 1024]),
            ("file", Some(TGZ), b"x"),
        ]),
        413,
        "extra",
    ));
    out.push(upload(
        "file part past the limit".into(),
        vec![id()],
        multipart(&[("file", Some(TGZ), &vec![b'x'; 2000])]),
        413,
        "limit",
    ));
    out.push(upload(
        "declared length past the ceiling".into(),
        vec![id(), ("content-length", "99999999999".into())],
        file(),
        413,
        "exceeds",
    ));
    let mut preamble = vec![b'p'; 8 * 1024];
    preamble.extend_from_slice(b"\r\n");
    preamble.extend(file());
    out.push(upload(
        "long preamble".into(),
        vec![id()],
        preamble,
        400,
        "preamble",
    ));
    let mut long_head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\nX-Pad: {}\r\n",
        "a".repeat(8 * 1024)
    )
    .into_bytes();
    long_head.extend_from_slice(
        format!("Content-Type: {TGZ}\r\n\r\nx\r\n--{BOUNDARY}--\r\n").as_bytes(),
    );
    out.push(upload(
        "long part headers".into(),
        vec![id()],
        long_head,
        400,
        "part headers",
    ));
    let mut truncated = part_head("file", Some(TGZ));
    truncated.extend_from_slice(b"payload with no closing boundary");
    out.push(upload(
        "no closing boundary".into(),
        vec![id()],
        truncated,
        400,
        "multipart",
    ));
    out.push(upload(
        "garbage instead of a boundary".into(),
        vec![id()],
        b"--other\r\n\r\nx\r\n--other--\r\n".to_vec(),
        400,
        "",
    ));

    // Unknown paths and methods.
    for path in [
        "/",
        "/nope",
        "/api",
        "/api/ingress",
        "/api/ingress/v1",
        "/api/ingress/v2/upload",
        "/api/ingress/v1/uploads",
        "/api/ingress/v1/upload/x",
        "/api/ingress/v1/track",
        "/api/ingress/v1/track/",
        "/download",
        "/download/",
        "/metrics/x",
        "/livez/x",
        "/api/ingress/v1/../v1/version",
        "/%2e%2e/etc/passwd",
        "/api/ingress/v1/version/x",
    ] {
        out.push(Case {
            name: format!("GET {path}"),
            method: Method::GET,
            uri: path.into(),
            headers: vec![],
            body: vec![],
            status: 404,
            mentions: "",
        });
    }
    for (method, path) in [
        (Method::GET, UPLOAD),
        (Method::PUT, UPLOAD),
        (Method::DELETE, UPLOAD),
        (Method::PATCH, UPLOAD),
        (Method::POST, "/api/ingress/v1/version"),
        (Method::DELETE, "/api/ingress/v1/version"),
        (Method::POST, "/api/ingress/v1/openapi.json"),
        (Method::POST, "/api/ingress/v1/track/abc"),
        (Method::PUT, "/api/ingress/v1/track/abc"),
        (Method::POST, "/livez"),
        (Method::POST, "/readyz"),
        (Method::POST, "/metrics"),
        (Method::DELETE, "/download/abc"),
        (Method::PUT, "/api/ingress/v1/openapi.json"),
    ] {
        out.push(Case {
            name: format!("{method} {path}"),
            method,
            uri: path.into(),
            headers: vec![],
            body: vec![],
            status: 405,
            mentions: "allowed",
        });
    }

    // Track: bad ids and verbosities, framework rejections.
    for rid in [
        "..",
        "a.b",
        "a_b",
        "a%20b",
        "%FF",
        "x".repeat(65).as_str(),
        "%C3%28",
        "a%2Fb",
    ] {
        out.push(Case {
            name: format!("track {rid}"),
            method: Method::GET,
            uri: format!("/api/ingress/v1/track/{rid}"),
            headers: vec![("x-rh-identity".into(), identity())],
            body: vec![],
            status: 400,
            mentions: "",
        });
    }
    for v in ["3", "-1", "x", "01", "1.0", "%FF", "true", ""] {
        out.push(Case {
            name: format!("track verbosity {v:?}"),
            method: Method::GET,
            uri: format!("/api/ingress/v1/track/abc?verbosity={v}"),
            headers: vec![("x-rh-identity".into(), identity())],
            body: vec![],
            status: 400,
            mentions: "",
        });
    }
    out.push(Case {
        name: "track without identity".into(),
        method: Method::GET,
        uri: "/api/ingress/v1/track/abc".into(),
        headers: vec![],
        body: vec![],
        status: 401,
        mentions: "x-rh-identity",
    });
    out.push(Case {
        name: "track with a bad identity".into(),
        method: Method::GET,
        uri: "/api/ingress/v1/track/abc".into(),
        headers: vec![(
            "x-rh-identity".into(),
            b64(r#"{"identity":{"org_id":1.5}}"#),
        )],
        body: vec![],
        status: 400,
        mentions: "x-rh-identity",
    });

    // Downloads without a valid signature.
    for q in [
        "",
        "?expires=1&signature=x",
        "?expires=99999999999&signature=00",
        "?signature=abc",
        "?expires=x&signature=y",
    ] {
        out.push(Case {
            name: format!("download {q:?}"),
            method: Method::GET,
            uri: format!("/download/abc{q}"),
            headers: vec![],
            body: vec![],
            status: 403,
            mentions: "",
        });
    }
    out
}

async fn run(h: &Ingress, case: &Case) -> (u16, serde_json::Value, String) {
    let mut req = Request::builder()
        .method(case.method.clone())
        .uri(&case.uri);
    for (k, v) in &case.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let answer = h
        .call(req.body(Body::from(case.body.clone())).unwrap())
        .await;
    let ct = answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (answer.status.as_u16(), answer.json(), ct)
}

#[tokio::test]
async fn every_bad_input_gets_its_status_and_the_error_body() {
    let h = harness::start(&[
        ("INGRESS_DENY_ORG_IDS", "666"),
        ("INGRESS_MAX_PREAMBLE_BYTES", "4096"),
        ("INGRESS_MAX_PART_HEADER_BYTES", "4096"),
        ("INGRESS_MAX_METADATA_BYTES", "65536"),
    ])
    .await;
    let cases = cases();
    println!("{} bad-input cases", cases.len());
    assert!(cases.len() >= 150, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (status, body, ct) = run(&h, case).await;
        let message = body["message"].as_str().unwrap_or("").to_ascii_lowercase();
        let ok = status == case.status
            && ct.starts_with("application/json")
            && body["status"] == case.status
            && body["title"].as_str().is_some_and(|t| !t.is_empty())
            && !message.is_empty()
            && message.contains(&case.mentions.to_ascii_lowercase());
        if !ok {
            failures.push(format!(
                "{}: want {} mentioning {:?}, got {status} {ct} {body}",
                case.name, case.status, case.mentions
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(
        h.keys(Bucket::Quarantine).is_empty(),
        "a refused upload left an object"
    );
}
