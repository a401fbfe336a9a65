//! Black-box: under Clowder (`ACG_CONFIG` naming the app-config), topics go by the real names the
//! file gives for the names intake requests, in every part: `intake serve` on the embedded bus
//! (`BUS_DRIVER` set in the environment wins over the file's brokers) takes an upload through
//! validation to the tracker on renamed topics only. And each part alone listens where the file's
//! ports (and deploy/clowdapp.yaml's probes) say.

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
use std::time::Duration;

use common::process::free_port;
use common::serve::{ready, start_with, statuses};
use intake_testkit::poll;

/// Requested → real names, as Clowder renames topics in an ephemeral environment.
const RENAMED: [(&str, &str); 4] = [
    (
        "platform.upload.testareno",
        "platform.upload.testareno-eph42",
    ),
    (
        "platform.upload.validation",
        "platform.upload.validation-eph42",
    ),
    (
        "platform.upload.available",
        "platform.upload.available-eph42",
    ),
    ("platform.payload-status", "platform.payload-status-eph42"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_part_uses_the_real_topic_names_the_app_config_gives() {
    let dir = tempfile::tempdir().unwrap();
    let topics: Vec<serde_json::Value> = RENAMED
        .iter()
        .map(|(requested, name)| serde_json::json!({"requestedName": requested, "name": name}))
        .collect();
    let app = serde_json::json!({
        "publicPort": free_port(), "privatePort": free_port(), "metricsPort": free_port(),
        "metricsPath": "/metrics", "logging": {"type": "null"},
        "kafka": {"brokers": [{"hostname": "kafka.invalid", "port": 9092}], "topics": topics}
    });
    let file = dir.path().join("cdappconfig.json");
    std::fs::write(&file, app.to_string()).unwrap();
    let acg = file.to_str().unwrap();
    let serve = start_with(
        dir.path(),
        &[("ACG_CONFIG", acg), ("BUS_DRIVER", "embedded")],
    );
    let client = reqwest::Client::new();
    ready(&client, &serve).await;

    let id = "3c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f";
    let answer = common::upload::post(&client, &serve.ingress, id, common::upload::archive("acg"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    // Announce, verdict, move and statuses all crossed the renamed topics.
    poll::until_true(
        Duration::from_secs(30),
        "the verdict applied and tracked",
        || async {
            statuses(&client, &serve.tracker, id)
                .await
                .contains(&("ingress".into(), "success".into()))
        },
    )
    .await;

    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["topics", "list"])
        .current_dir(dir.path())
        .env("INTAKE_DATA_DIR", dir.path().join("data"))
        .env("LOG_LEVEL", "warn")
        .env("ACG_CONFIG", acg)
        .env("BUS_DRIVER", "embedded")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<&str> = listed.lines().collect();
    for (requested, real) in RENAMED {
        assert!(listed.contains(&real), "{real} missing from {listed:?}");
        assert!(!listed.contains(&requested), "{requested} used: {listed:?}");
    }
}

/// Each part alone, configured only by an app-config's ports (the embedded defaults otherwise),
/// answers its probes and scrapes where deploy/clowdapp.yaml points them: `/livez` and `/readyz`
/// on the public port for ingress and the tracker, on the metrics port for the validator and the
/// pipeline, and `/metrics` on the metrics port for all four.
#[tokio::test(flavor = "multi_thread")]
async fn each_part_listens_on_the_ports_the_app_config_gives() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut parts = Vec::new();
    let mut probes = Vec::new();
    for (part, public) in [
        ("ingress", true),
        ("tracker", true),
        ("validator", false),
        ("pipeline", false),
    ] {
        let (public_port, metrics_port) = (free_port(), free_port());
        let file = dir.path().join(format!("{part}.json"));
        let app = serde_json::json!({
            "publicPort": public_port, "metricsPort": metrics_port, "metricsPath": "/metrics"
        });
        std::fs::write(&file, app.to_string()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_intake"))
            .arg(part)
            .current_dir(dir.path())
            .env("INTAKE_DATA_DIR", dir.path().join("data"))
            .env("STORAGE_URL_SIGNING_KEY", "test-key")
            .env("LOG_LEVEL", "warn")
            .env("ACG_CONFIG", &file)
            .env_remove("KAFKA_BROKERS")
            .env_remove("KAFKAMQ")
            .env_remove("BUS_DRIVER")
            .env_remove("S3_ENDPOINT_URL")
            .env_remove("PIPELINE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        parts.push(common::process::Killed(child));
        let health = if public { public_port } else { metrics_port };
        for (port, path) in [
            (health, "/livez"),
            (health, "/readyz"),
            (metrics_port, "/metrics"),
        ] {
            probes.push((part, format!("http://127.0.0.1:{port}{path}")));
        }
    }
    for (part, url) in probes {
        poll::until_true(
            Duration::from_secs(60),
            &format!("{part}: {url} 200"),
            || async {
                client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            },
        )
        .await;
    }
}
