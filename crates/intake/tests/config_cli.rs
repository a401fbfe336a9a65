//! Black-box: `intake config` prints the effective settings with secrets masked, and fails like
//! start-up on a bad variable.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

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

/// A Clowder app-config as the operator mounts it (ports, SASL Kafka with one topic renamed, MinIO
/// with per-app bucket names, a PostgreSQL database).
const CDAPPCONFIG: &str = r#"{
  "publicPort": 8000, "privatePort": 10000, "metricsPort": 9000, "metricsPath": "/metrics",
  "logging": {"type": "null"},
  "kafka": {
    "brokers": [{"hostname": "eph-kafka-bootstrap.eph.svc", "port": 9093, "authtype": "sasl",
                 "sasl": {"username": "intake-user", "password": "kafkapasswordvalue",
                          "saslMechanism": "SCRAM-SHA-512", "securityProtocol": "SASL_SSL"}}],
    "topics": [{"requestedName": "platform.upload.available", "name": "platform.upload.available-eph"}]
  },
  "objectStore": {"hostname": "eph-minio.eph.svc", "port": 9000, "tls": false,
    "buckets": [{"requestedName": "insights-upload-perm-test", "name": "perm-eph",
                 "accessKey": "bucketaccess", "secretKey": "bucketsecretvalue"}]},
  "database": {"name": "payload-tracker", "username": "tracker", "password": "dbpasswordvalue",
    "hostname": "eph-db.eph.svc", "port": 5432, "adminUsername": "postgres",
    "adminPassword": "adminpasswordvalue", "sslMode": "require"}
}"#;

#[test]
fn config_takes_what_acg_config_names_under_explicit_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cdappconfig.json");
    std::fs::write(&file, CDAPPCONFIG).unwrap();
    let out = config(&[
        ("ACG_CONFIG", file.to_str().unwrap()),
        // Set in the environment: wins over the file.
        ("INGRESS_LISTEN", "0.0.0.0:8123"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for shown in [
        "eph-kafka-bootstrap.eph.svc:9093",
        "SASL_SSL",
        "SCRAM-SHA-512",
        "intake-user",
        "\"platform.upload.available\": \"platform.upload.available-eph\"",
        "http://eph-minio.eph.svc:9000",
        "perm: \"perm-eph\"",
        "bucketaccess",
        "postgres://tracker:****@eph-db.eph.svc:5432/payload-tracker?sslmode=require",
        "0.0.0.0:8123",
        "0.0.0.0:8000",
        "KAFKA_SASL_PASSWORD: set (hidden)",
        "AWS_SECRET_ACCESS_KEY: set (hidden)",
    ] {
        assert!(text.contains(shown), "{shown} missing from:\n{text}");
    }
    // Ingress keeps its explicit listener; the tracker takes the public port from the file.
    let section = |name: &str| {
        let start = text.find(&format!("\n{name}: ")).unwrap();
        let end = text[start + 1..].find("\n}").unwrap();
        &text[start..start + 1 + end]
    };
    assert!(section("ingress").contains("\"0.0.0.0:8123\""), "{text}");
    assert!(section("ingress").contains("\"0.0.0.0:9000\""), "{text}");
    assert!(!section("ingress").contains("0.0.0.0:8000"), "{text}");
    assert!(section("tracker").contains("\"0.0.0.0:8000\""), "{text}");
    for secret in ["kafkapasswordvalue", "bucketsecretvalue", "dbpasswordvalue"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
}

#[test]
fn an_unreadable_or_invalid_acg_config_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let invalid = dir.path().join("invalid.json");
    std::fs::write(&invalid, r#"{"metricsPort": 9000}"#).unwrap();
    let missing = dir.path().join("missing.json");
    for path in [&invalid, &missing] {
        let out = config(&[("ACG_CONFIG", path.to_str().unwrap())]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("ACG_CONFIG"), "{stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    }
}

#[test]
fn acg_config_ca_certificates_are_written_for_the_clients() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cdappconfig.json");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBkafkaca\n-----END CERTIFICATE-----\n";
    let app: serde_json::Value = serde_json::json!({
        "publicPort": 8000, "metricsPort": 9000, "metricsPath": "/metrics",
        "kafka": {"brokers": [{"hostname": "k", "port": 9093, "cacert": pem}], "topics": []}
    });
    std::fs::write(&file, app.to_string()).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = config(&[
        ("ACG_CONFIG", file.to_str().unwrap()),
        ("TMPDIR", tmp.to_str().unwrap()),
    ]);
    assert!(out.status.success(), "{out:?}");
    let written: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(written[0].to_str().unwrap().ends_with("-kafka-ca.pem"));
    assert_eq!(std::fs::read_to_string(&written[0]).unwrap(), pem);

    // With KAFKA_SSL_CA_LOCATION set, the operator's CA is used and nothing is written.
    let tmp2 = dir.path().join("tmp2");
    std::fs::create_dir(&tmp2).unwrap();
    let out = config(&[
        ("ACG_CONFIG", file.to_str().unwrap()),
        ("TMPDIR", tmp2.to_str().unwrap()),
        ("KAFKA_SSL_CA_LOCATION", "/etc/ssl/mine.pem"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_dir(&tmp2).unwrap().count(), 0);
}

#[test]
fn every_bad_variable_is_named_once_and_exits_2() {
    for (name, value) in [
        ("INGRESS_LISTEN", "bad"),
        ("TRACKER_LISTEN", ":8081"),
        ("INGRESS_METRICS_LISTEN", "localhost:http"),
        ("VALIDATOR_LISTEN", "8080"),
        ("INGRESS_MAX_SIZE", "lots"),
        ("INGRESS_MAX_HEADER_BYTES", "64 XB"),
        ("VALIDATOR_MAX_DOWNLOAD_SIZE", "-1"),
    ] {
        let out = config(&[(name, value)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {out:?}");
        assert_eq!(
            stderr.matches(name).count(),
            1,
            "{name}={value} is named, once: {stderr}"
        );
    }
    // A start-up failure too is printed once, not as a log line and again as a message.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("ingress")
        .current_dir(dir.path())
        .env("INTAKE_DATA_DIR", dir.path())
        .env("INGRESS_LISTEN", "bad")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(stderr.matches("INGRESS_LISTEN").count(), 1, "{stderr}");
    // A well-formed address that cannot be bound (in use) names its variable too, its cause once.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("tracker")
        .current_dir(dir.path())
        .env("INTAKE_DATA_DIR", dir.path())
        .env("LOG_LEVEL", "warn")
        .env("TRACKER_LISTEN", busy.local_addr().unwrap().to_string())
        // The embedded bus and SQLite, whatever the harness exports.
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .env_remove("TRACKER_DATABASE_URL")
        .env_remove("ACG_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stderr.matches("TRACKER_LISTEN").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
}

#[test]
fn sizes_parse_one_way_everywhere() {
    let out = config(&[
        ("INGRESS_MAX_SIZE", "10MiB"),
        ("INGRESS_MAX_HEADER_BYTES", "64KiB"),
        (
            "INGRESS_MAX_SIZE_MAP",
            r#"{"qpc": "2 MiB", "advisor": 1000}"#,
        ),
        ("VALIDATOR_MAX_DOWNLOAD_SIZE", "1.5KB"),
        ("VALIDATOR_MAX_UNPACKED_SIZE", "3M"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for shown in [
        "max_size: 10485760,",
        "max_header_bytes: 65536,",
        "\"qpc\": 2097152,",
        "\"advisor\": 1000,",
        "max_download_size: 1500,",
        "max_unpacked_size: 3000000,",
    ] {
        assert!(text.contains(shown), "{shown} missing from:\n{text}");
    }
}
