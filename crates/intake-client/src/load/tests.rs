#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: the server it starts and the body it decodes are its own"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::*;

#[derive(Default)]
struct Seen {
    uploads: AtomicU64,
    sizes: Mutex<Vec<u64>>,
    types: Mutex<Vec<String>>,
}

/// An ingress stand-in that parses each multipart body and answers 202, or 503 for every third.
async fn start(refuse_every_third: bool) -> (url::Url, Arc<Seen>) {
    async fn upload(
        State((seen, refuse)): State<(Arc<Seen>, bool)>,
        headers: HeaderMap,
        body: axum::body::Body,
    ) -> StatusCode {
        let n = seen.uploads.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(headers.contains_key("x-rh-identity"));
        let ct = headers["content-type"].to_str().unwrap();
        let boundary = multer::parse_boundary(ct).unwrap();
        let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
        while let Some(mut field) = form.next_field().await.unwrap() {
            assert_eq!(field.name(), Some("file"));
            seen.types
                .lock()
                .unwrap()
                .push(field.content_type().unwrap().to_string());
            let mut len = 0;
            while let Some(chunk) = field.chunk().await.unwrap() {
                len += chunk.len() as u64;
            }
            seen.sizes.lock().unwrap().push(len);
        }
        if refuse && n % 3 == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::ACCEPTED
        }
    }
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route("/api/ingress/v1/upload", axum::routing::post(upload))
        .with_state((Arc::clone(&seen), refuse_every_third));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url::Url::parse(&format!("http://{addr}")).unwrap(), seen)
}

fn plan(url: url::Url, size: SizeSpec, stop: Stop) -> LoadPlan {
    LoadPlan {
        url,
        concurrency: 4,
        size,
        payload: PayloadKind::Archive,
        stop,
        services: vec!["advisor".into(), "testareno".into()],
        identity: intake_core::identity::Identity::encode("", "54321"),
        request_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn a_counted_run_sends_exactly_that_many_well_formed_uploads() {
    let (url, seen) = start(false).await;
    let report = run(&plan(
        url,
        SizeSpec::Uniform { min: 10, max: 5000 },
        Stop::Count(40),
    ))
    .await
    .unwrap();
    assert_eq!(seen.uploads.load(Ordering::SeqCst), 40);
    assert_eq!(report.requests, 40);
    assert_eq!(report.accepted, 40);
    assert_eq!(report.by_status, BTreeMap::from([("202".to_owned(), 40)]));
    assert!(report.errors_by_kind.is_empty());
    let sizes = seen.sizes.lock().unwrap().clone();
    assert_eq!(sizes.len(), 40);
    assert!(sizes.iter().all(|s| (10..=5000).contains(s)), "{sizes:?}");
    assert_eq!(report.accepted_bytes, sizes.iter().sum::<u64>());
    let types = seen.types.lock().unwrap().clone();
    assert!(types.contains(&"application/vnd.redhat.advisor.load+tgz".to_owned()));
    assert!(types.contains(&"application/vnd.redhat.testareno.load+tgz".to_owned()));
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);
}

#[tokio::test]
async fn refusals_are_counted_by_status_and_not_as_accepted() {
    let (url, seen) = start(true).await;
    let report = run(&plan(url, SizeSpec::Fixed(1024), Stop::Count(30)))
        .await
        .unwrap();
    assert_eq!(seen.uploads.load(Ordering::SeqCst), 30);
    assert_eq!(report.accepted, 20);
    assert_eq!(report.accepted_bytes, 20 * 1024);
    assert_eq!(
        report.by_status,
        BTreeMap::from([("202".to_owned(), 20), ("503".to_owned(), 10)])
    );
    assert!(seen.sizes.lock().unwrap().iter().all(|s| *s == 1024));
}

#[tokio::test]
async fn a_timed_run_stops_by_itself() {
    let (url, _) = start(false).await;
    let report = run(&plan(
        url,
        SizeSpec::Fixed(100),
        Stop::Duration(Duration::from_millis(300)),
    ))
    .await
    .unwrap();
    assert!(report.accepted > 0);
    assert!(report.elapsed_seconds >= 0.3 && report.elapsed_seconds < 10.0);
}

#[tokio::test]
async fn connection_failures_are_counted_by_kind() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let report = run(&plan(url, SizeSpec::Fixed(10), Stop::Count(5)))
        .await
        .unwrap();
    assert_eq!(report.requests, 5);
    assert_eq!(report.accepted, 0);
    assert_eq!(report.errors_by_kind.get("connect"), Some(&5));
}

#[test]
fn a_fixed_size_archive_payload_is_a_well_formed_gzipped_tar_of_about_that_size() {
    for len in [10 * 1024, 100_000, 1 << 20] {
        let payload = archive_payload(len);
        assert!(payload.len() <= len, "{} > {len}", payload.len());
        assert!(len - payload.len() < 2048, "{} for {len}", payload.len());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(payload.as_ref()));
        let entries: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, "load/payload.bin");
        assert!(!holds_boundary(&payload));
    }
    // Too small for an archive: random bytes of exactly that size.
    assert_eq!(archive_payload(100).len(), 100);
}
