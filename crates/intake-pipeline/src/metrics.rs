//! The pipeline's metrics (spec pipeline.md §10), registered once in the process's default
//! Prometheus registry (served by the `prometheus` watcher) and, with [`register_into`], in another
//! registry too (`intake serve` adds them to its `/metrics`).
//!
//! Labels, all bounded: `archive` ∈ ocp|hypershift|other|unknown; `stage`, `reason` the codes of
//! §11; `reason` of filtered records ∈ service|too_old|no_cluster_id; `type` ∈ rule|pass|info|
//! fingerprint|skip; `component` a registered component name; `watcher` a watcher kind.

use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub received: IntCounter,
    pub filtered: IntCounterVec,
    pub not_handled: IntCounter,
    pub downloaded: IntCounter,
    pub archive_size: HistogramVec,
    pub extracted: IntCounterVec,
    pub processed: IntCounterVec,
    pub published: IntCounterVec,
    pub timeouts: IntCounterVec,
    pub failures: IntCounterVec,
    pub download_duration: HistogramVec,
    pub extract_duration: HistogramVec,
    pub rules_duration: HistogramVec,
    pub process_duration: HistogramVec,
    pub publish_duration: HistogramVec,
    pub remote_config_version: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub retries: IntCounterVec,
    pub results: IntCounterVec,
    pub component_failures: IntCounterVec,
    pub watcher_errors: IntCounterVec,
    pub status_failures: IntCounter,
    pub in_flight: IntGauge,
    pub abandoned_threads: IntGauge,
    /// `topic`, `partition`: records not yet consumed (committed offset to the end).
    pub consumer_lag: IntGaugeVec,
}

const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[allow(
    clippy::expect_used,
    reason = "a constant metric definition; the unit tests build it"
)]
fn counter(reg: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition is valid");
    let _ = reg.register(Box::new(c.clone()));
    c
}

#[allow(
    clippy::expect_used,
    reason = "a constant metric definition; the unit tests build it"
)]
fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("static metric definition is valid");
    let _ = reg.register(Box::new(c.clone()));
    c
}

#[allow(
    clippy::expect_used,
    reason = "a constant metric definition; the unit tests build it"
)]
fn histogram(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("static metric definition is valid");
    let _ = reg.register(Box::new(h.clone()));
    h
}

#[allow(
    clippy::expect_used,
    reason = "a constant metric definition; the unit tests build it"
)]
fn gauge(reg: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition is valid");
    let _ = reg.register(Box::new(g.clone()));
    g
}

#[allow(
    clippy::expect_used,
    reason = "a constant metric definition; the unit tests build it"
)]
fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g =
        IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition is valid");
    let _ = reg.register(Box::new(g.clone()));
    g
}

impl Metrics {
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.received.clone()),
            Box::new(self.filtered.clone()),
            Box::new(self.not_handled.clone()),
            Box::new(self.downloaded.clone()),
            Box::new(self.archive_size.clone()),
            Box::new(self.extracted.clone()),
            Box::new(self.processed.clone()),
            Box::new(self.published.clone()),
            Box::new(self.timeouts.clone()),
            Box::new(self.failures.clone()),
            Box::new(self.download_duration.clone()),
            Box::new(self.extract_duration.clone()),
            Box::new(self.rules_duration.clone()),
            Box::new(self.process_duration.clone()),
            Box::new(self.publish_duration.clone()),
            Box::new(self.remote_config_version.clone()),
            Box::new(self.dead_letters.clone()),
            Box::new(self.retries.clone()),
            Box::new(self.results.clone()),
            Box::new(self.component_failures.clone()),
            Box::new(self.watcher_errors.clone()),
            Box::new(self.status_failures.clone()),
            Box::new(self.in_flight.clone()),
            Box::new(self.abandoned_threads.clone()),
            Box::new(self.consumer_lag.clone()),
        ]
    }
}

/// Registers every pipeline metric in `registry` as well; the values are the same ones the
/// default registry shows. Fails if `registry` already holds a metric of the same name.
pub fn register_into(registry: &Registry) -> Result<(), prometheus::Error> {
    for c in get().collectors() {
        registry.register(c)?;
    }
    Ok(())
}

/// The metrics, registered on first use.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let r = prometheus::default_registry();
        let d = || DURATION_BUCKETS.to_vec();
        let sizes: Vec<f64> = (0..=10).map(|n| 1024.0 * 4f64.powi(n)).collect();
        Metrics {
            received: counter(r, "ccx_consumer_received_total", "records fetched"),
            filtered: counter_vec(
                r,
                "ccx_consumer_filtered_total",
                "records committed without processing",
                &["reason"],
            ),
            not_handled: counter(
                r,
                "ccx_not_handled_total",
                "records dead-lettered at decode",
            ),
            downloaded: counter(r, "ccx_downloaded_total", "archives downloaded"),
            archive_size: histogram(
                r,
                "ccx_consumer_archive_size",
                "archive bytes",
                &["archive"],
                sizes,
            ),
            extracted: counter_vec(
                r,
                "ccx_consumer_extracted_total",
                "archives extracted",
                &["archive"],
            ),
            processed: counter_vec(
                r,
                "ccx_engine_processed_total",
                "archives processed by the engine",
                &["archive"],
            ),
            published: counter_vec(
                r,
                "ccx_published_total",
                "results acknowledged",
                &["archive"],
            ),
            timeouts: counter_vec(
                r,
                "ccx_engine_processed_timeout_total",
                "deadline hits",
                &["archive"],
            ),
            failures: counter_vec(
                r,
                "ccx_failures_total",
                "dead-lettered messages",
                &["archive", "stage"],
            ),
            download_duration: histogram(
                r,
                "ccx_download_duration_seconds",
                "download time, retries included",
                &[],
                d(),
            ),
            extract_duration: histogram(
                r,
                "intake_pipeline_extract_duration_seconds",
                "extraction time",
                &["archive"],
                d(),
            ),
            rules_duration: histogram(
                r,
                "intake_pipeline_rules_duration_seconds",
                "engine time",
                &["archive"],
                d(),
            ),
            process_duration: histogram(
                r,
                "ccx_process_duration_seconds",
                "extraction + rules",
                &["archive"],
                d(),
            ),
            publish_duration: histogram(
                r,
                "ccx_publish_duration_seconds",
                "produce to ack",
                &["archive"],
                d(),
            ),
            remote_config_version: counter_vec(
                r,
                "gathering_conditions_remote_configuration_version",
                "remote configuration versions seen",
                &["version"],
            ),
            dead_letters: counter_vec(
                r,
                "intake_pipeline_dead_letters_total",
                "dead letters acknowledged",
                &["stage", "reason"],
            ),
            retries: counter_vec(
                r,
                "intake_pipeline_retries_total",
                "transient retries",
                &["stage"],
            ),
            results: counter_vec(
                r,
                "intake_pipeline_results_total",
                "report entries by type",
                &["type"],
            ),
            component_failures: counter_vec(
                r,
                "intake_pipeline_component_failures_total",
                "failed components",
                &["component"],
            ),
            watcher_errors: counter_vec(
                r,
                "intake_pipeline_watcher_errors_total",
                "watcher errors",
                &["watcher"],
            ),
            status_failures: counter(
                r,
                "intake_pipeline_status_publish_failures_total",
                "failed status sends",
            ),
            in_flight: gauge(r, "intake_pipeline_in_flight", "fetched but not committed"),
            abandoned_threads: gauge(
                r,
                "intake_pipeline_abandoned_threads",
                "threads abandoned at a deadline",
            ),
            consumer_lag: gauge_vec(
                r,
                "intake_pipeline_consumer_lag",
                "records not yet consumed, per partition held",
                &["topic", "partition"],
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_registry_shows_the_same_values() {
        let registry = Registry::new();
        register_into(&registry).unwrap();
        get().received.inc();
        let families = registry.gather();
        let value = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map(|f| f.get_metric()[0].get_counter().get_value())
        };
        // Other tests of this process may count too: at least the one above.
        assert!(value("ccx_consumer_received_total").unwrap() >= 1.0);
        assert!(families
            .iter()
            .any(|f| f.name() == "intake_pipeline_in_flight"));
        assert!(
            register_into(&registry).is_err(),
            "names are registered once"
        );
    }
}
