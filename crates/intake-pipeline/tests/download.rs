//! The http downloader against a real HTTP server on loopback (spec pipeline.md §5).

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{start_server, Reply};
use intake_pipeline::download::{Downloader, Fetch};
use intake_pipeline::error::Class;

fn downloader(tmp: &Path, extra: &str) -> Downloader {
    let yaml = format!(
        "service:\n  downloader:\n    tmp_dir: {}\n    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z0-9-]+']\n    max_archive_size: 64KiB\n    read_timeout: 300ms\n    backoff: 10ms\n    max_backoff: 50ms\n{extra}  publisher: {{format: insights}}\n",
        tmp.display()
    );
    let config =
        intake_pipeline::load_config_str(&yaml, Path::new("."), &Default::default()).unwrap();
    Downloader::new(&config.downloader, None).unwrap()
}

async fn fetch(
    d: &Downloader,
    url: &str,
    size: Option<u64>,
    dest: &Path,
) -> Result<u64, intake_pipeline::StageError> {
    d.fetch(
        &Fetch {
            url,
            request_id: None,
            declared_size: size,
        },
        dest,
    )
    .await
}

#[tokio::test]
async fn downloads_stream_to_the_file() {
    let (server, addr) = start_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(tmp.path(), "");
    let body = common::cluster_archive(10_000);
    server.route("ok", Reply::Chunked(body.clone()));
    let dest = tmp.path().join("a");
    let n = fetch(&d, &format!("http://{addr}/archives/ok"), None, &dest)
        .await
        .unwrap();
    assert_eq!(n, body.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[tokio::test]
async fn oversize_bodies_are_refused_with_and_without_content_length() {
    let (server, addr) = start_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(tmp.path(), "");
    let big = vec![7u8; 65 * 1024 + 1];
    server.route("sized", Reply::Bytes(big.clone()));
    server.route("chunked", Reply::Chunked(big));
    for name in ["sized", "chunked"] {
        let e = fetch(
            &d,
            &format!("http://{addr}/archives/{name}"),
            None,
            &tmp.path().join(name),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (e.reason, e.class),
            ("too_large", Class::Permanent),
            "{name}"
        );
    }
    // The message's size is checked before any request.
    let e = fetch(
        &d,
        &format!("http://{addr}/archives/other"),
        Some(1 << 20),
        &tmp.path().join("x"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason, "too_large");
    assert_eq!(server.hits("other"), 0);
    server.route("empty", Reply::Bytes(Vec::new()));
    let e = fetch(
        &d,
        &format!("http://{addr}/archives/empty"),
        None,
        &tmp.path().join("e"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason, "empty_archive");
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed_and_4xx_are_not() {
    let (server, addr) = start_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(tmp.path(), "");
    server.route(
        "flaky",
        Reply::FailThen(vec![503, 500], b"archive".to_vec()),
    );
    let n = fetch(
        &d,
        &format!("http://{addr}/archives/flaky"),
        None,
        &tmp.path().join("f"),
    )
    .await
    .unwrap();
    assert_eq!(n, 7);
    assert_eq!(server.hits("flaky"), 3);
    server.route("expired", Reply::Status(403));
    let e = fetch(
        &d,
        &format!("http://{addr}/archives/expired"),
        None,
        &tmp.path().join("g"),
    )
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.class), ("http_rejected", Class::Permanent));
    assert!(e.detail.contains("403"));
    assert_eq!(server.hits("expired"), 1);
    server.route("down", Reply::Status(502));
    let e = fetch(
        &d,
        &format!("http://{addr}/archives/down"),
        None,
        &tmp.path().join("h"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.reason, e.class, e.attempts),
        ("http_unavailable", Class::Transient, 4)
    );
    assert_eq!(server.hits("down"), 4);
}

/// A link whose payload is gone answers an error document; whatever its status, the body is never
/// taken for an archive.
#[tokio::test]
async fn error_documents_are_never_archives() {
    let (server, addr) = start_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(tmp.path(), "");
    let json = br#"{"status": 404, "title": "Not Found", "message": "gone"}"#.to_vec();
    let xml = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>".to_vec();
    let cases = [
        (
            "json-404",
            Reply::Typed(404, "application/json", json.clone()),
            "404",
        ),
        (
            "json-200",
            Reply::Typed(200, "application/json", json),
            "application/json",
        ),
        (
            "xml-200",
            Reply::Typed(200, "application/xml; charset=utf-8", xml.clone()),
            "application/xml",
        ),
        (
            "problem-200",
            Reply::Typed(200, "application/problem+json", b"{}".to_vec()),
            "application/problem+json",
        ),
        (
            "html-200",
            Reply::Typed(200, "text/html", b"<html></html>".to_vec()),
            "text/html",
        ),
    ];
    for (name, reply, detail) in cases {
        server.route(name, reply);
        let dest = tmp.path().join(name);
        let e = fetch(&d, &format!("http://{addr}/archives/{name}"), None, &dest)
            .await
            .unwrap_err();
        assert_eq!(
            (e.reason, e.class),
            ("http_rejected", Class::Permanent),
            "{name}"
        );
        assert!(e.detail.contains(detail), "{name}: {}", e.detail);
        assert!(!dest.exists(), "{name}: nothing is written");
        assert_eq!(server.hits(name), 1, "{name}: not retried");
    }
    // Archives under their own types still download.
    let body = common::cluster_archive(1_000);
    for (name, content_type) in [
        ("tgz", "application/vnd.redhat.openshift.periodic+tar"),
        ("octets", "application/octet-stream"),
        ("gzip", "application/gzip"),
    ] {
        server.route(name, Reply::Typed(200, content_type, body.clone()));
        let n = fetch(
            &d,
            &format!("http://{addr}/archives/{name}"),
            None,
            &tmp.path().join(name),
        )
        .await
        .unwrap();
        assert_eq!(n, body.len() as u64, "{name}");
    }
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let (server, addr) = start_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(tmp.path(), "    retries: 0\n");
    server.route("slow", Reply::Stall);
    let started = Instant::now();
    let e = fetch(
        &d,
        &format!("http://{addr}/archives/slow"),
        None,
        &tmp.path().join("s"),
    )
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.class), ("timeout", Class::Transient));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn disallowed_urls_are_refused_without_a_request() {
    let (server, addr) = start_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(tmp.path(), "");
    server.route("ok", Reply::Bytes(b"x".to_vec()));
    for url in [
        format!("http://localhost:{}/archives/ok", addr.port()),
        format!("http://{addr}/archives/ok?extra=1"),
        format!("http://user:pw@{addr}/archives/ok"),
        format!("ftp://{addr}/archives/ok"),
        "archives/ok".to_owned(),
    ] {
        let e = fetch(&d, &url, None, &tmp.path().join("n"))
            .await
            .unwrap_err();
        assert_eq!(e.reason, "url_not_allowed", "{url}");
        assert!(
            !e.detail.contains("archives"),
            "the detail must not carry the URL path: {}",
            e.detail
        );
    }
    assert_eq!(server.hits("ok"), 0);
}

#[tokio::test]
async fn a_refused_connection_keeps_the_http_error_without_its_url() {
    use std::error::Error as _;

    // A port nothing listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = downloader(tmp.path(), "    retries: 0\n");
    let e = fetch(
        &d,
        &format!("http://{addr}/archives/secret-path"),
        None,
        &tmp.path().join("r"),
    )
    .await
    .unwrap_err();
    assert_eq!((e.reason, e.class), ("connection", Class::Transient));
    assert_eq!(e.detail, "cannot connect");
    let http = e.source().and_then(|s| s.downcast_ref::<reqwest::Error>());
    let http = http.unwrap_or_else(|| panic!("a reqwest::Error under {e:?}"));
    assert!(http.is_connect(), "{http:?}");
    assert_eq!(http.url(), None, "the URL is never kept for logs");
    // What a log line shows: the chain down to the refusal, without the URL.
    let chain = intake_pipeline::Chain(&e).to_string();
    assert!(!chain.contains("secret-path"), "{chain}");
    let refused = std::iter::successors(e.source(), |s| (*s).source())
        .filter_map(|s| s.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    assert!(refused, "{chain}");
}
