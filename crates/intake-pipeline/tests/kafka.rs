//! The pipeline on the Kafka driver, against the broker `scripts/test.sh` starts
//! (`INTAKE_TEST_KAFKA_BROKERS`; without it this test fails, naming the variable).

use crate::common;

use std::time::Duration;

use common::{start_server, Reply};
use intake_bus::{OutgoingMessage, StartFrom, Subscription, TopicSpec};
use intake_core::config::{BusConfig, EnvMap};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_cluster_archive_gives_a_ccx_result_and_statuses_on_kafka() {
    let prefix = format!("pipeline-{}.", uuid::Uuid::new_v4().simple());
    let env: EnvMap = [
        (
            "KAFKA_BROKERS".to_string(),
            intake_testkit::servers::kafka_brokers(),
        ),
        ("KAFKA_TOPIC_PREFIX".to_string(), prefix),
    ]
    .into();
    let dir = tempfile::tempdir().unwrap();
    let bus_config = BusConfig::from_env(&env, dir.path()).unwrap();
    let bus = intake_bus::open(&bus_config).await.unwrap();
    let topics = [
        "platform.upload.available",
        "ccx.ocp.results",
        "intake.pipeline.dlq",
        "platform.payload-status",
    ];
    let specs: Vec<TopicSpec> = topics
        .iter()
        .map(|t| TopicSpec {
            name: bus_config.topic(t),
            partitions: 2,
            replication: 1,
        })
        .collect();
    bus.create_topics(&specs).await.unwrap();

    let (server, addr) = start_server().await;
    server.route("cluster", Reply::Bytes(common::cluster_archive(0)));
    let yaml = format!(
        "service:\n  consumer: {{workers: 2, max_record_age: 0, group_id: g-{group}}}\n  downloader:\n    tmp_dir: {tmp}\n    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z]+']\n  watchers:\n    - {{kind: cluster_id}}\n    - {{kind: payload_status}}\n",
        group = uuid::Uuid::new_v4().simple(),
        tmp = dir.path().join("tmp").display(),
    );
    let config = intake_pipeline::load_config_str(&yaml, dir.path(), &EnvMap::new()).unwrap();
    let cancel = CancellationToken::new();
    let (bc, b, c) = (bus_config.clone(), bus.clone(), cancel.clone());
    let task = tokio::spawn(async move {
        intake_pipeline::run_with_grace(config, &bc, b, None, c, Duration::from_secs(5)).await
    });

    let body = json!({"request_id": "req-kafka", "org_id": "54321", "url": format!("http://{addr}/archives/cluster"),
        "timestamp": "2024-05-02T09:30:12.123456Z"});
    let msg = OutgoingMessage::new(
        bus_config.topic("platform.upload.available"),
        body.to_string(),
    )
    .key("req-kafka")
    .header("service", b"openshift".to_vec());
    bus.publish(msg).await.unwrap();

    let sub = Subscription {
        group: format!("reader-{}", uuid::Uuid::new_v4().simple()),
        topics: vec![bus_config.topic("ccx.ocp.results")],
        start: StartFrom::Earliest,
    };
    let mut reader = bus.subscribe(sub).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), reader.next())
        .await
        .expect("a result within 60 s")
        .unwrap();
    assert_eq!(out.key_str(), Some("c25da893-5ba1-4229-9432-c8ec9334c4a0"));
    let v: Value = serde_json::from_slice(&out.value).unwrap();
    assert_eq!(v["OrgID"], 54321);
    assert_eq!(v["RequestId"], "req-kafka");
    assert_eq!(
        v["Report"]["reports"][0]["rule_id"],
        "cluster_update|CLUSTER_UPDATE_FAILING"
    );

    let sub = Subscription {
        group: format!("status-{}", uuid::Uuid::new_v4().simple()),
        topics: vec![bus_config.topic("platform.payload-status")],
        start: StartFrom::Earliest,
    };
    let mut statuses = bus.subscribe(sub).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(60), statuses.next())
            .await
            .expect("statuses")
            .unwrap();
        let v: Value = serde_json::from_slice(&m.value).unwrap();
        seen.push(v["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["received", "processing", "success"]);
    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// Spec §3.2: a section with its own `brokers` talks to that cluster; the rest stays on the
/// shared bus. Here the shared bus is embedded and only the publisher goes to Kafka.
#[tokio::test]
async fn a_publisher_with_its_own_brokers_publishes_to_that_cluster() {
    let brokers = intake_testkit::servers::kafka_brokers();
    let prefix = format!("pipeline-{}.", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let shared_env: EnvMap = [
        ("BUS_DRIVER".to_string(), "embedded".to_string()),
        ("KAFKA_TOPIC_PREFIX".to_string(), prefix.clone()),
    ]
    .into();
    let bus_config = BusConfig::from_env(&shared_env, dir.path()).unwrap();
    let bus = intake_bus::open(&bus_config).await.unwrap();

    let (server, addr) = start_server().await;
    server.route("cluster", Reply::Bytes(common::cluster_archive(0)));
    let yaml = format!(
        "service:\n  consumer: {{workers: 1, max_record_age: 0}}\n  downloader:\n    tmp_dir: {tmp}\n    allowed_urls: ['http://127\\.0\\.0\\.1:[0-9]+/archives/[a-z]+']\n  publisher:\n    brokers: {brokers}\n    kafka: {{linger.ms: \"1\"}}\n",
        tmp = dir.path().join("tmp").display(),
    );
    let config = intake_pipeline::load_config_str(&yaml, dir.path(), &EnvMap::new()).unwrap();
    let check = intake_pipeline::check_with_bus(&config, &bus_config).unwrap();
    assert!(
        check.contains(&format!(
            "publisher   ccx to {prefix}ccx.ocp.results on kafka {brokers} ("
        )),
        "{check}"
    );
    assert!(check.contains("dead_letter") && check.contains("on the shared bus"));
    let cancel = CancellationToken::new();
    let (bc, b, c) = (bus_config.clone(), bus.clone(), cancel.clone());
    let task = tokio::spawn(async move {
        intake_pipeline::run_with_grace(config, &bc, b, None, c, Duration::from_secs(5)).await
    });

    let body = json!({"request_id": "req-own-brokers", "org_id": "54321", "url": format!("http://{addr}/archives/cluster"),
        "timestamp": "2024-05-02T09:30:12.123456Z"});
    let msg = OutgoingMessage::new(
        bus_config.topic("platform.upload.available"),
        body.to_string(),
    )
    .key("req-own-brokers");
    bus.publish(msg).await.unwrap();

    let kafka_env: EnvMap = [
        ("KAFKA_BROKERS".to_string(), brokers.clone()),
        ("KAFKA_TOPIC_PREFIX".to_string(), prefix.clone()),
    ]
    .into();
    let kafka_config = BusConfig::from_env(&kafka_env, dir.path()).unwrap();
    let kafka = intake_bus::open(&kafka_config).await.unwrap();
    let mut reader = kafka
        .subscribe(Subscription {
            group: format!("reader-{}", uuid::Uuid::new_v4().simple()),
            topics: vec![kafka_config.topic("ccx.ocp.results")],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), reader.next())
        .await
        .expect("a result on the publisher's own Kafka within 60 s")
        .unwrap();
    let v: Value = serde_json::from_slice(&out.value).unwrap();
    assert_eq!(v["RequestId"], "req-own-brokers");
    assert_eq!(v["ClusterName"], "c25da893-5ba1-4229-9432-c8ec9334c4a0");

    // Nothing went to the shared (embedded) bus's result topic.
    let mut local = bus
        .subscribe(Subscription {
            group: format!("local-{}", uuid::Uuid::new_v4().simple()),
            topics: vec![bus_config.topic("ccx.ocp.results")],
            start: StartFrom::Earliest,
        })
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), local.next())
            .await
            .is_err(),
        "the embedded result topic stays empty"
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
}
