//! Bus settings and topic names (spec/README.md, "Bus"; messages.md, "Topics").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, EnvMap, EnvReader};

pub(super) const VARIABLES: &[&str] = &[
    "BUS_DRIVER",
    "BUS_DATA_DIR",
    "KAFKA_BROKERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CA_LOCATION",
    "KAFKA_SSL_CERT_LOCATION",
    "KAFKA_SSL_KEY_LOCATION",
    "KAFKA_TOPIC_PREFIX",
    "KAFKA_SESSION_TIMEOUT",
    "BUS_CREATE_TOPICS",
    "BUS_PUBLISH_TIMEOUT",
    "BUS_RETENTION",
    "BUS_LEASE_EXPIRY",
    "BUS_PARTITIONS",
    "TOPIC_SERVICE_TEMPLATE",
    "TOPIC_ANNOUNCE",
    "TOPIC_VALIDATION",
    "TOPIC_VALIDATION_DLQ",
    "TOPIC_AVAILABLE",
    "TOPIC_PAYLOAD_STATUS",
    "TOPIC_PAYLOAD_STATUS_DLQ",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusDriver {
    Embedded,
    Kafka,
}

/// Kafka connection settings. The password never appears in Debug output.
#[derive(Clone, Default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub security_protocol: String,
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    pub ssl_ca_location: Option<String>,
    pub ssl_cert_location: Option<String>,
    pub ssl_key_location: Option<String>,
    /// `KAFKA_SESSION_TIMEOUT`: how long the group waits for a silent member (one that crashed)
    /// before giving its partitions to another; `None` keeps librdkafka's 45 s.
    pub session_timeout: Option<Duration>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .finish_non_exhaustive()
    }
}

/// Topic names as configured, before the prefix. Use [`BusConfig::topic`] to get wire names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub service_template: String,
    pub announce: String,
    pub validation: String,
    pub validation_dlq: String,
    pub available: String,
    pub payload_status: String,
    pub payload_status_dlq: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            service_template: "platform.upload.{service}".into(),
            announce: "platform.upload.announce".into(),
            validation: "platform.upload.validation".into(),
            validation_dlq: "platform.upload.validation.dlq".into(),
            available: "platform.upload.available".into(),
            payload_status: "platform.payload-status".into(),
            payload_status_dlq: "platform.payload-status.dlq".into(),
        }
    }
}

impl Topics {
    /// The configured topic (other than per-service ones) that `service`'s announce topic would
    /// be, if any: such a name can never be a service.
    pub fn service_collision(&self, service: &str) -> Option<&str> {
        let topic = self.service_template.replace("{service}", service);
        [
            &self.announce,
            &self.validation,
            &self.validation_dlq,
            &self.available,
            &self.payload_status,
            &self.payload_status_dlq,
        ]
        .into_iter()
        .find(|t| **t == topic)
        .map(String::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct BusConfig {
    pub driver: BusDriver,
    pub data_dir: PathBuf,
    pub kafka: KafkaConfig,
    /// `KAFKA_TOPIC_PREFIX`, prepended to every topic (embedded bus too, for symmetry).
    pub topic_prefix: String,
    pub create_topics: bool,
    pub publish_timeout: Duration,
    /// `BUS_RETENTION` (embedded bus): messages older than this are deleted.
    pub retention: Duration,
    /// `BUS_LEASE_EXPIRY` (embedded bus): how long a group waits for a member that stopped
    /// heartbeating (crashed) before another takes its topics.
    pub lease_expiry: Duration,
    /// `BUS_PARTITIONS` (embedded bus): partitions of a topic created without a count (on first
    /// publish, or by `BUS_CREATE_TOPICS`), 1 to 1024; default 1, as a Kafka broker's
    /// `num.partitions`.
    pub partitions: i32,
    pub topics: Topics,
    /// Requested topic name → real name (Clowder's `kafka.topics`, see [`super::clowder`]): a
    /// topic listed here goes by its real name, without the prefix. Empty unless `ACG_CONFIG`.
    pub topic_names: BTreeMap<String, String>,
}

impl BusConfig {
    pub fn from_env(env: &EnvMap, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let mut r = EnvReader::new(env);
        let brokers = r
            .raw("KAFKA_BROKERS")
            .or_else(|| r.raw("KAFKAMQ"))
            .map(str::to_owned);
        let default_driver = if brokers.is_some() {
            BusDriver::Kafka
        } else {
            BusDriver::Embedded
        };
        let driver = r.parsed("BUS_DRIVER", default_driver, |t| {
            match t.to_ascii_lowercase().as_str() {
                "kafka" => Ok(BusDriver::Kafka),
                "embedded" => Ok(BusDriver::Embedded),
                _ => Err("expected kafka or embedded".into()),
            }
        });
        if driver == BusDriver::Kafka && brokers.is_none() {
            r.fail("KAFKA_BROKERS", "required when BUS_DRIVER=kafka");
        }
        let data_dir = r
            .raw("BUS_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("bus"));
        let security_protocol = r.parsed("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT".to_owned(), |t| {
            let u = t.to_ascii_uppercase();
            match u.as_str() {
                "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL" => Ok(u),
                _ => Err("expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL".into()),
            }
        });
        let sasl_mechanism = match r.raw("KAFKA_SASL_MECHANISM") {
            None => None,
            Some(t) => {
                let u = t.to_ascii_uppercase();
                if matches!(u.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                    Some(u)
                } else {
                    r.fail(
                        "KAFKA_SASL_MECHANISM",
                        format!("expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (got {t:?})"),
                    );
                    None
                }
            }
        };
        if security_protocol.starts_with("SASL") && sasl_mechanism.is_none() {
            r.fail(
                "KAFKA_SASL_MECHANISM",
                format!("required with KAFKA_SECURITY_PROTOCOL={security_protocol}"),
            );
        }
        let kafka = KafkaConfig {
            brokers: brokers.unwrap_or_default(),
            security_protocol,
            sasl_mechanism,
            sasl_username: r.raw("KAFKA_SASL_USERNAME").map(str::to_owned),
            sasl_password: r.raw("KAFKA_SASL_PASSWORD").map(str::to_owned),
            ssl_ca_location: r.raw("KAFKA_SSL_CA_LOCATION").map(str::to_owned),
            ssl_cert_location: r.raw("KAFKA_SSL_CERT_LOCATION").map(str::to_owned),
            ssl_key_location: r.raw("KAFKA_SSL_KEY_LOCATION").map(str::to_owned),
            session_timeout: r.raw("KAFKA_SESSION_TIMEOUT").is_some().then(|| {
                r.parsed("KAFKA_SESSION_TIMEOUT", Duration::ZERO, |t| {
                    let d = super::units::parse_duration(t)?;
                    if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
                        return Err("expected between 1s and 1h".into());
                    }
                    Ok(d)
                })
            }),
        };
        let topic_prefix = r.string("KAFKA_TOPIC_PREFIX", "");
        let create_topics = r.bool("BUS_CREATE_TOPICS", false);
        let publish_timeout = r.duration("BUS_PUBLISH_TIMEOUT", Duration::from_secs(10));
        let at_least = |min: Duration| {
            move |t: &str| {
                let d = super::units::parse_duration(t)?;
                if d < min {
                    return Err(format!("expected at least {}s", min.as_secs()));
                }
                Ok(d)
            }
        };
        let retention = r.parsed(
            "BUS_RETENTION",
            Duration::from_secs(7 * 86_400),
            at_least(Duration::from_secs(60)),
        );
        let lease_expiry = r.parsed(
            "BUS_LEASE_EXPIRY",
            Duration::from_secs(10),
            at_least(Duration::from_secs(1)),
        );
        let partitions = r.parsed("BUS_PARTITIONS", 1, |t| match t.parse::<i32>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err("expected a whole number from 1 to 1024".into()),
        });
        let d = Topics::default();
        let topics = Topics {
            service_template: r.string("TOPIC_SERVICE_TEMPLATE", &d.service_template),
            announce: r.string("TOPIC_ANNOUNCE", &d.announce),
            validation: r.string("TOPIC_VALIDATION", &d.validation),
            validation_dlq: r.string("TOPIC_VALIDATION_DLQ", &d.validation_dlq),
            available: r.string("TOPIC_AVAILABLE", &d.available),
            payload_status: r.string("TOPIC_PAYLOAD_STATUS", &d.payload_status),
            payload_status_dlq: r.string("TOPIC_PAYLOAD_STATUS_DLQ", &d.payload_status_dlq),
        };
        if !topics.service_template.contains("{service}") {
            r.fail("TOPIC_SERVICE_TEMPLATE", "must contain {service}");
        }
        r.finish(Self {
            driver,
            data_dir,
            kafka,
            topic_prefix,
            create_topics,
            publish_timeout,
            retention,
            lease_expiry,
            partitions,
            topics,
            topic_names: BTreeMap::new(),
        })
    }

    /// The wire name of a configured topic: its real name when [`Self::topic_names`] lists it,
    /// else prefix + name.
    pub fn topic(&self, name: &str) -> String {
        match self.topic_names.get(name) {
            Some(real) => real.clone(),
            None => format!("{}{}", self.topic_prefix, name),
        }
    }

    /// The wire name of a service's announce topic.
    pub fn service_topic(&self, service: &str) -> String {
        self.topic(&self.topics.service_template.replace("{service}", service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_whose_topic_is_one_of_ours_collides() {
        let t = Topics::default();
        assert_eq!(
            t.service_collision("validation"),
            Some("platform.upload.validation")
        );
        assert_eq!(t.service_collision("advisor"), None);
        let t = Topics {
            service_template: "svc.{service}".into(),
            available: "svc.ready".into(),
            ..Topics::default()
        };
        assert_eq!(t.service_collision("ready"), Some("svc.ready"));
        assert_eq!(t.service_collision("available"), None);
    }

    #[test]
    fn seed_kafkamq_selects_kafka() {
        let env: EnvMap = [("KAFKAMQ".to_string(), "kafka:29092".to_string())].into();
        let c = BusConfig::from_env(&env, std::path::Path::new("/d")).unwrap();
        assert_eq!(c.driver, BusDriver::Kafka);
        assert_eq!(c.kafka.brokers, "kafka:29092");
    }

    #[test]
    fn prefix_applies_to_every_topic() {
        let env: EnvMap = [(
            "KAFKA_TOPIC_PREFIX".to_string(),
            "platform-mq-stage.".to_string(),
        )]
        .into();
        let c = BusConfig::from_env(&env, std::path::Path::new("/d")).unwrap();
        assert_eq!(
            c.service_topic("advisor"),
            "platform-mq-stage.platform.upload.advisor"
        );
        assert_eq!(
            c.topic(&c.topics.validation_dlq),
            "platform-mq-stage.platform.upload.validation.dlq"
        );
    }

    #[test]
    fn a_mapped_topic_goes_by_its_real_name() {
        let env: EnvMap = [("KAFKA_TOPIC_PREFIX".to_string(), "p.".to_string())].into();
        let mut c = BusConfig::from_env(&env, std::path::Path::new("/d")).unwrap();
        c.topic_names.insert(
            "platform.upload.advisor".into(),
            "platform.upload.advisor-abc".into(),
        );
        assert_eq!(c.service_topic("advisor"), "platform.upload.advisor-abc");
        assert_eq!(
            c.service_topic("compliance"),
            "p.platform.upload.compliance"
        );
        assert_eq!(c.topic(&c.topics.available), "p.platform.upload.available");
    }

    #[test]
    fn session_timeout_is_optional_and_bounded() {
        let with = |value: &str| -> EnvMap {
            [("KAFKA_SESSION_TIMEOUT".to_string(), value.to_string())].into()
        };
        let dir = std::path::Path::new("/d");
        let unset = BusConfig::from_env(&EnvMap::new(), dir).unwrap();
        assert_eq!(unset.kafka.session_timeout, None);
        let set = BusConfig::from_env(&with("10s"), dir).unwrap();
        assert_eq!(set.kafka.session_timeout, Some(Duration::from_secs(10)));
        for bad in ["500ms", "2h", "soon"] {
            assert!(
                BusConfig::from_env(&with(bad), dir)
                    .unwrap_err()
                    .names("KAFKA_SESSION_TIMEOUT"),
                "{bad}"
            );
        }
    }

    #[test]
    fn embedded_retention_and_lease_expiry() {
        let dir = std::path::Path::new("/d");
        let c = BusConfig::from_env(&EnvMap::new(), dir).unwrap();
        assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.lease_expiry, Duration::from_secs(10));
        let env: EnvMap = [
            ("BUS_RETENTION".to_string(), "2h".to_string()),
            ("BUS_LEASE_EXPIRY".to_string(), "3s".to_string()),
        ]
        .into();
        let c = BusConfig::from_env(&env, dir).unwrap();
        assert_eq!(
            (c.retention, c.lease_expiry),
            (Duration::from_secs(7200), Duration::from_secs(3))
        );
        for (name, bad) in [("BUS_RETENTION", "10s"), ("BUS_LEASE_EXPIRY", "100ms")] {
            let env: EnvMap = [(name.to_string(), bad.to_string())].into();
            assert!(
                BusConfig::from_env(&env, dir).unwrap_err().names(name),
                "{name}={bad}"
            );
        }
    }

    #[test]
    fn embedded_default_partitions() {
        let dir = std::path::Path::new("/d");
        let c = BusConfig::from_env(&EnvMap::new(), dir).unwrap();
        assert_eq!(c.partitions, 1);
        let env: EnvMap = [("BUS_PARTITIONS".to_string(), "6".to_string())].into();
        assert_eq!(BusConfig::from_env(&env, dir).unwrap().partitions, 6);
        for bad in ["0", "-1", "1025", "many"] {
            let env: EnvMap = [("BUS_PARTITIONS".to_string(), bad.to_string())].into();
            assert!(
                BusConfig::from_env(&env, dir)
                    .unwrap_err()
                    .names("BUS_PARTITIONS"),
                "{bad}"
            );
        }
    }

    #[test]
    fn sasl_needs_a_mechanism() {
        let env: EnvMap = [
            ("KAFKA_BROKERS".to_string(), "k:9092".to_string()),
            (
                "KAFKA_SECURITY_PROTOCOL".to_string(),
                "SASL_SSL".to_string(),
            ),
        ]
        .into();
        assert!(BusConfig::from_env(&env, std::path::Path::new("/d"))
            .unwrap_err()
            .names("KAFKA_SASL_MECHANISM"));
    }
}
