//! The whole pipeline on the embedded bus: the spec's input message and a generated cluster
//! archive give exactly the spec's ccx message; statuses reach the status topic; hostile archives
//! and bad records end as dead letters carrying the original bytes; replay puts them back.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{start_server, Reply};
use intake_bus::{Bus, OutgoingMessage, ReceivedMessage, StartFrom, Subscription};
use intake_core::config::{BusConfig, EnvMap};
use intake_testkit::archives::{gzip, TarBuilder};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const REQUEST_ID: &str = "2439a2974ff44273afcd8b1d18077bf1";
const IDENTITY: &str = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";

struct Harness {
    bus: Arc<dyn Bus>,
    bus_config: BusConfig,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), intake_pipeline::PipelineError>>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Cancels the pipeline and waits for a clean end.
    async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

async fn start(on_missing: &str) -> Harness {
    start_with(on_missing, "").await
}

async fn start_with(on_missing: &str, extra_watchers: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, on_missing, extra_watchers, 2).await
}

/// Starts a pipeline whose embedded bus lives in `dir` (kept by the harness).
async fn start_in(
    dir: tempfile::TempDir,
    on_missing: &str,
    extra_watchers: &str,
    workers: usize,
) -> Harness {
    let bus_config = BusConfig::from_env(&EnvMap::new(), dir.path()).unwrap();
    let bus = intake_bus::open(&bus_config).await.unwrap();
    spawn_on(
        dir,
        bus_config,
        bus.clone(),
        bus,
        on_missing,
        extra_watchers,
        workers,
    )
}

/// Starts a pipeline on `pipeline_bus` (a wrapper of `bus`, or `bus` itself); the harness talks to
/// `bus`.
fn spawn_on(
    dir: tempfile::TempDir,
    bus_config: BusConfig,
    pipeline_bus: Arc<dyn Bus>,
    bus: Arc<dyn Bus>,
    on_missing: &str,
    extra_watchers: &str,
    workers: usize,
) -> Harness {
    let yaml = format!(
        "plugins:\n  packages: [intake_ocp, {site}]\nservice:\n  consumer:\n    workers: {workers}\n    max_record_age: 0\n  downloader:\n    tmp_dir: {tmp}\n    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z0-9-]+']\n  watchers:\n    - {{kind: cluster_id, on_missing: {on_missing}}}\n    - {{kind: payload_status, service_name: intake-pipeline}}\n{extra_watchers}",
        site = common::SITE_OCP,
        tmp = dir.path().join("tmp").display(),
    );
    let config = intake_pipeline::load_config_str(&yaml, dir.path(), &EnvMap::new()).unwrap();
    let cancel = CancellationToken::new();
    let (bc, b, c) = (bus_config.clone(), pipeline_bus, cancel.clone());
    let task = tokio::spawn(async move {
        intake_pipeline::run_with_grace(config, &bc, b, None, c, Duration::from_secs(5)).await
    });
    Harness {
        bus,
        bus_config,
        cancel,
        task: Some(task),
        _dir: dir,
    }
}

fn input(url: &str, request_id: &str) -> Value {
    json!({"request_id": request_id, "payload_id": request_id, "account": "12345",
     "rh_account": "12345", "principal": "54321", "rh_principal": "54321", "org_id": "54321", "service": "openshift",
     "category": "periodic", "content_type": "application/vnd.redhat.openshift.periodic+tar", "size": 104857,
     "b64_identity": IDENTITY, "id": null, "satellite_managed": null,
     "metadata": {"custom_metadata": {"gathering_time": "2024-05-02T09:25:03Z"}},
     "url": url, "timestamp": "2024-05-02T09:30:12.123456Z"})
}

async fn announce(h: &Harness, value: Vec<u8>, request_id: &str) {
    let msg = OutgoingMessage::new(h.bus_config.topic("platform.upload.available"), value)
        .key(request_id.as_bytes().to_vec())
        .header("service", b"openshift".to_vec())
        .header("request_id", request_id.as_bytes().to_vec());
    h.bus.publish(msg).await.unwrap();
}

async fn read(h: &Harness, topic: &str, n: usize) -> Vec<ReceivedMessage> {
    let group = format!("reader-{}", uuid::Uuid::new_v4().simple());
    let sub = Subscription {
        group,
        topics: vec![h.bus_config.topic(topic)],
        start: StartFrom::Earliest,
    };
    let mut consumer = h.bus.subscribe(sub).await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("message within 30 s")
            .unwrap();
        out.push(m);
    }
    out
}

fn expected_ccx(site_commit: &str) -> Value {
    json!({"OrgID": 54321, "ClusterName": "c25da893-5ba1-4229-9432-c8ec9334c4a0",
     "Report": {"system": {"metadata": {"cluster_id": "c25da893-5ba1-4229-9432-c8ec9334c4a0", "version": "4.14.3", "channel": "stable-4.14"}, "hostname": null},
      "reports": [{"rule_id": "cluster_update|CLUSTER_UPDATE_FAILING", "component": "intake_ocp.cluster_update.report", "type": "rule",
        "key": "CLUSTER_UPDATE_FAILING", "details": {"type": "rule", "error_key": "CLUSTER_UPDATE_FAILING", "current_version": "4.14.3",
        "reason": "ClusterOperatorDegraded", "message": "Cluster operator etcd is degraded"}, "tags": [], "links": {}}],
      "fingerprints": [],
      "skips": [{"rule_fqdn": "site_ocp.cloud_platform.report", "reason": "MISSING_REQUIREMENTS",
        "details": "All: ['site_ocp.parsers.infrastructure'] Any: ", "type": "skip"}],
      "info": [{"info_id": "version_info|CLUSTER_VERSION_INFO", "component": "intake_ocp.version_info.report", "type": "info",
        "key": "CLUSTER_VERSION_INFO", "details": {"type": "info", "info_key": "CLUSTER_VERSION_INFO", "version": "4.14.3"}, "tags": [], "links": {}}],
      "pass": [{"pass_id": "operator_status|OPERATORS_DEGRADED", "component": "intake_ocp.operator_status.report", "type": "pass",
        "key": "OPERATORS_DEGRADED", "details": {"type": "pass", "pass_key": "OPERATORS_DEGRADED"}, "tags": [], "links": {}},
       {"pass_id": "operator_upgrade_blocked|OPERATOR_UPGRADE_BLOCKED", "component": "site_ocp.operator_upgrade_blocked.report", "type": "pass",
        "key": "OPERATOR_UPGRADE_BLOCKED", "details": {"type": "pass", "pass_key": "OPERATOR_UPGRADE_BLOCKED"}, "tags": ["operators", "upgrade"],
        "links": {"kcs": ["https://access.redhat.com/solutions/0000000"]}}],
      "analysis_metadata": {"start": "T", "finish": "T",
        "execution_context": "intake.context.InsightsOperatorContext", "plugin_sets": {
          "intake": {"version": intake_rules::VERSION, "commit": intake_rules::COMMIT},
          "intake_ocp": {"version": intake_rules::VERSION, "commit": intake_rules::COMMIT},
          "site_ocp": {"version": "2024.05.1", "commit": site_commit}}}},
     "LastChecked": "2024-05-02T09:30:12.123456Z", "Version": 1, "RequestId": REQUEST_ID,
     "Metadata": {"gathering_time": "2024-05-02T09:25:03Z"}, "AccountNumber": 12345})
}

fn header<'a>(m: &'a ReceivedMessage, name: &str) -> &'a str {
    m.header_str(name)
        .unwrap_or_else(|| panic!("header {name}"))
}

#[tokio::test]
async fn the_spec_input_gives_the_spec_ccx_message_and_statuses() {
    let (server, addr) = start_server().await;
    server.route("cluster", Reply::Bytes(common::cluster_archive(0)));
    let mut h = start("dead_letter").await;
    announce(
        &h,
        input(&format!("http://{addr}/archives/cluster"), REQUEST_ID)
            .to_string()
            .into_bytes(),
        REQUEST_ID,
    )
    .await;

    let out = read(&h, "ccx.ocp.results", 1).await.remove(0);
    assert_eq!(out.key_str(), Some("c25da893-5ba1-4229-9432-c8ec9334c4a0"));
    assert_eq!(header(&out, "request_id"), REQUEST_ID);
    assert_eq!(header(&out, "service"), "openshift");
    assert_eq!(out.value.last(), Some(&b'\n'));
    let text = std::str::from_utf8(&out.value).unwrap();
    assert_eq!(text.matches('\n').count(), 1, "one line on the wire");
    let mut got: Value = serde_json::from_str(text).unwrap();
    let meta = got["Report"]["analysis_metadata"].as_object_mut().unwrap();
    for k in ["start", "finish"] {
        assert!(intake_core::time::parse_rfc3339(meta[k].as_str().unwrap()).is_some());
        meta.insert(k.into(), json!("T"));
    }
    let site_commit = got["Report"]["analysis_metadata"]["plugin_sets"]["site_ocp"]["commit"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(site_commit.len(), 12);
    let expected = expected_ccx(&site_commit);
    assert_eq!(got, expected);
    assert_eq!(got.to_string(), expected.to_string(), "field order");

    let statuses = read(&h, "platform.payload-status", 3).await;
    let bodies: Vec<Value> = statuses
        .iter()
        .map(|m| serde_json::from_slice(&m.value).unwrap())
        .collect();
    let steps: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["status"].as_str().unwrap(),
                b["status_msg"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("received", "received from platform.upload.available"),
            ("processing", "downloading archive"),
            (
                "success",
                "published to ccx.ocp.results: 1 reports, 1 skips"
            ),
        ]
    );
    for b in &bodies {
        assert_eq!(b["service"], "intake-pipeline");
        assert_eq!(b["request_id"], REQUEST_ID);
        assert_eq!(b["org_id"], "54321");
        assert_eq!(b["account"], "12345");
    }
    assert_eq!(
        bodies[2]["system_id"],
        "c25da893-5ba1-4229-9432-c8ec9334c4a0"
    );
    h.stop().await;
}

#[tokio::test]
async fn hostile_archives_and_bad_records_become_dead_letters_and_replay_puts_them_back() {
    let (server, addr) = start_server().await;
    server.route(
        "traversal",
        Reply::Bytes(gzip(&TarBuilder::new().file("../evil", b"x").finish())),
    );
    server.route(
        "absolute",
        Reply::Bytes(TarBuilder::new().file("/etc/evil", b"x").finish()),
    );
    server.route(
        "notarchive",
        Reply::Bytes(b"just some text, not an archive".to_vec()),
    );
    server.route(
        "noid",
        Reply::Bytes(gzip(
            &TarBuilder::new().file("etc/hostname", b"web01").finish(),
        )),
    );
    let mut h = start("dead_letter").await;
    let cases = [
        ("traversal", "extract", "unsafe_path"),
        ("absolute", "extract", "unsafe_path"),
        ("notarchive", "extract", "unsupported_format"),
        ("noid", "extract", "missing_cluster_id"),
        ("missing", "download", "http_rejected"),
    ];
    let mut sent = Vec::new();
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let id = format!("req-{i}");
        let value = input(&format!("http://{addr}/archives/{name}"), &id)
            .to_string()
            .into_bytes();
        announce(&h, value.clone(), &id).await;
        sent.push((id, value));
    }
    announce(&h, b"{not json".to_vec(), "req-bad").await;

    let dls = read(&h, "intake.pipeline.dlq", cases.len() + 1).await;
    for ((id, value), (_, stage, reason)) in sent.iter().zip(cases.iter()) {
        let dl = dls
            .iter()
            .find(|d| d.key_str() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("dead letter for {id}"));
        assert_eq!(&dl.value, value, "original bytes");
        assert_eq!(
            (
                header(dl, "intake-error-stage"),
                header(dl, "intake-error-reason")
            ),
            (*stage, *reason),
            "{id}"
        );
        assert_eq!(header(dl, "intake-error-class"), "permanent");
        assert_eq!(header(dl, "dlq_reason"), *reason);
        assert_eq!(
            header(dl, "intake-source-topic"),
            "platform.upload.available"
        );
        assert_eq!(header(dl, "service"), "openshift");
        assert!(
            !header(dl, "intake-error-detail").contains("/archives/"),
            "no URL paths in details"
        );
    }
    let bad = dls.iter().find(|d| d.key_str() == Some("req-bad")).unwrap();
    assert_eq!(bad.value, b"{not json");
    assert_eq!(
        (
            header(bad, "intake-error-stage"),
            header(bad, "intake-error-reason")
        ),
        ("decode", "invalid_json")
    );

    // The error status names stage, reason and detail.
    let statuses = read(&h, "platform.payload-status", 1).await;
    assert!(statuses
        .iter()
        .all(|s| serde_json::from_slice::<Value>(&s.value).is_ok()));

    // Nothing was written outside the work directories.
    assert!(!std::path::Path::new("/etc/evil").exists());

    let options = intake_pipeline::ReplayOptions {
        reason: Some("missing_cluster_id".into()),
        idle: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    h.stop().await;
    let config = intake_pipeline::load_config_str(
        "service:\n  publisher: {format: insights}\n",
        std::path::Path::new("."),
        &EnvMap::new(),
    )
    .unwrap();
    let replayed = intake_pipeline::replay(&config, &h.bus_config, h.bus.clone(), &options)
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].request_id.as_deref(), Some("req-3"));
    let inputs = read(&h, "platform.upload.available", cases.len() + 2).await;
    let again = inputs.last().unwrap();
    assert_eq!(again.key_str(), Some("req-3"));
    assert_eq!(again.value, sent[3].1);
    assert_eq!(header(again, "intake-replay-count"), "1");
    assert!(
        again.header_str("intake-error-reason").is_none()
            && again.header_str("dlq_reason").is_none()
    );
}

#[tokio::test]
async fn uploads_without_a_cluster_id_end_quietly_with_skip() {
    let (server, addr) = start_server().await;
    server.route(
        "host",
        Reply::Bytes(gzip(
            &TarBuilder::new().file("etc/hostname", b"web01").finish(),
        )),
    );
    let mut h = start("skip").await;
    announce(
        &h,
        input(&format!("http://{addr}/archives/host"), "req-host")
            .to_string()
            .into_bytes(),
        "req-host",
    )
    .await;
    let statuses = read(&h, "platform.payload-status", 3).await;
    let last: Value = serde_json::from_slice(&statuses[2].value).unwrap();
    assert_eq!(
        (last["status"].as_str(), last["status_msg"].as_str()),
        (Some("success"), Some("skipped: no cluster id"))
    );
    h.stop().await;
}

#[tokio::test]
async fn the_prometheus_watcher_serves_metrics_and_health() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (server, addr) = start_server().await;
    server.route("cluster", Reply::Bytes(common::cluster_archive(0)));
    let mut h = start_with(
        "dead_letter",
        &format!("    - {{kind: prometheus, listen: '127.0.0.1:{port}'}}\n"),
    )
    .await;
    announce(
        &h,
        input(&format!("http://{addr}/archives/cluster"), "req-metrics")
            .to_string()
            .into_bytes(),
        "req-metrics",
    )
    .await;
    read(&h, "ccx.ocp.results", 1).await;
    let client = reqwest::Client::new();
    let metrics = intake_testkit::poll::until(Duration::from_secs(10), "metrics", || {
        let client = client.clone();
        async move {
            let text = client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains("ccx_published_total{archive=\"ocp\"}")
                .then_some(text)
        }
    })
    .await;
    for name in [
        "ccx_consumer_received_total",
        "ccx_downloaded_total",
        "intake_pipeline_results_total{type=\"rule\"}",
    ] {
        assert!(metrics.contains(name), "{name}");
    }
    for path in ["livez", "readyz"] {
        let status = client
            .get(format!("http://127.0.0.1:{port}/{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn committed_messages_are_not_processed_again_after_a_restart() {
    let (server, addr) = start_server().await;
    server.route("cluster", Reply::Bytes(common::cluster_archive(0)));
    let url = format!("http://{addr}/archives/cluster");
    let mut h = start_in(tempfile::tempdir().unwrap(), "dead_letter", "", 1).await;
    for i in 0..3 {
        let id = format!("req-first-{i}");
        announce(&h, input(&url, &id).to_string().into_bytes(), &id).await;
    }
    read(&h, "ccx.ocp.results", 3).await;
    h.stop().await;
    // Same bus, same group: a new member starts after the committed offsets.
    let dir = std::mem::replace(&mut h._dir, tempfile::tempdir().unwrap());
    let mut again = start_in(dir, "dead_letter", "", 1).await;
    announce(
        &again,
        input(&url, "req-new").to_string().into_bytes(),
        "req-new",
    )
    .await;
    let group = format!("reader-{}", uuid::Uuid::new_v4().simple());
    let sub = Subscription {
        group,
        topics: vec![again.bus_config.topic("ccx.ocp.results")],
        start: StartFrom::Earliest,
    };
    let mut consumer = again.bus.subscribe(sub).await.unwrap();
    let mut ids = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&m.value).unwrap();
        ids.push(v["RequestId"].as_str().unwrap().to_owned());
        if ids.last().map(String::as_str) == Some("req-new") {
            break;
        }
    }
    // Order within a partition is not kept (pipeline.md §4): each one once, the new one last.
    ids[..3].sort();
    assert_eq!(
        ids,
        ["req-first-0", "req-first-1", "req-first-2", "req-new"]
    );
    again.stop().await;
}

#[tokio::test]
async fn a_dead_letter_queue_that_cannot_be_written_is_retried_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let bus_config = BusConfig::from_env(&EnvMap::new(), dir.path()).unwrap();
    let inner = intake_bus::open(&bus_config).await.unwrap();
    let faulty = intake_bus::faults::FaultyBus::new(inner.clone());
    let faults = faulty.faults();
    let dlq = bus_config.topic("intake.pipeline.dlq");
    let dlq_match = dlq.clone();
    faults.fail_publish_where(intake_bus::faults::PublishFault::Unavailable, move |t| {
        t == dlq_match
    });
    let config = intake_pipeline::load_config_str(
        "service:\n  consumer: {max_record_age: 0}\n",
        dir.path(),
        &EnvMap::new(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let (bc, c) = (bus_config.clone(), cancel.clone());
    let bus: Arc<dyn Bus> = Arc::new(faulty);
    let task = tokio::spawn(async move {
        intake_pipeline::run_with_grace(config, &bc, bus, None, c, Duration::from_secs(5)).await
    });
    let msg = OutgoingMessage::new(
        bus_config.topic("platform.upload.available"),
        b"not json".to_vec(),
    )
    .key(b"k".to_vec());
    inner.publish(msg).await.unwrap();
    let f = faults.clone();
    intake_testkit::poll::until_true(
        Duration::from_secs(20),
        "two failed DLQ writes",
        move || {
            let f = f.clone();
            async move { f.injected_publish_failures() >= 2 }
        },
    )
    .await;
    faults.heal_publish();
    let h = Harness {
        bus: inner,
        bus_config,
        cancel,
        task: Some(task),
        _dir: dir,
    };
    let dl = read(&h, "intake.pipeline.dlq", 1).await.remove(0);
    assert_eq!(dl.value, b"not json");
    assert_eq!(header(&dl, "intake-error-reason"), "invalid_json");
    let mut h = h;
    h.stop().await;
}

#[tokio::test]
async fn commits_the_bus_refuses_never_stop_the_pipeline_and_are_made_once_it_answers() {
    let (server, addr) = start_server().await;
    server.route("cluster", Reply::Bytes(common::cluster_archive(0)));
    let url = format!("http://{addr}/archives/cluster");
    let dir = tempfile::tempdir().unwrap();
    let bus_config = BusConfig::from_env(&EnvMap::new(), dir.path()).unwrap();
    let inner = intake_bus::open(&bus_config).await.unwrap();
    let faulty = intake_bus::faults::FaultyBus::new(inner.clone());
    let faults = faulty.faults();
    faults.fail_commit(true);
    let mut h = spawn_on(
        dir,
        bus_config,
        Arc::new(faulty),
        inner,
        "dead_letter",
        "",
        1,
    );
    for i in 0..3 {
        let id = format!("req-first-{i}");
        announce(&h, input(&url, &id).to_string().into_bytes(), &id).await;
    }
    // Every commit is refused (a broker outage): the pipeline goes on and reports all three.
    read(&h, "ccx.ocp.results", 3).await;
    let f = faults.clone();
    intake_testkit::poll::until_true(
        Duration::from_secs(20),
        "commits tried again while refused",
        move || {
            let f = f.clone();
            async move { f.injected_commit_failures() >= 5 }
        },
    )
    .await;
    assert!(
        !h.task.as_ref().unwrap().is_finished(),
        "the pipeline stopped on a refused commit"
    );
    faults.fail_commit(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.stop().await;
    // The owed commits were made: a new member of the group starts after them.
    let dir = std::mem::replace(&mut h._dir, tempfile::tempdir().unwrap());
    let mut again = start_in(dir, "dead_letter", "", 1).await;
    announce(
        &again,
        input(&url, "req-new").to_string().into_bytes(),
        "req-new",
    )
    .await;
    let reports = read(&again, "ccx.ocp.results", 4).await;
    let mut ids: Vec<String> = reports
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_slice(&m.value).unwrap();
            v["RequestId"].as_str().unwrap().to_owned()
        })
        .collect();
    // Order within a partition is not kept (pipeline.md §4): each one once, the new one last.
    ids[..3].sort();
    assert_eq!(
        ids,
        ["req-first-0", "req-first-1", "req-first-2", "req-new"]
    );
    let group = format!("reader-{}", uuid::Uuid::new_v4().simple());
    let sub = Subscription {
        group,
        topics: vec![again.bus_config.topic("ccx.ocp.results")],
        start: StartFrom::Earliest,
    };
    let mut consumer = again.bus.subscribe(sub).await.unwrap();
    for _ in 0..4 {
        consumer.next().await.unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(3), consumer.next())
            .await
            .is_err(),
        "a message was processed twice"
    );
    again.stop().await;
}
