//! The Kafka driver against a real Kafka-protocol broker: the one `scripts/test.sh` starts (tansu),
//! reached through `INTAKE_TEST_KAFKA_BROKERS`. Without it these tests fail, naming the variable.
//! Every case uses fresh topics, created explicitly (the broker does not auto-create), and fresh
//! consumer groups.

use std::sync::Arc;
use std::time::Duration;

use intake_bus::kafka::{ClientSettings, KafkaBus};
use intake_bus::testsuite::unique;
use intake_bus::topics::topic_names;
use intake_bus::{Bus, BusError, OutgoingMessage, TopicSpec};
use intake_core::config::{BusConfig, EnvMap, KafkaConfig};

fn settings() -> ClientSettings {
    let config = KafkaConfig {
        brokers: intake_testkit::servers::kafka_brokers(),
        security_protocol: "PLAINTEXT".into(),
        ..KafkaConfig::default()
    };
    let mut settings = ClientSettings::from_config(&config).expect("settings");
    settings
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    settings
}

async fn broker_bus() -> Arc<dyn Bus> {
    Arc::new(KafkaBus::with_settings(settings(), Duration::from_secs(10)).expect("kafka bus"))
}

intake_bus::bus_contract_tests!(broker_bus());

#[tokio::test]
async fn publishing_to_a_missing_topic_is_unknown_topic() {
    let bus = KafkaBus::with_settings(settings(), Duration::from_secs(4)).expect("kafka bus");
    let missing = unique("missing");
    let err = bus
        .publish(OutgoingMessage::new(&missing, &b"{}"[..]))
        .await
        .expect_err("no such topic");
    assert!(
        matches!(&err, BusError::UnknownTopic(t) if *t == missing),
        "{err:?}"
    );
}

#[tokio::test]
async fn every_topic_of_a_configuration_can_be_created_twice() {
    let prefix = format!("{}.", unique("cfg"));
    let env: EnvMap = [
        (
            "KAFKA_BROKERS".to_string(),
            intake_testkit::servers::kafka_brokers(),
        ),
        ("KAFKA_TOPIC_PREFIX".to_string(), prefix.clone()),
    ]
    .into();
    let config = BusConfig::from_env(&env, std::path::Path::new("/unused")).expect("config");
    let bus = KafkaBus::new(&config).expect("kafka bus");
    let names = topic_names(&config, &["advisor".to_string(), "compliance".to_string()]);
    assert_eq!(names.len(), 8);
    let specs: Vec<TopicSpec> = names
        .iter()
        .map(|name| TopicSpec {
            name: name.clone(),
            partitions: 2,
            replication: 1,
        })
        .collect();
    bus.create_topics(&specs).await.expect("create");
    bus.create_topics(&specs).await.expect("create again");
    let listed = bus.list_topics().await.expect("list");
    let ours: Vec<&String> = listed.iter().filter(|t| t.starts_with(&prefix)).collect();
    assert_eq!(ours.len(), names.len(), "listed: {ours:?}");
    assert!(names.contains(&format!("{prefix}platform.upload.advisor")));
    assert!(names.contains(&format!("{prefix}platform.payload-status.dlq")));
}
