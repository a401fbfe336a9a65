//! Black-box, end to end through the real binary: `intake serve` on the embedded default, the
//! seed's curl-style upload of a generated Insights Operator archive, validation, the rules
//! pipeline's `ccx` result on `ccx.ocp.results` (spec pipeline.md §9), its statuses in the
//! tracker (§10) and its metrics on serve's own `/metrics` (§3.3).

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

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::serve::{ready, start, Serve};
use intake_bus::{StartFrom, Subscription};
use intake_core::config::{BusConfig, EnvMap};
use intake_testkit::archives::{gzip, TarBuilder};
use intake_testkit::poll;
use serde_json::{json, Value};

const IDENTITY: &str = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";
const CLUSTER: &str = "C25DA893-5BA1-4229-9432-C8EC9334C4A0";
const REQUEST_ID: &str = "2439a2974ff44273afcd8b1d18077bf1";

fn operator(name: &str) -> Vec<u8> {
    json!({"metadata": {"name": name}, "status": {"conditions": [
        {"type": "Degraded", "status": "False"}, {"type": "Available", "status": "True"},
        {"type": "Upgradeable", "status": "True"}]}})
    .to_string()
    .into_bytes()
}

/// The archive of spec §9's example: config/id, a failing update, healthy operators, no
/// config/infrastructure.json.
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

/// The tracker's rows of a payload, oldest first.
async fn tracked(client: &reqwest::Client, serve: &Serve, id: &str) -> Vec<Value> {
    let Ok(r) = client
        .get(format!(
            "{}/api/v1/payloads/{id}?sort_dir=asc",
            serve.tracker
        ))
        .header("x-rh-identity", IDENTITY)
        .send()
        .await
    else {
        return Vec::new();
    };
    let body: Value = r.json().await.unwrap_or(Value::Null);
    body["data"].as_array().cloned().unwrap_or_default()
}

fn status_of<'a>(rows: &'a [Value], service: &str, status: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["service"] == service && r["status"] == status)
}

/// `intake topics tail <topic> --from-beginning --count 1` against the same data dir.
async fn tail_one(dir: &Path, topic: &str) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["topics", "tail", topic, "--from-beginning", "--count", "1"])
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("LOG_LEVEL", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let status = poll::until(Duration::from_secs(20), "topics tail to end", || {
        let done = child.try_wait().unwrap();
        async move { done }
    })
    .await;
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let line = out.lines().next().expect("one line");
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_upload_becomes_a_ccx_result_with_pipeline_statuses_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let serve = start(dir.path());
    ready(&client, &serve).await;

    // The seed's curl, with an Insights Operator archive.
    let part = reqwest::multipart::Part::bytes(cluster_archive())
        .file_name("insights-operator.tar.gz")
        .mime_str("application/vnd.redhat.openshift.periodic+tar")
        .unwrap();
    let answer = client
        .post(format!("{}/api/ingress/v1/upload", serve.ingress))
        .header("x-rh-identity", IDENTITY)
        .header("x-rh-insights-request-id", REQUEST_ID)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);

    // The pipeline's statuses, in the tracker under the same request id.
    let rows = poll::until(
        Duration::from_secs(60),
        "the pipeline's success in the tracker",
        || async {
            let rows = tracked(&client, &serve, REQUEST_ID).await;
            status_of(&rows, "intake-pipeline", "success")
                .is_some()
                .then_some(rows)
        },
    )
    .await;
    let received = status_of(&rows, "intake-pipeline", "received").expect("received");
    assert_eq!(
        received["status_msg"],
        "received from platform.upload.available"
    );
    let processing = status_of(&rows, "intake-pipeline", "processing").expect("processing");
    assert_eq!(processing["status_msg"], "downloading archive");
    let success = status_of(&rows, "intake-pipeline", "success").unwrap();
    assert_eq!(
        success["status_msg"],
        "published to ccx.ocp.results: 1 reports, 0 skips"
    );
    assert!(status_of(&rows, "ingress", "success").is_some());
    assert!(status_of(&rows, "intake-pipeline", "error").is_none());

    // The result, as `intake topics tail` shows it, and as raw bytes on the embedded bus.
    let available = tail_one(dir.path(), "platform.upload.available").await;
    let timestamp = available["value"]["timestamp"].as_str().unwrap().to_owned();
    let record = tail_one(dir.path(), "ccx.ocp.results").await;
    assert_eq!(record["key"], CLUSTER.to_lowercase());
    assert_eq!(record["headers"]["request_id"], REQUEST_ID);
    assert_eq!(record["headers"]["service"], "openshift");
    let mut ccx = record["value"].clone();

    let bus_config = BusConfig::from_env(&EnvMap::new(), &dir.path().join("data")).unwrap();
    let bus = intake_bus::open(&bus_config).await.unwrap();
    let mut consumer = bus
        .subscribe(Subscription {
            group: "e2e-reader".into(),
            topics: vec![bus_config.topic("ccx.ocp.results")],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let raw = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.value.last(), Some(&b'\n'), "one line ending in \\n");
    assert_eq!(
        raw.value.iter().filter(|b| **b == b'\n').count(),
        1,
        "compact JSON"
    );
    let keys: Vec<String> = serde_json::from_slice::<serde_json::Map<String, Value>>(&raw.value)
        .unwrap()
        .keys()
        .cloned()
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
            "Metadata",
            "AccountNumber"
        ],
        "the ccx fields, in this order"
    );

    // Times: LastChecked is the input timestamp; no gathering time was sent, so Metadata holds
    // the input timestamp to the second.
    assert_eq!(ccx["LastChecked"], timestamp.as_str());
    let gathering = format!("{}Z", &timestamp[..19]);
    let analysis = ccx["Report"]["analysis_metadata"].as_object_mut().unwrap();
    for k in ["start", "finish"] {
        let t = analysis[k].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 27, "{k}: {t}");
        analysis.insert(k.into(), json!("T"));
    }
    let sets = analysis["plugin_sets"].as_object().unwrap();
    assert_eq!(sets.keys().collect::<Vec<_>>(), ["intake", "intake_ocp"]);
    for set in sets.values() {
        assert!(
            set["version"].is_string() && set["commit"].is_string(),
            "{set}"
        );
    }
    analysis.insert("plugin_sets".into(), json!({}));
    let cluster = CLUSTER.to_lowercase();
    assert_eq!(
        ccx,
        json!({"OrgID": 54321, "ClusterName": cluster,
            "Report": {"system": {"metadata": {"cluster_id": cluster, "version": "4.14.3", "channel": "stable-4.14"}, "hostname": null},
              "reports": [{"rule_id": "cluster_update|CLUSTER_UPDATE_FAILING", "component": "intake_ocp.cluster_update.report", "type": "rule",
                "key": "CLUSTER_UPDATE_FAILING", "details": {"type": "rule", "error_key": "CLUSTER_UPDATE_FAILING", "current_version": "4.14.3",
                "reason": "ClusterOperatorDegraded", "message": "Cluster operator etcd is degraded"}, "tags": [], "links": {}}],
              "fingerprints": [],
              "skips": [],
              "info": [{"info_id": "version_info|CLUSTER_VERSION_INFO", "component": "intake_ocp.version_info.report", "type": "info",
                "key": "CLUSTER_VERSION_INFO", "details": {"type": "info", "info_key": "CLUSTER_VERSION_INFO", "version": "4.14.3"}, "tags": [], "links": {}}],
              "pass": [{"pass_id": "operator_status|OPERATORS_DEGRADED", "component": "intake_ocp.operator_status.report", "type": "pass",
                "key": "OPERATORS_DEGRADED", "details": {"type": "pass", "pass_key": "OPERATORS_DEGRADED"}, "tags": [], "links": {}}],
              "analysis_metadata": {"start": "T", "finish": "T",
                "execution_context": "intake.context.InsightsOperatorContext", "plugin_sets": {}}},
            "LastChecked": timestamp, "Version": 1, "RequestId": REQUEST_ID,
            "Metadata": {"gathering_time": gathering}, "AccountNumber": 12345})
    );

    // The pipeline's metrics on serve's own /metrics (ingress's listener).
    let metrics = client
        .get(format!("{}/metrics", serve.ingress))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "ccx_consumer_received_total 1",
        "ccx_downloaded_total 1",
        "ccx_consumer_extracted_total{archive=\"ocp\"} 1",
        "ccx_engine_processed_total{archive=\"ocp\"} 1",
        "ccx_published_total{archive=\"ocp\"} 1",
        "intake_pipeline_results_total{type=\"rule\"} 1",
        "ingress_uploads_total",
    ] {
        assert!(
            metrics.contains(line),
            "{line:?} missing from /metrics:\n{metrics}"
        );
    }
}
