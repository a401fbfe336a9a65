//! Every metric the tracker exports (spec/tracker.md "Metrics"), in one registry.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Distinct `(service, status)` pairs counted before new ones count as `other`.
pub const MAX_SERVICE_STATUS_PAIRS: usize = 500;

/// The tracker's metrics.
pub struct Metrics {
    pub registry: Registry,
    /// `result`: `stored`, `duplicate`, `dead_letter`.
    pub messages: IntCounterVec,
    /// `reason`: a dead-letter reason code (a fixed set).
    pub dead_letters: IntCounterVec,
    /// `service`, `status`: bounded to [`MAX_SERVICE_STATUS_PAIRS`] pairs, then `other`.
    pub service_status: IntCounterVec,
    /// `service`: bounded by the same pair limit.
    pub service_duration: HistogramVec,
    /// `field`: `account`, `org_id`, `inventory_id`, `system_id`.
    pub identity_conflicts: IntCounterVec,
    pub batch_seconds: Histogram,
    pub batch_size: Histogram,
    /// `partition`: the bus partition number.
    pub consumer_lag: IntGaugeVec,
    /// `route` (the template), `code`.
    pub api_responses: IntCounterVec,
    pairs: Mutex<HashSet<(String, String)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let messages = counter(
            &registry,
            "payload_tracker_messages_total",
            "Status messages by result",
            &["result"],
        )?;
        let dead_letters = counter(
            &registry,
            "payload_tracker_dead_letters_total",
            "Dead-lettered status messages by reason",
            &["reason"],
        )?;
        let service_status = counter(
            &registry,
            "payload_tracker_service_status_total",
            "Stored statuses per service and status",
            &["service", "status"],
        )?;
        let identity_conflicts = counter(
            &registry,
            "payload_tracker_identity_conflicts_total",
            "Later tenant values that differed from the first one (ignored)",
            &["field"],
        )?;
        let api_responses = counter(
            &registry,
            "payload_tracker_api_responses_total",
            "API answers by route template and code",
            &["route", "code"],
        )?;
        let service_duration = HistogramVec::new(
            HistogramOpts::new(
                "payload_tracker_service_duration_seconds",
                "A service's time on a payload, first status to first terminal status",
            )
            .buckets(vec![
                0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
            &["service"],
        )?;
        registry.register(Box::new(service_duration.clone()))?;
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "payload_tracker_batch_seconds",
                "Time to store one batch (its transaction)",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        registry.register(Box::new(batch_seconds.clone()))?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("payload_tracker_batch_size", "Messages per batch").buckets(vec![
                1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
            ]),
        )?;
        registry.register(Box::new(batch_size.clone()))?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "payload_tracker_consumer_lag",
                "Messages not yet consumed, per partition",
            ),
            &["partition"],
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        Ok(Self {
            registry,
            messages,
            dead_letters,
            service_status,
            service_duration,
            identity_conflicts,
            batch_seconds,
            batch_size,
            consumer_lag,
            api_responses,
            pairs: Mutex::new(HashSet::new()),
        })
    }

    /// The `(service, status)` labels to use: the pair itself while fewer than the limit are known.
    pub fn bounded_pair(&self, service: &str, status: &str) -> (String, String) {
        let mut pairs = self
            .pairs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pair = (service.to_owned(), status.to_owned());
        if pairs.contains(&pair) {
            return pair;
        }
        if pairs.len() < MAX_SERVICE_STATUS_PAIRS {
            pairs.insert(pair.clone());
            return pair;
        }
        ("other".into(), "other".into())
    }
}
