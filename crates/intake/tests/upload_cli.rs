//! Black-box: `intake upload` through the real binary, against `intake serve` for the real path and
//! against a small stand-in ingress for what a healthy one never does (503s, chosen verdicts).

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

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::process::free_port;
use common::serve::{ready, start};
use serde_json::{json, Value};

const IDENTITY: &str = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";

// ---- the real thing -------------------------------------------------------------------------

/// Runs `intake upload <args>` and returns (exit code, stdout, stderr).
async fn intake_upload(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("upload")
        .args(args)
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample(dir: &std::path::Path) -> String {
    let archive = intake_testkit::archives::gzip(&intake_testkit::archives::sample_tar());
    intake_testkit::archives::write(dir, "archive.tar.gz", &archive)
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_to_serve_print_the_id_wait_for_success_and_show_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    let serve = start(dir.path());
    ready(&reqwest::Client::new(), &serve).await;
    let url = serve.ingress.as_str();

    // The id is generated here, printed alone on stdout, and the payload is validated.
    let (code, stdout, stderr) = intake_upload(&[
        &file,
        "--url",
        url,
        "--service",
        "testareno",
        "--org-id",
        "54321",
        "--account",
        "12345",
        "--metadata",
        r#"{"display_name": "box"}"#,
        "--wait=60s",
        "--poll-interval",
        "100ms",
    ])
    .await;
    assert_eq!(code, 0, "stdout: {stdout} stderr: {stderr}");
    let id = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{stdout}"
    );
    assert!(
        dir.path()
            .join("data/storage/insights-upload-perm-test")
            .join(id)
            .exists(),
        "the payload is in perm once --wait says success"
    );

    // --json prints the 202 body; a chosen request id is used.
    let (code, stdout, stderr) = intake_upload(&[
        &file,
        "--url",
        url,
        "--content-type",
        "application/vnd.redhat.testareno.something+tgz",
        "--identity",
        IDENTITY,
        "--request-id",
        "cli-chosen-1",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let body: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        body,
        json!({"request_id": "cli-chosen-1", "upload": {"account_number": "12345", "org_id": "54321"}})
    );

    // The same id again: ingress's 409 is shown, with its message, and the exit code is 3.
    let (code, _, stderr) = intake_upload(&[
        &file,
        "--url",
        url,
        "--service",
        "testareno",
        "--identity",
        IDENTITY,
        "--request-id",
        "cli-chosen-1",
    ])
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("409") && stderr.contains("cli-chosen-1"),
        "{stderr}"
    );

    // A service ingress does not take: 415 naming it.
    let (code, _, stderr) = intake_upload(&[
        &file,
        "--url",
        url,
        "--service",
        "not-listed",
        "--identity",
        IDENTITY,
    ])
    .await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("415") && stderr.contains("not-listed"),
        "{stderr}"
    );

    // No identity: 401.
    let (code, _, stderr) = intake_upload(&[&file, "--url", url, "--service", "testareno"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("x-rh-identity"),
        "{stderr}"
    );
}

// ---- a stand-in ingress -----------------------------------------------------------------------

#[derive(Default)]
struct Mock {
    /// Upload attempts seen.
    attempts: AtomicUsize,
    /// Answer 503 with `Retry-After: 1` to this many attempts first.
    unavailable_for: usize,
    /// Answer 409 after the first attempt, as ingress does when that attempt was stored but its
    /// answer never reached the client.
    conflict_after_first: bool,
    /// Take the body, then never answer.
    hang: bool,
    /// What /track answers, in turn (the last one repeats), as `service:status` or an ingress
    /// status; empty means 404.
    track: Vec<&'static str>,
    track_calls: AtomicUsize,
    /// (request id header, Content-Length header, body) of each attempt.
    bodies: Mutex<Vec<(String, String, Vec<u8>)>>,
}

async fn mock_upload(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let n = mock.attempts.fetch_add(1, Ordering::SeqCst) + 1;
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let id = header("x-rh-insights-request-id");
    mock.bodies
        .lock()
        .unwrap()
        .push((id.clone(), header("content-length"), body.to_vec()));
    if mock.hang {
        std::future::pending::<()>().await;
    }
    if mock.conflict_after_first && n > 1 {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({"status": 409, "title": "Conflict",
                "message": format!("request id {id} is already taken"), "request_id": id})),
        )
            .into_response();
    }
    if n <= mock.unavailable_for {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            axum::Json(json!({"status": 503, "title": "Service Unavailable",
                "message": "too many uploads in flight", "request_id": id})),
        )
            .into_response();
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"request_id": id, "upload": {"org_id": "54321"}})),
    )
        .into_response()
}

async fn mock_track(
    State(mock): State<Arc<Mock>>,
    Path(_id): Path<String>,
) -> axum::response::Response {
    let n = mock.track_calls.fetch_add(1, Ordering::SeqCst);
    // The first call finds nothing yet, as when the tracker has not caught up.
    let Some(status) = (n > 0)
        .then(|| mock.track.get(n - 1).or(mock.track.last()))
        .flatten()
    else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"status": 404}))).into_response();
    };
    // `service:status`, or a status of ingress's.
    let (service, status) = status.split_once(':').unwrap_or(("ingress", status));
    axum::Json(
        json!({"status": status, "status_msg": format!("{status} by the mock"),
        "date": "2024-05-02T09:30:12.481220Z", "service": service, "inventory_id": ""}),
    )
    .into_response()
}

async fn mock(mock: Mock) -> (String, Arc<Mock>) {
    let mock = Arc::new(mock);
    let app = axum::Router::new()
        .route("/api/ingress/v1/upload", axum::routing::post(mock_upload))
        .route("/api/ingress/v1/track/{id}", axum::routing::get(mock_track))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::clone(&mock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), mock)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_is_retried_after_its_retry_after_under_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    let (url, state) = mock(Mock {
        unavailable_for: 2,
        ..Mock::default()
    })
    .await;
    let started = Instant::now();
    let (code, stdout, stderr) = intake_upload(&[
        &file,
        "--url",
        &url,
        "--service",
        "advisor",
        "--org-id",
        "1",
        "--request-id",
        "retry-1",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "retry-1\n");
    assert_eq!(state.attempts.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "two Retry-After: 1 waits"
    );
    let bodies = state.bodies.lock().unwrap();
    let expected = std::fs::read(&file).unwrap();
    for (id, length, body) in bodies.iter() {
        assert_eq!(id, "retry-1");
        assert_eq!(length, &body.len().to_string(), "Content-Length is exact");
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("name=\"file\"; filename=\"archive.tar.gz\""));
        assert!(text.contains("Content-Type: application/vnd.redhat.advisor.payload+tgz"));
        assert!(body
            .windows(expected.len())
            .any(|w| w == expected.as_slice()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_are_bounded_by_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    let (url, state) = mock(Mock {
        unavailable_for: usize::MAX,
        ..Mock::default()
    })
    .await;
    let (code, stdout, stderr) = intake_upload(&[
        &file,
        "--url",
        &url,
        "--service",
        "advisor",
        "--max-attempts",
        "2",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(state.attempts.load(Ordering::SeqCst), 2);
    assert!(stderr.contains("too many uploads in flight"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_ingress_is_retried_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, _, stderr) = intake_upload(&[
        &file,
        "--url",
        &url,
        "--service",
        "advisor",
        "--max-attempts",
        "2",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("2 attempts"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_exit_codes_follow_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    for (track, expected, told) in [
        (vec!["processing", "success"], 0, "success"),
        // A validator's success comes before ingress has moved the payload: not the end yet.
        (
            vec!["validator:processing", "validator:success"],
            6,
            "no verdict",
        ),
        (vec!["received", "rejected"], 4, "rejected"),
        (vec!["error"], 5, "error"),
        (vec!["processing"], 6, "no verdict"),
        (vec![], 6, "not tracked yet"),
    ] {
        let (url, state) = mock(Mock {
            track: track.clone(),
            ..Mock::default()
        })
        .await;
        let (code, stdout, stderr) = intake_upload(&[
            &file,
            "--url",
            &url,
            "--service",
            "advisor",
            "--org-id",
            "1",
            "--request-id",
            "wait-1",
            "--wait=2s",
            "--poll-interval",
            "50ms",
        ])
        .await;
        assert_eq!(code, expected, "{track:?}: {stderr}");
        assert_eq!(stdout, "wait-1\n", "{track:?}");
        assert!(stderr.contains(told), "{track:?}: {stderr}");
        assert!(state.track_calls.load(Ordering::SeqCst) >= 2, "{track:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn big_files_stream_without_a_progress_bar_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // 6 MiB, above the progress-bar threshold, made of a pattern so the copy can be checked.
    let data: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let file = intake_testkit::archives::write(dir.path(), "big.tar.gz", &data);
    let (url, state) = mock(Mock::default()).await;
    let (code, stdout, stderr) = intake_upload(&[
        file.to_str().unwrap(),
        "--url",
        &url,
        "--service",
        "advisor",
        "--metadata",
        r#"{"queue_key": "k"}"#,
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "", "no progress bar, no other noise");
    let body: Value = serde_json::from_str(stdout.trim()).unwrap();
    let bodies = state.bodies.lock().unwrap();
    let (id, length, sent) = &bodies[0];
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(length, &sent.len().to_string());
    let text = String::from_utf8_lossy(&sent[..512]);
    assert!(
        text.contains("name=\"metadata\"") && text.contains(r#"{"queue_key":"k"}"#),
        "{text}"
    );
    assert!(sent.windows(data.len()).any(|w| w == data.as_slice()));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_exit_2_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    let (url, state) = mock(Mock::default()).await;
    for (args, told) in [
        (vec!["--metadata", "[1, 2]"], "not a JSON object"),
        (vec!["--metadata", "{oops"], "not JSON"),
        (vec!["--request-id", "../etc"], "request id"),
        (vec!["--category", "Bad_Name"], "category"),
    ] {
        let mut all = vec![file.as_str(), "--url", &url, "--service", "advisor"];
        all.extend(args.iter().copied());
        let (code, _, stderr) = intake_upload(&all).await;
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(told), "{args:?}: {stderr}");
    }
    let (code, _, stderr) =
        intake_upload(&["/no/such/file", "--url", &url, "--service", "advisor"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(state.attempts.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_409_on_a_retry_means_an_earlier_attempt_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    let (url, state) = mock(Mock {
        unavailable_for: 1,
        conflict_after_first: true,
        ..Mock::default()
    })
    .await;
    let (code, stdout, stderr) = intake_upload(&[
        &file,
        "--url",
        &url,
        "--service",
        "advisor",
        "--request-id",
        "lost-answer-1",
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "lost-answer-1\n");
    assert_eq!(state.attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_that_never_answers_is_abandoned_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample(dir.path());
    let (url, state) = mock(Mock {
        hang: true,
        ..Mock::default()
    })
    .await;
    let (code, stdout, stderr) = intake_upload(&[
        &file,
        "--url",
        &url,
        "--service",
        "advisor",
        "--idle-timeout",
        "300ms",
        "--max-attempts",
        "2",
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("no progress for 300ms"), "{stderr}");
    assert_eq!(state.attempts.load(Ordering::SeqCst), 2);
}
