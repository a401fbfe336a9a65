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
intake_bus::runtime_contract_tests!(broker_bus());

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

/// A bus on the harness's second broker, which requires SASL/SCRAM (over plaintext: this tansu
/// version can start no TLS listener, and offers no PLAIN). Its users `intake-scram-512` and
/// `intake-scram-256` share the password in `INTAKE_TEST_KAFKA_SASL_PASSWORD`.
fn sasl_bus(mechanism: &str, username: &str, password: &str) -> KafkaBus {
    let config = KafkaConfig {
        brokers: intake_testkit::servers::required("INTAKE_TEST_KAFKA_SASL_BROKERS"),
        security_protocol: "SASL_PLAINTEXT".into(),
        sasl_mechanism: Some(mechanism.into()),
        sasl_username: Some(username.into()),
        sasl_password: Some(password.into()),
        ..KafkaConfig::default()
    };
    let settings = ClientSettings::from_config(&config).expect("settings");
    KafkaBus::with_settings(settings, Duration::from_secs(10)).expect("kafka bus")
}

/// Publishes one message through `bus` and reads it back in a fresh group.
async fn round_trip(bus: &KafkaBus) {
    let topic = unique("sasl");
    bus.create_topics(&[TopicSpec {
        name: topic.clone(),
        partitions: 1,
        replication: 1,
    }])
    .await
    .expect("create topic");
    bus.publish(OutgoingMessage::new(&topic, &b"{\"sasl\":true}"[..]).key("k"))
        .await
        .expect("publish");
    let subscription = intake_bus::Subscription {
        group: unique("g"),
        topics: vec![topic.clone()],
        start: intake_bus::StartFrom::Earliest,
    };
    let mut consumer = bus.subscribe(subscription).await.expect("subscribe");
    let got = intake_bus::testsuite::next_within(&mut *consumer, "the message").await;
    assert_eq!(got.value, b"{\"sasl\":true}");
    consumer.commit(&got).await.expect("commit");
}

#[tokio::test]
async fn scram_sha_512_and_256_authenticate() {
    let password = intake_testkit::servers::required("INTAKE_TEST_KAFKA_SASL_PASSWORD");
    round_trip(&sasl_bus("SCRAM-SHA-512", "intake-scram-512", &password)).await;
    round_trip(&sasl_bus("SCRAM-SHA-256", "intake-scram-256", &password)).await;
}

#[tokio::test]
async fn a_wrong_scram_password_is_refused() {
    let bus = sasl_bus("SCRAM-SHA-512", "intake-scram-512", "not-the-password");
    let err = bus.check().await.expect_err("authentication must fail");
    assert!(matches!(err, BusError::Unavailable { .. }), "{err:?}");
    let err = bus
        .list_topics()
        .await
        .expect_err("nothing without authentication");
    assert!(matches!(err, BusError::Unavailable { .. }), "{err:?}");
}

/// A bus on the harness's TLS endpoint (TLS without SASL; the endpoint requires a client
/// certificate signed by the harness's CA).
fn tls_bus(client_certificate: bool) -> KafkaBus {
    let required = intake_testkit::servers::required;
    let (cert, key) = if client_certificate {
        (
            Some(required("INTAKE_TEST_KAFKA_TLS_CERT")),
            Some(required("INTAKE_TEST_KAFKA_TLS_KEY")),
        )
    } else {
        (None, None)
    };
    let config = KafkaConfig {
        brokers: required("INTAKE_TEST_KAFKA_TLS_BROKERS"),
        security_protocol: "SSL".into(),
        ssl_ca_location: Some(required("INTAKE_TEST_KAFKA_TLS_CA")),
        ssl_cert_location: cert,
        ssl_key_location: key,
        ..KafkaConfig::default()
    };
    let settings = ClientSettings::from_config(&config).expect("settings");
    KafkaBus::with_settings(settings, Duration::from_secs(10)).expect("kafka bus")
}

#[tokio::test]
async fn tls_without_sasl_with_a_client_certificate() {
    round_trip(&tls_bus(true)).await;
}

#[tokio::test]
async fn tls_refuses_a_client_without_a_certificate() {
    let err = tls_bus(false)
        .check()
        .await
        .expect_err("the endpoint requires a client certificate");
    assert!(matches!(err, BusError::Unavailable { .. }), "{err:?}");
}
