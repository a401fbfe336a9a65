//! Per-section buses (spec pipeline.md §3.2): a `consumer`, `publisher` or `dead_letter` section
//! with its own `brokers` or `kafka:` map gets its own Kafka client, built from the shared
//! `BusConfig` (`KAFKA_*`: security protocol, SASL, TLS) with `brokers` replacing the bootstrap
//! list and the `kafka:` entries set over it. A section without either uses the shared bus.

use std::collections::BTreeMap;
use std::sync::Arc;

use intake_bus::kafka::{ClientSettings, KafkaBus};
use intake_bus::Bus;
use intake_core::config::{BusConfig, BusDriver};

use crate::config::PipelineConfig;
use crate::error::PipelineError;

/// The bus one section talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionBus {
    /// The process's bus (`BUS_DRIVER`, `KAFKA_*`).
    Shared,
    /// A Kafka client of its own, with these settings.
    Kafka(ClientSettings),
}

/// The settings of one section: `brokers` and `kafka` as configured, over `base`.
///
/// On the embedded bus, a `kafka:` map without `brokers` has nothing to tune: it is ignored (with
/// a warning) and the section stays on the shared bus. `brokers` always means Kafka.
pub fn derive(
    section: &str,
    brokers: Option<&str>,
    kafka: &BTreeMap<String, String>,
    base: &BusConfig,
) -> Result<SectionBus, PipelineError> {
    let brokers = brokers.map(str::trim).filter(|b| !b.is_empty());
    if brokers.is_none() && kafka.is_empty() {
        return Ok(SectionBus::Shared);
    }
    if brokers.is_none() && base.driver == BusDriver::Embedded {
        tracing::warn!(
            section,
            "kafka settings are ignored: the shared bus is embedded and the section names no brokers"
        );
        return Ok(SectionBus::Shared);
    }
    let mut kc = base.kafka.clone();
    if let Some(b) = brokers {
        kc.brokers = b.to_owned();
    }
    let mut settings = ClientSettings::from_config(&kc)
        .map_err(|e| PipelineError::setup_from(format!("service.{section}"), e))?;
    for (k, v) in kafka {
        settings.set(k.as_str(), v.as_str());
    }
    Ok(SectionBus::Kafka(settings))
}

/// The buses of the three sections that have one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionBuses {
    pub consumer: SectionBus,
    pub publisher: SectionBus,
    pub dead_letter: SectionBus,
}

impl SectionBuses {
    pub fn derive(config: &PipelineConfig, base: &BusConfig) -> Result<Self, PipelineError> {
        Ok(Self {
            consumer: derive(
                "consumer",
                config.consumer.brokers.as_deref(),
                &config.consumer.kafka,
                base,
            )?,
            publisher: derive(
                "publisher",
                config.publisher.brokers.as_deref(),
                &config.publisher.kafka,
                base,
            )?,
            dead_letter: derive(
                "dead_letter",
                config.dead_letter.brokers.as_deref(),
                &config.dead_letter.kafka,
                base,
            )?,
        })
    }
}

impl SectionBus {
    /// The shared bus, or a new Kafka client (librdkafka connects in the background).
    pub fn open(
        &self,
        shared: &Arc<dyn Bus>,
        base: &BusConfig,
    ) -> Result<Arc<dyn Bus>, PipelineError> {
        match self {
            SectionBus::Shared => Ok(shared.clone()),
            SectionBus::Kafka(settings) => Ok(Arc::new(KafkaBus::with_settings(
                settings.clone(),
                base.publish_timeout,
            )?)),
        }
    }

    /// One line for `intake pipeline check` (no secrets: only the brokers and the keys set).
    pub fn describe(&self) -> String {
        match self {
            SectionBus::Shared => "the shared bus".to_owned(),
            SectionBus::Kafka(s) => format!(
                "kafka {} ({})",
                s.get("bootstrap.servers").unwrap_or_default(),
                s.entries()
                    .map(|(k, _)| k)
                    .filter(|k| *k != "bootstrap.servers")
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::config::KafkaConfig;

    fn base(driver: BusDriver) -> BusConfig {
        let env = intake_core::config::EnvMap::new();
        let mut c = BusConfig::from_env(&env, std::path::Path::new("/tmp/unused")).unwrap();
        c.driver = driver;
        c.kafka = KafkaConfig {
            brokers: "shared:9092".into(),
            security_protocol: "SASL_PLAINTEXT".into(),
            sasl_mechanism: Some("PLAIN".into()),
            sasl_username: Some("svc".into()),
            sasl_password: Some("pw".into()),
            ..KafkaConfig::default()
        };
        c
    }

    fn map(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_section_without_settings_uses_the_shared_bus() {
        for driver in [BusDriver::Embedded, BusDriver::Kafka] {
            assert_eq!(
                derive("consumer", None, &map(&[]), &base(driver)).unwrap(),
                SectionBus::Shared
            );
            assert_eq!(
                derive("consumer", Some(" "), &map(&[]), &base(driver)).unwrap(),
                SectionBus::Shared
            );
        }
    }

    #[test]
    fn kafka_settings_go_over_the_shared_kafka_config() {
        let s = derive(
            "publisher",
            None,
            &map(&[("compression.type", "zstd"), ("client.id", "ccx")]),
            &base(BusDriver::Kafka),
        )
        .unwrap();
        let SectionBus::Kafka(s) = s else {
            panic!("expected a kafka section bus")
        };
        assert_eq!(s.get("bootstrap.servers"), Some("shared:9092"));
        assert_eq!(s.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(s.get("sasl.username"), Some("svc"));
        assert_eq!(s.get("compression.type"), Some("zstd"));
        assert_eq!(s.get("client.id"), Some("ccx"));
    }

    #[test]
    fn brokers_replace_the_bootstrap_list_even_over_the_embedded_bus() {
        let s = derive(
            "consumer",
            Some("other:9093"),
            &map(&[("session.timeout.ms", "20000")]),
            &base(BusDriver::Embedded),
        )
        .unwrap();
        let SectionBus::Kafka(s) = s else {
            panic!("expected a kafka section bus")
        };
        assert_eq!(s.get("bootstrap.servers"), Some("other:9093"));
        assert_eq!(s.get("session.timeout.ms"), Some("20000"));
        assert!(SectionBus::Kafka(s.clone())
            .describe()
            .starts_with("kafka other:9093 ("));
        assert!(!SectionBus::Kafka(s).describe().contains("pw"));
    }

    #[test]
    fn kafka_settings_without_brokers_on_the_embedded_bus_are_ignored() {
        assert_eq!(
            derive(
                "dead_letter",
                None,
                &map(&[("acks", "all")]),
                &base(BusDriver::Embedded)
            )
            .unwrap(),
            SectionBus::Shared
        );
    }

    #[test]
    fn a_bad_shared_kafka_config_names_the_section() {
        let mut b = base(BusDriver::Kafka);
        b.kafka.sasl_password = None;
        let e = derive("publisher", None, &map(&[("acks", "all")]), &b).unwrap_err();
        assert!(e.to_string().contains("service.publisher"), "{e}");
    }
}
