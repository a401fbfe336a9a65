//! Black-box: `intake pipeline check|process|replay` and `--print-default-config` through the real
//! binary (spec pipeline.md §2, §11), on generated archives and an embedded bus in a temp dir.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use intake_bus::{OutgoingMessage, ReceivedMessage, StartFrom, Subscription};
use intake_core::config::{BusConfig, EnvMap};
use intake_pipeline::{Stage, StageError};
use intake_testkit::archives::{gzip, TarBuilder};
use serde_json::{json, Value};

const CLUSTER: &str = "C25DA893-5BA1-4229-9432-C8EC9334C4A0";
const SITE_OCP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../intake-pipeline/examples-config/rules/site_ocp.yaml"
);

fn intake(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("LOG_LEVEL", "warn")
        .env_remove("PIPELINE_CONFIG")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn operator(name: &str) -> Vec<u8> {
    json!({"metadata": {"name": name}, "status": {"conditions": [
        {"type": "Degraded", "status": "False"}, {"type": "Available", "status": "True"},
        {"type": "Upgradeable", "status": "True"}]}})
    .to_string()
    .into_bytes()
}

/// An Insights Operator archive: config/id, a failing update, healthy operators.
fn cluster_archive() -> Vec<u8> {
    let version = json!({"spec": {"channel": "stable-4.14"}, "status": {"desired": {"version": "4.14.3"}, "conditions": [
        {"type": "Failing", "status": "True", "reason": "ClusterOperatorDegraded", "message": "Cluster operator etcd is degraded"}]}});
    gzip(
        &TarBuilder::new()
            .dir("config")
            .file("config/id", format!("{CLUSTER}\n").as_bytes())
            .file("config/version.json", version.to_string().as_bytes())
            .file("config/clusteroperator/etcd.json", &operator("etcd"))
            .file("config/clusteroperator/dns.json", &operator("dns"))
            .finish(),
    )
}

fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

#[test]
fn print_default_config_prints_the_serve_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = intake(dir.path(), &["pipeline", "--print-default-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), intake_pipeline::default_config_yaml());
}

#[test]
fn check_prints_the_flow_and_the_component_graph() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "plugins:\n  packages: [intake_ocp, {SITE_OCP}]\nservice:\n  consumer:\n    topics: [platform.upload.announce]\n    services: [openshift]\n  publisher:\n    topic: ccx.ocp.results\n    brokers: other-kafka:9092\n    kafka: {{compression.type: zstd}}\n"
        ),
    );
    let out = intake(dir.path(), &["pipeline", "check", "--config", &config]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.starts_with(&format!("{config}: ok\n")), "{stdout}");
    for line in [
        "consumer    platform.upload.announce (group intake-pipeline, openshift,",
        "publisher   ccx to ccx.ocp.results on kafka other-kafka:9092 (client.id, compression.type, security.protocol)",
        "dead_letter intake.pipeline.dlq on the shared bus",
        "watcher     cluster_id (on_missing: DeadLetter)",
        "rule     intake_ocp.cluster_update.report",
        "rule     site_ocp.operator_upgrade_blocked.report",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    // Without --config: the built-in default (what `intake serve` runs).
    let out = intake(dir.path(), &["pipeline", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("the built-in default: ok\n"));
    assert!(text(&out.stdout).contains("downloader  storage (bucket insights-upload-perm-test)"));
    assert!(
        text(&out.stdout).contains("; up to 8388608 bytes in memory\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "service:\n  downloader:\n    max_archve_size: 10MiB\n  consumer:\n    workers: lots\n    kafka: {group.id: mine}\n",
    );
    let out = intake(dir.path(), &["pipeline", "check", "--config", &config]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    for problem in [
        "service.downloader.max_archve_size: unknown key (did you mean max_archive_size?)",
        "service.consumer.workers",
        "group.id",
    ] {
        assert!(
            stderr.contains(problem),
            "{problem:?} missing from:\n{stderr}"
        );
    }
    // A rule file that does not exist is a configuration error too.
    let config = write_config(
        dir.path(),
        "plugins:\n  packages: [intake_ocp, rules/missing.yaml]\n",
    );
    let out = intake(dir.path(), &["pipeline", "check", "--config", &config]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Running the service with a bad file exits 2 as well (spec §2).
    let config = write_config(dir.path(), "service:\n  nonsense: 1\n");
    let out = intake(dir.path(), &["pipeline", "--config", &config]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn process_prints_the_report_and_the_ccx_message() {
    let dir = tempfile::tempdir().unwrap();
    let archive = intake_testkit::archives::write(dir.path(), "archive.tar.gz", &cluster_archive());
    let archive = archive.display().to_string();
    let config = write_config(
        dir.path(),
        &format!("plugins:\n  packages: [intake_ocp, {SITE_OCP}]\n"),
    );

    let out = intake(
        dir.path(),
        &["pipeline", "process", "--config", &config, &archive],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["reports"],
        json!([{"rule_id": "cluster_update|CLUSTER_UPDATE_FAILING", "component": "intake_ocp.cluster_update.report",
            "type": "rule", "key": "CLUSTER_UPDATE_FAILING", "details": {"type": "rule", "error_key": "CLUSTER_UPDATE_FAILING",
            "current_version": "4.14.3", "reason": "ClusterOperatorDegraded", "message": "Cluster operator etcd is degraded"},
            "tags": [], "links": {}}])
    );
    assert_eq!(
        report["skips"],
        json!([{"rule_fqdn": "site_ocp.cloud_platform.report", "reason": "MISSING_REQUIREMENTS",
            "details": "All: ['site_ocp.parsers.infrastructure'] Any: ", "type": "skip"}])
    );
    assert_eq!(
        report["system"]["metadata"]["cluster_id"],
        CLUSTER.to_lowercase()
    );
    for key in ["fingerprints", "info", "pass", "analysis_metadata"] {
        assert!(report.get(key).is_some(), "{key} missing");
    }

    let out = intake(
        dir.path(),
        &[
            "pipeline", "process", "--config", &config, "--org-id", "54321", "--format", "ccx",
            &archive,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ccx: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = ccx
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "OrgID",
            "ClusterName",
            "Report",
            "LastChecked",
            "Version",
            "RequestId",
            "Metadata"
        ]
    );
    assert_eq!(ccx["OrgID"], 54321);
    assert_eq!(ccx["ClusterName"], CLUSTER.to_lowercase());
    assert_eq!(ccx["Version"], 1);
    assert_eq!(ccx["RequestId"], Value::Null);
    assert_eq!(ccx["Report"]["reports"], report["reports"]);

    // Not an archive: the stage error, exit 1.
    let junk = intake_testkit::archives::write(dir.path(), "junk.bin", b"not an archive at all");
    let out = intake(
        dir.path(),
        &[
            "pipeline",
            "process",
            "--config",
            &config,
            &junk.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unsupported_format"),
        "{}",
        text(&out.stderr)
    );
}

fn bus_config(dir: &Path) -> BusConfig {
    BusConfig::from_env(&EnvMap::new(), &dir.join("data")).unwrap()
}

/// A dead letter on the serve default's DLQ for a record of `platform.upload.available`.
async fn dead_letter(
    bus: &dyn intake_bus::Bus,
    dir: &Path,
    request_id: &str,
    offset: i64,
    err: &StageError,
) {
    let original = ReceivedMessage {
        topic: "platform.upload.available".into(),
        partition: 0,
        offset,
        key: Some(request_id.as_bytes().to_vec()),
        headers: vec![
            intake_bus::Header {
                name: "service".into(),
                value: b"openshift".to_vec(),
            },
            intake_bus::Header {
                name: "request_id".into(),
                value: request_id.as_bytes().to_vec(),
            },
        ],
        value: format!(r#"{{"request_id": "{request_id}"}}"#).into_bytes(),
        timestamp_ms: None,
    };
    let dlq = bus_config(dir).topic("intake.pipeline.dlq");
    let record: OutgoingMessage = intake_pipeline::dead_letter::record(&dlq, &original, err);
    bus.publish(record).await.unwrap();
}

async fn read_all(bus: &dyn intake_bus::Bus, topic: &str) -> Vec<ReceivedMessage> {
    let mut consumer = bus
        .subscribe(Subscription {
            group: format!("reader-{}", std::process::id()),
            topics: vec![topic.to_owned()],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await {
        out.push(m);
    }
    out
}

fn lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_lists_filters_and_produces_dead_letters_again() {
    let dir = tempfile::tempdir().unwrap();
    let bus = intake_bus::open(&bus_config(dir.path())).await.unwrap();
    dead_letter(
        bus.as_ref(),
        dir.path(),
        "req-transient-1",
        11,
        &StageError::transient(Stage::Download, "http_unavailable", "HTTP 503"),
    )
    .await;
    dead_letter(
        bus.as_ref(),
        dir.path(),
        "req-permanent",
        12,
        &StageError::permanent(Stage::Decode, "invalid_json", "expected value"),
    )
    .await;
    dead_letter(
        bus.as_ref(),
        dir.path(),
        "req-transient-2",
        13,
        &StageError::transient(Stage::Download, "timeout", "no byte for 30s"),
    )
    .await;

    // --dry-run lists and produces nothing.
    let out = intake(
        dir.path(),
        &["pipeline", "replay", "--class", "transient", "--dry-run"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = lines(&out);
    assert_eq!(
        listed,
        [
            json!({"offset": 0, "source_topic": "platform.upload.available", "reason": "http_unavailable", "class": "transient", "request_id": "req-transient-1"}),
            json!({"offset": 2, "source_topic": "platform.upload.available", "reason": "timeout", "class": "transient", "request_id": "req-transient-2"}),
        ]
    );
    assert!(text(&out.stderr).contains("would replay 2 dead letters"));

    // --reason and --limit: one record replayed, with its original key, value and headers.
    let out = intake(
        dir.path(),
        &[
            "pipeline",
            "replay",
            "--reason",
            "http_unavailable",
            "--limit",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&out).len(), 1);
    let replayed = read_all(bus.as_ref(), "platform.upload.available").await;
    assert_eq!(
        replayed.len(),
        1,
        "only the replayed record reached the source topic"
    );
    let r = &replayed[0];
    assert_eq!(r.key.as_deref(), Some(&b"req-transient-1"[..]));
    assert_eq!(r.value, br#"{"request_id": "req-transient-1"}"#);
    assert_eq!(r.header_str("service"), Some("openshift"));
    assert_eq!(r.header_str("request_id"), Some("req-transient-1"));
    assert_eq!(r.header_str("intake-replay-count"), Some("1"));
    for gone in [
        "intake-error-reason",
        "intake-source-topic",
        "intake-attempts",
        "dlq_reason",
    ] {
        assert_eq!(r.header_str(gone), None, "{gone} should be stripped");
    }
}

/// Serves `body` to every request on a loopback port (a stand-in for a presigned URL).
fn serve_bytes(body: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The archive server: ends with the test process.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match std::io::Read::read(&mut stream, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, head.as_bytes())
                .and_then(|_| std::io::Write::write_all(&mut stream, &body));
        }
    });
    port
}

/// `intake pipeline --config F` with a `prometheus` watcher: the service processes an
/// announcement from the bus, its metrics appear on the watcher's listener, and SIGTERM ends it
/// with exit 0 (spec §2, §10).
#[tokio::test(flavor = "multi_thread")]
async fn the_service_serves_its_metrics_on_the_prometheus_watcher_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let archive_port = serve_bytes(cluster_archive());
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(
        dir.path(),
        &format!(
            "plugins:\n  packages: [intake_ocp]\nservice:\n  consumer: {{max_record_age: 0}}\n  downloader:\n    tmp_dir: {tmp}\n    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z0-9-]+']\n  watchers:\n    - {{kind: cluster_id}}\n    - {{kind: prometheus, listen: '127.0.0.1:{metrics_port}'}}\n",
            tmp = dir.path().join("tmp").display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["pipeline", "--config", &config])
        .current_dir(dir.path())
        .env("INTAKE_DATA_DIR", dir.path().join("data"))
        .env("STORAGE_URL_SIGNING_KEY", "test-key")
        .env("LOG_LEVEL", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let bus_config = bus_config(dir.path());
    let bus = intake_bus::open(&bus_config).await.unwrap();
    let body = json!({"request_id": "req-standalone", "org_id": "54321",
        "url": format!("http://127.0.0.1:{archive_port}/archives/cluster"),
        "timestamp": "2024-05-02T09:30:12.123456Z"});
    bus.publish(
        OutgoingMessage::new(
            bus_config.topic("platform.upload.available"),
            body.to_string(),
        )
        .key("req-standalone"),
    )
    .await
    .unwrap();

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let metrics = intake_testkit::poll::until(
        Duration::from_secs(60),
        "the result counted on /metrics",
        || async {
            let text = client.get(&url).send().await.ok()?.text().await.ok()?;
            text.contains("ccx_published_total{archive=\"ocp\"} 1")
                .then_some(text)
        },
    )
    .await;
    for line in [
        "ccx_consumer_received_total 1",
        "ccx_engine_processed_total{archive=\"ocp\"} 1",
        "intake_pipeline_results_total{type=\"info\"} 1",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from:\n{metrics}");
    }
    let ready = client
        .get(format!("http://127.0.0.1:{metrics_port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let results = read_all(bus.as_ref(), &bus_config.topic("ccx.ocp.results")).await;
    assert_eq!(results.len(), 1);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status =
        intake_testkit::poll::until(Duration::from_secs(30), "the pipeline to exit", || {
            let done = child.try_wait().unwrap();
            async move { done }
        })
        .await;
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
}
