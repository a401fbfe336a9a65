use super::*;

/// An app-config as Clowder writes it in an ephemeral environment with managed Kafka (SASL),
/// MinIO and a PostgreSQL per app.
const CDAPPCONFIG: &str = r#"{
  "privatePort": 10000,
  "publicPort": 8000,
  "webPort": 8000,
  "metricsPort": 9000,
  "metricsPath": "/metrics",
  "logging": {"type": "null", "cloudwatch": {"accessKeyId": "", "secretAccessKey": "", "region": "", "logGroup": ""}},
  "metadata": {"name": "intake", "envName": "env-ephemeral-42", "deployments": [{"name": "ingress", "image": "quay.io/cloudservices/intake:abc123"}]},
  "kafka": {
    "brokers": [
      {"hostname": "env-ephemeral-42-kafka-bootstrap.ephemeral-42.svc", "port": 9093, "authtype": "sasl",
       "sasl": {"username": "intake-user", "password": "kafka-s3cret", "saslMechanism": "SCRAM-SHA-512", "securityProtocol": "SASL_SSL"},
       "securityProtocol": "SASL_SSL"},
      {"hostname": "env-ephemeral-42-kafka-1.ephemeral-42.svc", "port": 9093, "authtype": "sasl",
       "sasl": {"username": "intake-user", "password": "kafka-s3cret", "saslMechanism": "SCRAM-SHA-512", "securityProtocol": "SASL_SSL"}}
    ],
    "topics": [
      {"requestedName": "platform.upload.announce", "name": "platform.upload.announce-ephemeral-42"},
      {"requestedName": "platform.upload.advisor", "name": "platform.upload.advisor-ephemeral-42"},
      {"requestedName": "platform.payload-status", "name": "platform.payload-status-ephemeral-42"}
    ]
  },
  "objectStore": {
    "hostname": "env-ephemeral-42-minio.ephemeral-42.svc",
    "port": 9000,
    "tls": false,
    "accessKey": "store-access",
    "secretKey": "store-secret",
    "buckets": [
      {"requestedName": "insights-upload-quarantine", "name": "insights-upload-quarantine-eph42", "accessKey": "bucket-access", "secretKey": "bucket-secret"},
      {"requestedName": "insights-upload-perm-test", "name": "insights-upload-perm-eph42", "accessKey": "bucket-access", "secretKey": "bucket-secret"},
      {"requestedName": "insights-upload-rejected", "name": "insights-upload-rejected-eph42", "accessKey": "bucket-access", "secretKey": "bucket-secret"},
      {"requestedName": "another-apps-bucket", "name": "another-apps-bucket-eph42"}
    ]
  },
  "database": {
    "name": "payload-tracker",
    "username": "user_x1",
    "password": "p@ss/w:rd",
    "hostname": "intake-db.ephemeral-42.svc",
    "port": 5432,
    "adminUsername": "postgres",
    "adminPassword": "admin-secret",
    "rdsCa": "",
    "sslMode": "disable"
  }
}"#;

fn app() -> AppConfig {
    AppConfig::parse("/cdapp/cdappconfig.json", CDAPPCONFIG).unwrap()
}

fn env(pairs: &[(&str, &str)]) -> EnvMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn brokers_sasl_store_buckets_database_and_ports_come_from_the_file() {
    let merged = overlay(&EnvMap::new(), &app(), Layout::OnePart, &CaFiles::default());
    for (name, value) in [
        (
            "KAFKA_BROKERS",
            "env-ephemeral-42-kafka-bootstrap.ephemeral-42.svc:9093,env-ephemeral-42-kafka-1.ephemeral-42.svc:9093",
        ),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("KAFKA_SASL_USERNAME", "intake-user"),
        ("KAFKA_SASL_PASSWORD", "kafka-s3cret"),
        (
            "S3_ENDPOINT_URL",
            "http://env-ephemeral-42-minio.ephemeral-42.svc:9000",
        ),
        ("S3_QUARANTINE", "insights-upload-quarantine-eph42"),
        ("S3_PERM", "insights-upload-perm-eph42"),
        ("S3_REJECT", "insights-upload-rejected-eph42"),
        ("AWS_ACCESS_KEY_ID", "bucket-access"),
        ("AWS_SECRET_ACCESS_KEY", "bucket-secret"),
        (
            "TRACKER_DATABASE_URL",
            "postgres://user_x1:p%40ss%2Fw%3Ard@intake-db.ephemeral-42.svc:5432/payload-tracker?sslmode=disable",
        ),
        ("INGRESS_LISTEN", "0.0.0.0:8000"),
        ("TRACKER_LISTEN", "0.0.0.0:8000"),
        ("INGRESS_METRICS_LISTEN", "0.0.0.0:9000"),
        ("TRACKER_METRICS_LISTEN", "0.0.0.0:9000"),
        ("VALIDATOR_LISTEN", "0.0.0.0:9000"),
        ("PIPELINE_LISTEN", "0.0.0.0:9000"),
    ] {
        assert_eq!(merged.get(name).map(String::as_str), Some(value), "{name}");
    }
    // The merged environment is one the configuration accepts, and it selects the real engines.
    let dir = std::path::Path::new("/d");
    let bus = crate::config::BusConfig::from_env(&merged, dir).unwrap();
    assert_eq!(bus.driver, crate::config::BusDriver::Kafka);
    let storage = crate::config::StorageConfig::from_env(&merged, dir).unwrap();
    assert_eq!(storage.driver, crate::config::StorageDriver::S3);
    assert_eq!(storage.buckets.perm, "insights-upload-perm-eph42");
    let tracker = crate::config::TrackerConfig::from_env(&merged, dir).unwrap();
    assert!(tracker.database_url.starts_with("postgres://user_x1:"));
}

#[test]
fn requested_topics_map_to_their_real_names() {
    let names = app().topic_names();
    assert_eq!(
        names.get("platform.upload.announce").map(String::as_str),
        Some("platform.upload.announce-ephemeral-42")
    );
    assert_eq!(names.len(), 3);
}

#[test]
fn variables_set_in_the_environment_win() {
    let explicit = env(&[
        ("KAFKA_BROKERS", "my-kafka:9092"),
        ("AWS_ACCESS_KEY_ID", "mine"),
        ("TRACKER_DATABASE_URL", "postgres://me@db/t"),
        ("INGRESS_LISTEN", "0.0.0.0:8080"),
        // An older name the configuration reads counts as set.
        ("AWS_DEFAULT_REGION", "eu-west-1"),
    ]);
    let merged = overlay(&explicit, &app(), Layout::OnePart, &CaFiles::default());
    assert_eq!(merged["KAFKA_BROKERS"], "my-kafka:9092");
    assert_eq!(merged["AWS_ACCESS_KEY_ID"], "mine");
    assert_eq!(merged["TRACKER_DATABASE_URL"], "postgres://me@db/t");
    assert_eq!(merged["INGRESS_LISTEN"], "0.0.0.0:8080");
    // Unset ones still come from the file.
    assert_eq!(merged["KAFKA_SASL_USERNAME"], "intake-user");
    assert_eq!(merged["TRACKER_LISTEN"], "0.0.0.0:8000");
    let kafkamq = overlay(
        &env(&[("KAFKAMQ", "seed:9092")]),
        &app(),
        Layout::OnePart,
        &CaFiles::default(),
    );
    assert!(!kafkamq.contains_key("KAFKA_BROKERS"));
}

#[test]
fn a_bucket_variable_is_a_requested_name() {
    let merged = overlay(
        &env(&[
            ("S3_PERM", "another-apps-bucket"),
            ("S3_REJECT", "not-in-the-file"),
        ]),
        &app(),
        Layout::OnePart,
        &CaFiles::default(),
    );
    assert_eq!(merged["S3_PERM"], "another-apps-bucket-eph42");
    assert_eq!(merged["S3_REJECT"], "not-in-the-file");
    assert_eq!(merged["S3_QUARANTINE"], "insights-upload-quarantine-eph42");
}

#[test]
fn serve_puts_the_tracker_on_the_private_port() {
    let merged = overlay(&EnvMap::new(), &app(), Layout::Serve, &CaFiles::default());
    assert_eq!(merged["INGRESS_LISTEN"], "0.0.0.0:8000");
    assert_eq!(merged["TRACKER_LISTEN"], "0.0.0.0:10000");
    assert_eq!(merged["INGRESS_METRICS_LISTEN"], "0.0.0.0:9000");
    assert!(!merged.contains_key("TRACKER_METRICS_LISTEN"));
}

#[test]
fn a_minimal_file_gives_only_ports() {
    let text = r#"{"webPort": 8000, "metricsPort": 9000, "metricsPath": "/metrics", "logging": {"type": "null"}}"#;
    let app = AppConfig::parse("f", text).unwrap();
    let vars = app.variables(&EnvMap::new(), Layout::OnePart, &CaFiles::default());
    assert_eq!(vars["INGRESS_LISTEN"], "0.0.0.0:8000");
    assert!(!vars.contains_key("KAFKA_BROKERS"));
    assert!(!vars.contains_key("S3_ENDPOINT_URL"));
    assert!(!vars.contains_key("TRACKER_DATABASE_URL"));
    assert!(app.topic_names().is_empty());
}

#[test]
fn tls_store_and_plain_brokers() {
    let text = r#"{"publicPort": 8000, "metricsPort": 9000, "metricsPath": "/metrics",
      "kafka": {"brokers": [{"hostname": "k"}], "topics": []},
      "objectStore": {"hostname": "s3.us-east-1.amazonaws.com", "port": 443, "tls": true,
        "buckets": [{"requestedName": "insights-upload-perm-test", "name": "perm-prod", "region": "us-east-1"}]}}"#;
    let vars = AppConfig::parse("f", text).unwrap().variables(
        &EnvMap::new(),
        Layout::OnePart,
        &CaFiles::default(),
    );
    assert_eq!(vars["KAFKA_BROKERS"], "k:9092");
    assert!(!vars.contains_key("KAFKA_SASL_USERNAME"));
    assert!(!vars.contains_key("KAFKA_SECURITY_PROTOCOL"));
    assert_eq!(
        vars["S3_ENDPOINT_URL"],
        "https://s3.us-east-1.amazonaws.com:443"
    );
    assert_eq!(vars["AWS_REGION"], "us-east-1");
    // No keys in the file: the AWS chain (or the environment) provides them.
    assert!(!vars.contains_key("AWS_ACCESS_KEY_ID"));
}

#[test]
fn a_bad_file_is_an_error_naming_acg_config() {
    for (text, says) in [
        ("{", "not a Clowder app-config"),
        (r#"{"metricsPort": 9000}"#, "metricsPath"),
        (
            r#"{"metricsPort": 9000, "metricsPath": "/prometheus"}"#,
            "/prometheus",
        ),
        (
            r#"{"metricsPort": "nine", "metricsPath": "/metrics"}"#,
            "invalid type",
        ),
        (
            r#"{"metricsPort": 9000, "metricsPath": "/metrics", "kafka": {"brokers": [], "topics": []}}"#,
            "kafka.brokers is empty",
        ),
    ] {
        let err = AppConfig::parse("/cdapp/cdappconfig.json", text).unwrap_err();
        assert!(err.names(ACG_CONFIG), "{text}");
        let message = err.to_string();
        assert!(message.contains(says), "{text}: {message}");
        assert!(message.contains("/cdapp/cdappconfig.json"), "{message}");
    }
}

#[test]
fn ca_certificates_go_to_the_files_the_binary_wrote() {
    let text = r#"{"publicPort": 8000, "metricsPort": 9000, "metricsPath": "/metrics",
      "kafka": {"brokers": [{"hostname": "k", "port": 9093, "cacert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}], "topics": []},
      "database": {"name": "db", "username": "u", "password": "p", "hostname": "h", "port": 5432,
        "adminUsername": "a", "adminPassword": "b", "sslMode": "verify-full",
        "rdsCa": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"}}"#;
    let app = AppConfig::parse("f", text).unwrap();
    assert!(app.kafka_ca().unwrap().contains("MIIB"));
    assert!(app.database_ca().unwrap().contains("MIIC"));
    let ca = CaFiles {
        kafka: Some("/tmp/intake-acg-1-kafka-ca.pem".into()),
        database: Some("/tmp/intake-acg-1-database-ca.pem".into()),
    };
    let merged = overlay(&EnvMap::new(), &app, Layout::OnePart, &ca);
    assert_eq!(
        merged["KAFKA_SSL_CA_LOCATION"],
        "/tmp/intake-acg-1-kafka-ca.pem"
    );
    assert_eq!(
        merged["TRACKER_DATABASE_URL"],
        "postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fintake-acg-1-database-ca.pem"
    );
    // The realistic file has none (an empty rdsCa is none).
    assert_eq!(self::app().kafka_ca(), None);
    assert_eq!(self::app().database_ca(), None);
}
