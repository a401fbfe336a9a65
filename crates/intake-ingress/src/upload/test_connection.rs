//! Check 4: test-connection requests (ingress.md, "Test connection"). They are answered 200 and nothing
//! is stored, published or tracked. insights-client's `--test-connection` instead uploads an empty
//! file part with the metadata `{"test": "test"}`; [`is_client_test_upload`] recognises it once the
//! parts are read, and it is answered 202 with nothing kept, published or tracked.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap};
use regex::Regex;

/// The most body read to recognise a test request.
pub const MAX_TEST_BODY: usize = 1024;

static JSON_TEST: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(
        clippy::expect_used,
        reason = "a constant pattern, exercised by the tests"
    )]
    Regex::new(r#"^\s*\{\s*"test"\s*:\s*"test"\s*\}\s*$"#).expect("valid regex")
});

/// What check 4 found.
pub enum Probe {
    /// A test-connection request.
    Test,
    /// Not a test; the body is untouched and still to be read.
    NotTest(axum::body::Body),
    /// Not a test, and the (small, non-multipart) body was read to find out.
    Consumed,
    /// The small body did not arrive within the body idle timeout (it is at most 1 KiB, so it
    /// gets that long in all, not per byte).
    Stalled,
}

fn query_says_test(query: Option<&str>) -> bool {
    query
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "test" && v == "test"))
        .unwrap_or(false)
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// What reading a small body gave.
enum Small {
    Body(Bytes),
    /// Longer than `MAX_TEST_BODY`, or broken: it cannot be a test.
    NotTest,
    Stalled,
}

/// Reads at most `MAX_TEST_BODY + 1` bytes, all within `within`.
async fn read_small(body: axum::body::Body, within: Duration) -> Small {
    let deadline = tokio::time::Instant::now() + within;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Small::Stalled,
            Ok(None) => return Small::Body(Bytes::from(buf)),
            Ok(Some(Err(_))) => return Small::NotTest,
            Ok(Some(Ok(chunk))) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > MAX_TEST_BODY {
                    return Small::NotTest;
                }
            }
        }
    }
}

/// Decides whether the request is a test connection; a small body gets `idle` to arrive.
pub async fn probe(
    query: Option<&str>,
    headers: &HeaderMap,
    body: axum::body::Body,
    idle: Duration,
) -> Probe {
    if query_says_test(query) {
        return Probe::Test;
    }
    match media_type(headers).as_str() {
        "application/x-www-form-urlencoded" => match read_small(body, idle).await {
            Small::Stalled => Probe::Stalled,
            Small::Body(b)
                if url::form_urlencoded::parse(&b).any(|(k, v)| k == "test" && v == "test") =>
            {
                Probe::Test
            }
            _ => Probe::Consumed,
        },
        "application/json" => match read_small(body, idle).await {
            Small::Stalled => Probe::Stalled,
            Small::Body(b)
                if std::str::from_utf8(&b)
                    .map(|t| JSON_TEST.is_match(t))
                    .unwrap_or(false) =>
            {
                Probe::Test
            }
            _ => Probe::Consumed,
        },
        _ => Probe::NotTest(body),
    }
}

/// insights-client's connection test: an empty file part and the metadata exactly
/// `{"test": "test"}`.
pub fn is_client_test_upload(
    size: u64,
    metadata: Option<&serde_json::Map<String, serde_json::Value>>,
) -> bool {
    size == 0
        && metadata
            .is_some_and(|m| m.len() == 1 && m.get("test").and_then(|v| v.as_str()) == Some("test"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn a_stalled_small_body_is_abandoned() {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let body = axum::body::Body::from_stream(rx);
        let started = std::time::Instant::now();
        let probe = probe(
            None,
            &headers("application/json"),
            body,
            Duration::from_millis(200),
        )
        .await;
        assert!(matches!(probe, Probe::Stalled));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(tx);
    }

    #[tokio::test]
    async fn recognises_the_three_forms() {
        assert!(matches!(
            probe(Some("a=b&test=test"), &HeaderMap::new(), "".into(), SECOND).await,
            Probe::Test
        ));
        assert!(matches!(
            probe(
                None,
                &headers("application/x-www-form-urlencoded"),
                "x=1&test=test".into(),
                SECOND
            )
            .await,
            Probe::Test
        ));
        assert!(matches!(
            probe(
                None,
                &headers("application/json; charset=utf-8"),
                " { \"test\" : \"test\" }\n".into(),
                SECOND
            )
            .await,
            Probe::Test
        ));
        assert!(matches!(
            probe(
                None,
                &headers("application/json"),
                "{\"test\":\"nope\"}".into(),
                SECOND
            )
            .await,
            Probe::Consumed
        ));
        let big = format!("{{\"test\":\"test\"}}{}", " ".repeat(2000));
        assert!(matches!(
            probe(None, &headers("application/json"), big.into(), SECOND).await,
            Probe::Consumed
        ));
        assert!(matches!(
            probe(
                None,
                &headers("multipart/form-data; boundary=x"),
                "".into(),
                SECOND
            )
            .await,
            Probe::NotTest(_)
        ));
    }

    #[test]
    fn the_client_test_upload_is_empty_with_test_metadata_only() {
        let test = serde_json::json!({"test": "test"});
        let test = test.as_object();
        assert!(is_client_test_upload(0, test));
        assert!(!is_client_test_upload(1, test));
        assert!(!is_client_test_upload(0, None));
        for other in [
            serde_json::json!({"test": "nope"}),
            serde_json::json!({"test": "test", "display_name": "web01"}),
            serde_json::json!({}),
        ] {
            assert!(!is_client_test_upload(0, other.as_object()), "{other}");
        }
    }
}
