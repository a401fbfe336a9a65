//! The Kafka driver (rdkafka): an idempotent producer whose publish returns once every in-sync
//! replica has the message, consumer groups that commit only what was processed (at-least-once),
//! and topic administration. Topic names arrive as wire names (prefix already applied).

mod admin;
mod consumer;
mod errors;
mod log;
mod producer;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use intake_core::config::BusConfig;
use rdkafka::admin::AdminClient;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;

pub use consumer::KafkaConsumer;
pub use settings::ClientSettings;

use crate::{Bus, BusError, Consumer, Delivery, OutgoingMessage, Subscription, TopicSpec};

/// Longest wait for a metadata answer in [`Bus::check`].
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// A Kafka cluster as a [`Bus`]. Cheap to share behind an `Arc`; consumers get their own client.
pub struct KafkaBus {
    settings: ClientSettings,
    /// Replaced when it can no longer deliver (see [`producer`]).
    producer: Arc<producer::ProducerSlot>,
    admin: AdminClient<log::LogContext>,
    publish_timeout: Duration,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("settings", &self.settings)
            .field("publish_timeout", &self.publish_timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// A bus for `config.kafka`, publishing with `config.publish_timeout` (`BUS_PUBLISH_TIMEOUT`).
    pub fn new(config: &BusConfig) -> Result<Self, BusError> {
        Self::with_settings(
            ClientSettings::from_config(&config.kafka)?,
            config.publish_timeout,
        )
    }

    /// A bus with explicit client settings (tests tune group timings this way).
    pub fn with_settings(
        settings: ClientSettings,
        publish_timeout: Duration,
    ) -> Result<Self, BusError> {
        let producer = producer::ProducerSlot::new(settings.clone(), publish_timeout)?;
        let admin: AdminClient<log::LogContext> = settings
            .client_config(&[])
            .create_with_context(log::LogContext::new("admin"))
            .map_err(|e| BusError::config_from("creating the Kafka admin client", e))?;
        Ok(Self {
            settings,
            producer,
            admin,
            publish_timeout,
        })
    }

    /// The settings every client of this bus starts from.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// The current producer.
    fn producer(&self) -> producer::Client {
        self.producer.current().1
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, message: OutgoingMessage) -> Result<Delivery, BusError> {
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for h in &message.headers {
            headers = headers.insert(KafkaHeader {
                key: &h.name,
                value: Some(h.value.as_slice()),
            });
        }
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord {
            topic: &message.topic,
            partition: None,
            payload: Some(message.value.as_slice()),
            key: message.key.as_deref(),
            timestamp: None,
            headers: Some(headers),
        };
        let (generation, producer) = self.producer.current();
        let send = producer.send(record, Timeout::After(self.publish_timeout));
        // message.timeout.ms bounds the delivery; this bounds the queueing and any slack.
        let result = match tokio::time::timeout(self.publish_timeout, send).await {
            Err(_) => Err(errors::timeout_error(&message.topic, self.publish_timeout)),
            Ok(Ok(delivery)) => {
                return Ok(Delivery {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Ok(Err((error, _))) => {
                if errors::producer_identity_lost(&error, producer.client().fatal_error()) {
                    self.producer.replace(generation, &error.to_string());
                }
                Err(errors::publish_error(
                    &message.topic,
                    &error,
                    self.publish_timeout,
                ))
            }
        };
        if let Err(e @ BusError::Timeout { .. }) = &result {
            self.producer
                .probe_after_timeout(generation, producer, e.to_string());
        }
        result
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Consumer>, BusError> {
        let consumer =
            KafkaConsumer::join(&self.settings, subscription, self.publish_timeout).await?;
        Ok(Box::new(consumer))
    }

    async fn create_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        admin::create_topics(
            &self.admin,
            &self.producer(),
            topics,
            self.publish_timeout.max(Duration::from_secs(10)),
        )
        .await
    }

    async fn list_topics(&self) -> Result<Vec<String>, BusError> {
        admin::list_topics(&self.producer(), self.publish_timeout.max(CHECK_TIMEOUT)).await
    }

    async fn check(&self) -> Result<(), BusError> {
        admin::list_topics(&self.producer(), CHECK_TIMEOUT)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::config::EnvMap;

    #[test]
    fn the_seeds_kafkamq_and_the_security_settings_reach_the_clients() {
        let env: EnvMap = [
            ("KAFKAMQ", "kafka-0:29092,kafka-1:29092"),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-256"),
            ("KAFKA_SASL_USERNAME", "svc"),
            ("KAFKA_SASL_PASSWORD", "s3cr3t-pw"),
            ("BUS_PUBLISH_TIMEOUT", "3s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = BusConfig::from_env(&env, std::path::Path::new("/d")).unwrap();
        let bus = KafkaBus::new(&config).unwrap();
        let s = bus.settings();
        assert_eq!(
            s.get("bootstrap.servers"),
            Some("kafka-0:29092,kafka-1:29092")
        );
        assert_eq!(s.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(s.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(bus.publish_timeout, Duration::from_secs(3));
        let shown = format!("{bus:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    }
}
