//! The bus's producer, and its replacement when it can no longer deliver: librdkafka never recovers
//! a producer whose id the cluster refuses (a broker that lost its producer state answers
//! `UnknownProducerId` or `ProducerFenced` to it forever, or it raised a fatal error), so without a
//! replacement every publish would fail until the process restarts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::producer::FutureProducer;

/// A producer whose librdkafka lines are rate-limited ([`super::log`]).
pub(crate) type Client = FutureProducer<super::log::LogContext>;
use tracing::Instrument;

use super::{admin, ClientSettings, CHECK_TIMEOUT};
use crate::BusError;

/// The current producer and its generation, shared with the background probe.
pub(crate) struct ProducerSlot {
    settings: ClientSettings,
    publish_timeout: Duration,
    current: RwLock<(u64, Client)>,
    /// A probe after a timed-out publish is running; one at a time is enough.
    probing: AtomicBool,
}

impl ProducerSlot {
    pub(crate) fn new(
        settings: ClientSettings,
        publish_timeout: Duration,
    ) -> Result<Arc<Self>, BusError> {
        let producer = create_producer(&settings, publish_timeout)?;
        Ok(Arc::new(Self {
            settings,
            publish_timeout,
            current: RwLock::new((0, producer)),
            probing: AtomicBool::new(false),
        }))
    }

    /// The current producer and its generation (cheap: a reference-counted handle).
    pub(crate) fn current(&self) -> (u64, Client) {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the producer of `generation` with a fresh one (a new producer id), unless another
    /// failed publish has already done so.
    pub(crate) fn replace(&self, generation: u64, reason: &str) {
        let mut current = match self.current.write() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.0 != generation {
            return;
        }
        match create_producer(&self.settings, self.publish_timeout) {
            Ok(fresh) => {
                tracing::warn!(%reason, "the Kafka producer can no longer deliver; replaced it");
                *current = (generation + 1, fresh);
            }
            Err(e) => {
                tracing::error!(%reason, error = %e, "the Kafka producer can no longer deliver and cannot be replaced")
            }
        }
    }

    /// After a publish of `generation` timed out. librdkafka retries a message whose producer id
    /// the broker refuses until it times out, so a timeout while the cluster answers metadata means
    /// the producer is stuck, not the cluster, and it is replaced. The probe runs in the background
    /// so that the failed publish is answered at once.
    #[allow(
        clippy::disallowed_methods,
        reason = "the probe is named and bounded by CHECK_TIMEOUT; one at a time (the probing flag); the failed publish is answered without waiting for it"
    )]
    pub(crate) fn probe_after_timeout(
        self: &Arc<Self>,
        generation: u64,
        producer: Client,
        reason: String,
    ) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let slot = Arc::clone(self);
        let probe = async move {
            if admin::list_topics(&producer, CHECK_TIMEOUT).await.is_ok() {
                slot.replace(generation, &reason);
            }
            slot.probing.store(false, Ordering::Release);
        };
        tokio::spawn(probe.instrument(tracing::info_span!("bus.kafka.producer_probe")));
    }
}

/// The idempotent, acks=all producer every publish goes through.
fn create_producer(
    settings: &ClientSettings,
    publish_timeout: Duration,
) -> Result<Client, BusError> {
    let timeout_ms = publish_timeout
        .as_millis()
        .clamp(1, i32::MAX as u128)
        .to_string();
    // librdkafka waits this long for a topic to appear before failing its messages as unknown;
    // kept below the publish timeout so a missing topic reads as UnknownTopic, not Timeout.
    let propagation_ms = (publish_timeout.as_millis() / 2)
        .clamp(1, 5_000)
        .to_string();
    settings
        .client_config(&[
            ("acks", "all".into()),
            ("enable.idempotence", "true".into()),
            ("message.timeout.ms", timeout_ms),
            ("linger.ms", "5".into()),
            ("allow.auto.create.topics", "false".into()),
            ("topic.metadata.propagation.max.ms", propagation_ms),
        ])
        .create_with_context(super::log::LogContext::new("producer"))
        .map_err(|e| BusError::config_from("creating the Kafka producer", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::config::KafkaConfig;

    #[test]
    fn one_replacement_per_generation_however_many_publishes_failed() {
        let config = KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            ..KafkaConfig::default()
        };
        let settings = ClientSettings::from_config(&config).unwrap();
        let slot = ProducerSlot::new(settings, Duration::from_secs(1)).unwrap();
        assert_eq!(slot.current().0, 0);
        slot.replace(0, "refused");
        assert_eq!(slot.current().0, 1);
        // A second publish of the old generation failing too changes nothing.
        slot.replace(0, "refused");
        assert_eq!(slot.current().0, 1);
        slot.replace(1, "refused");
        assert_eq!(slot.current().0, 2);
    }
}
