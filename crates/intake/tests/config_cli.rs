//! Black-box: `intake config` prints the effective settings with secrets masked, and fails like
//! start-up on a bad variable.

use std::process::{Command, Output};

fn config(env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.arg("config")
        .current_dir(dir.path())
        .env("LOG_LEVEL", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn config_prints_settings_and_masks_secrets() {
    let out = config(&[
        ("INGRESS_LISTEN", "127.0.0.1:9999"),
        ("KAFKA_BROKERS", "kafka:9092"),
        ("KAFKA_SASL_USERNAME", "svc"),
        ("KAFKA_SASL_PASSWORD", "hunter2secret"),
        ("AWS_SECRET_ACCESS_KEY", "awssecretvalue"),
        ("S3_ENDPOINT_URL", "http://minio:9000"),
        ("STORAGE_URL_SIGNING_KEY", "signingkeyvalue"),
        (
            "TRACKER_DATABASE_URL",
            "postgres://tracker:dbpassword@db:5432/t",
        ),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for shown in [
        "127.0.0.1:9999",
        "kafka:9092",
        "http://minio:9000",
        "postgres://tracker:****@db:5432/t",
        "KAFKA_SASL_PASSWORD: set (hidden)",
        "STORAGE_URL_SIGNING_KEY: set (hidden)",
    ] {
        assert!(text.contains(shown), "{shown} missing from:\n{text}");
    }
    for secret in [
        "hunter2secret",
        "awssecretvalue",
        "signingkeyvalue",
        "dbpassword",
    ] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
}

#[test]
fn config_names_a_bad_variable_and_exits_2() {
    let out = config(&[("TRACKER_BATCH_SIZE", "many")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRACKER_BATCH_SIZE"));
}
