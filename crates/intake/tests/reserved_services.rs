//! Black-box: intake's own topic names can never be services. A configuration naming one stops
//! start-up (exit 2, naming `INGRESS_VALID_SERVICES`), and an upload for one is refused 415 like
//! any unknown service, so no validator ever subscribes to intake's own topics.

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

use std::process::{Command, Stdio};

use common::serve::{ready, start};
use common::upload::{archive, IDENTITY};

/// Runs `intake ingress` with `extra` and returns (exit code, stderr); it must stop by itself.
fn ingress_refusing(dir: &std::path::Path, extra: &[(&str, &str)]) -> (i32, String) {
    let port = common::process::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("ingress")
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("INGRESS_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_names_stop_start_up_and_uploads_for_them_are_415() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = ingress_refusing(
        dir.path(),
        &[("INGRESS_VALID_SERVICES", "advisor,validation")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("INGRESS_VALID_SERVICES"), "{stderr}");
    assert!(stderr.contains("validation"), "{stderr}");

    // With topic names of its own, the names that collide are theirs.
    let (code, stderr) = ingress_refusing(
        dir.path(),
        &[
            ("TOPIC_SERVICE_TEMPLATE", "svc.{service}"),
            ("TOPIC_AVAILABLE", "svc.ready"),
            ("INGRESS_VALID_SERVICES", "advisor,ready"),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("INGRESS_VALID_SERVICES") && stderr.contains("svc.ready"),
        "{stderr}"
    );

    let serve = start(dir.path());
    let client = reqwest::Client::new();
    ready(&client, &serve).await;
    for service in ["validation", "available", "announce", "payload-status"] {
        let part = reqwest::multipart::Part::bytes(archive(service))
            .file_name("archive.tar.gz")
            .mime_str(&format!("application/vnd.redhat.{service}.payload+tgz"))
            .unwrap();
        let answer = client
            .post(format!("{}/api/ingress/v1/upload", serve.ingress))
            .header("x-rh-identity", IDENTITY)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 415, "{service}");
    }
}
