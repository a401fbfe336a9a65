//! librdkafka client settings built from [`KafkaConfig`]: brokers, security protocol, SASL and TLS.
//! Secrets never appear in Debug output.

use std::collections::BTreeMap;
use std::fmt;

use intake_core::config::KafkaConfig;
use rdkafka::ClientConfig;

use crate::BusError;

/// Keys whose values are secrets: shown as `<redacted>` by Debug.
const SECRET_KEYS: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
];

/// The librdkafka properties every client of one bus shares (producer, admin, consumers).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSettings {
    entries: BTreeMap<String, String>,
    /// Properties only consumers take (librdkafka warns when a producer is given them).
    consumer: BTreeMap<String, String>,
}

impl ClientSettings {
    /// Settings for `config`. SASL credentials are used only with a `SASL_*` protocol; TLS files
    /// with `SSL` or `SASL_SSL` (TLS without SASL is allowed).
    pub fn from_config(config: &KafkaConfig) -> Result<Self, BusError> {
        let brokers = config.brokers.trim();
        if brokers.is_empty() {
            return Err(BusError::config("KAFKA_BROKERS is empty"));
        }
        let protocol = if config.security_protocol.is_empty() {
            "PLAINTEXT".to_owned()
        } else {
            config.security_protocol.to_ascii_uppercase()
        };
        let (sasl, tls) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (false, true),
            "SASL_PLAINTEXT" => (true, false),
            "SASL_SSL" => (true, true),
            other => {
                return Err(BusError::config(format!(
                    "KAFKA_SECURITY_PROTOCOL {other:?} is not supported"
                )))
            }
        };
        let mut settings = Self {
            entries: BTreeMap::new(),
            consumer: BTreeMap::new(),
        };
        if let Some(session) = config.session_timeout {
            // Heartbeats must come well inside the session; librdkafka's default is 3 s.
            let heartbeat = (session / 3).min(std::time::Duration::from_secs(3));
            settings
                .consumer
                .insert("session.timeout.ms".into(), session.as_millis().to_string());
            settings.consumer.insert(
                "heartbeat.interval.ms".into(),
                heartbeat.as_millis().to_string(),
            );
        }
        settings
            .set("bootstrap.servers", brokers)
            .set("client.id", "intake")
            .set("security.protocol", protocol.to_ascii_lowercase());
        if sasl {
            let mechanism = config.sasl_mechanism.as_deref().ok_or_else(|| {
                BusError::config(format!("KAFKA_SASL_MECHANISM is required with {protocol}"))
            })?;
            let username = config.sasl_username.as_deref().ok_or_else(|| {
                BusError::config(format!("KAFKA_SASL_USERNAME is required with {protocol}"))
            })?;
            let password = config.sasl_password.as_deref().ok_or_else(|| {
                BusError::config(format!("KAFKA_SASL_PASSWORD is required with {protocol}"))
            })?;
            settings
                .set("sasl.mechanism", mechanism.to_ascii_uppercase())
                .set("sasl.username", username)
                .set("sasl.password", password);
        } else if config.sasl_mechanism.is_some() || config.sasl_username.is_some() {
            tracing::warn!(protocol = %protocol, "SASL settings are ignored: the security protocol does not use SASL");
        }
        if tls {
            // Without a CA file, the system's roots (librdkafka probes the usual locations).
            settings.set(
                "ssl.ca.location",
                config.ssl_ca_location.as_deref().unwrap_or("probe"),
            );
            match (&config.ssl_cert_location, &config.ssl_key_location) {
                (Some(cert), Some(key)) => {
                    settings
                        .set("ssl.certificate.location", cert)
                        .set("ssl.key.location", key);
                }
                (None, None) => {}
                _ => {
                    return Err(BusError::config(
                        "KAFKA_SSL_CERT_LOCATION and KAFKA_SSL_KEY_LOCATION must be set together",
                    ))
                }
            }
        } else if config.ssl_ca_location.is_some() || config.ssl_cert_location.is_some() {
            tracing::warn!(protocol = %protocol, "TLS settings are ignored: the security protocol does not use TLS");
        }
        Ok(settings)
    }

    /// Sets (or replaces) one librdkafka property.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.entries.insert(key.into(), value.into());
        self
    }

    /// One property's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Every property, sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// One consumer-only property's value.
    pub fn consumer_property(&self, key: &str) -> Option<&str> {
        self.consumer.get(key).map(String::as_str)
    }

    /// A consumer's rdkafka configuration: the shared properties, the consumer-only ones, `extra`.
    pub(crate) fn consumer_config(&self, extra: &[(&str, String)]) -> ClientConfig {
        let mut config = self.client_config(extra);
        for (k, v) in &self.consumer {
            config.set(k, v);
        }
        config
    }

    /// An rdkafka configuration holding these properties plus `extra`.
    pub(crate) fn client_config(&self, extra: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.entries {
            config.set(k, v);
        }
        for (k, v) in extra {
            config.set(*k, v);
        }
        config
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.entries {
            if SECRET_KEYS.contains(&k.as_str()) {
                map.entry(k, &"<redacted>");
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_timeout_goes_to_consumers_only_with_heartbeats_inside_it() {
        let mut config = base("PLAINTEXT");
        assert_eq!(
            ClientSettings::from_config(&config)
                .unwrap()
                .consumer_property("session.timeout.ms"),
            None
        );
        for (session, heartbeat) in [(10, "3000"), (3, "1000")] {
            config.session_timeout = Some(std::time::Duration::from_secs(session));
            let s = ClientSettings::from_config(&config).unwrap();
            assert_eq!(
                s.consumer_property("session.timeout.ms"),
                Some((session * 1000).to_string().as_str())
            );
            assert_eq!(
                s.consumer_property("heartbeat.interval.ms"),
                Some(heartbeat)
            );
            assert!(
                s.entries().all(|(k, _)| !k.contains("session")),
                "producers and admin clients do not get it"
            );
        }
    }

    fn base(protocol: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: "k1:9092,k2:9092".into(),
            security_protocol: protocol.into(),
            ..KafkaConfig::default()
        }
    }

    fn pairs(s: &ClientSettings) -> Vec<(String, String)> {
        s.entries()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn expected(items: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn plaintext_sets_only_brokers_and_protocol() {
        let s = ClientSettings::from_config(&base("PLAINTEXT")).unwrap();
        assert_eq!(
            pairs(&s),
            expected(&[
                ("bootstrap.servers", "k1:9092,k2:9092"),
                ("client.id", "intake"),
                ("security.protocol", "plaintext")
            ])
        );
    }

    #[test]
    fn sasl_plain_over_plaintext() {
        let c = KafkaConfig {
            sasl_mechanism: Some("PLAIN".into()),
            sasl_username: Some("svc".into()),
            sasl_password: Some("s3cr3t-pw".into()),
            ..base("SASL_PLAINTEXT")
        };
        let s = ClientSettings::from_config(&c).unwrap();
        assert_eq!(
            pairs(&s),
            expected(&[
                ("bootstrap.servers", "k1:9092,k2:9092"),
                ("client.id", "intake"),
                ("security.protocol", "sasl_plaintext"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "svc"),
                ("sasl.password", "s3cr3t-pw"),
            ])
        );
    }

    #[test]
    fn scram_sha_512_over_tls_with_a_ca() {
        let c = KafkaConfig {
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            sasl_username: Some("svc".into()),
            sasl_password: Some("s3cr3t-pw".into()),
            ssl_ca_location: Some("/etc/kafka/ca.pem".into()),
            ..base("SASL_SSL")
        };
        let s = ClientSettings::from_config(&c).unwrap();
        assert_eq!(s.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(s.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(s.get("sasl.username"), Some("svc"));
        assert_eq!(s.get("sasl.password"), Some("s3cr3t-pw"));
        assert_eq!(s.get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        assert_eq!(s.get("ssl.certificate.location"), None);
    }

    #[test]
    fn tls_without_sasl_with_a_client_certificate() {
        let c = KafkaConfig {
            ssl_cert_location: Some("/tls/client.pem".into()),
            ssl_key_location: Some("/tls/client.key".into()),
            // Ignored: the protocol does not use SASL.
            sasl_username: Some("unused".into()),
            ..base("SSL")
        };
        let s = ClientSettings::from_config(&c).unwrap();
        assert_eq!(
            pairs(&s),
            expected(&[
                ("bootstrap.servers", "k1:9092,k2:9092"),
                ("client.id", "intake"),
                ("security.protocol", "ssl"),
                ("ssl.ca.location", "probe"),
                ("ssl.certificate.location", "/tls/client.pem"),
                ("ssl.key.location", "/tls/client.key"),
            ])
        );
    }

    #[test]
    fn the_password_never_appears_in_debug_output() {
        let c = KafkaConfig {
            sasl_mechanism: Some("SCRAM-SHA-256".into()),
            sasl_username: Some("svc".into()),
            sasl_password: Some("s3cr3t-pw".into()),
            ..base("SASL_SSL")
        };
        let s = ClientSettings::from_config(&c).unwrap();
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("svc"));
    }

    #[test]
    fn incomplete_settings_are_refused() {
        assert!(matches!(
            ClientSettings::from_config(&KafkaConfig {
                brokers: " ".into(),
                ..base("PLAINTEXT")
            }),
            Err(BusError::Config { .. })
        ));
        let no_password = KafkaConfig {
            sasl_mechanism: Some("PLAIN".into()),
            sasl_username: Some("svc".into()),
            ..base("SASL_SSL")
        };
        assert!(
            matches!(ClientSettings::from_config(&no_password), Err(BusError::Config { context, .. }) if context.contains("KAFKA_SASL_PASSWORD"))
        );
        let half_cert = KafkaConfig {
            ssl_cert_location: Some("/tls/c.pem".into()),
            ..base("SSL")
        };
        assert!(matches!(
            ClientSettings::from_config(&half_cert),
            Err(BusError::Config { .. })
        ));
    }
}
