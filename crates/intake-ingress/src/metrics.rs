//! Ingress metrics, named and labelled exactly as ingress.md lists them. Labels are bounded: `service`
//! is a listed service or `unsupported`, `code` an HTTP status, `mode` an announce mode, `result` and
//! `reason` fixed vocabularies.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every ingress metric, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `service`, `code`: every `/upload` answer.
    pub uploads: IntCounterVec,
    /// `service`: file-part sizes of accepted uploads.
    pub upload_bytes: HistogramVec,
    pub in_flight: IntGauge,
    /// Payloads accepted by this process and waiting for their verdict (admission's backlog).
    pub backlog: IntGauge,
    /// Time to stream into quarantine.
    pub stage_seconds: Histogram,
    /// `mode`: announce hand-off until acknowledged.
    pub handoff_seconds: HistogramVec,
    /// `result`: success, failure, handoff, repeat, conflict, dead_letter, error.
    pub validation_messages: IntCounterVec,
    /// `topic`, `partition`: validation responses not yet applied (committed offset to the end).
    pub consumer_lag: IntGaugeVec,
    /// `reason`: a dead-letter reason code.
    pub dead_letters: IntCounterVec,
    pub status_publish_failures: IntCounter,
    /// Validation responses whose echoed tenant differs from the stored object's.
    pub tenant_mismatches: IntCounter,
    /// `version`, `commit`: always 1.
    pub build_info: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let uploads = IntCounterVec::new(
            Opts::new(
                "ingress_uploads_total",
                "Every /upload answer, by service and HTTP code",
            ),
            &["service", "code"],
        )?;
        // 10 KiB … 1 GiB, ×4 per bucket.
        let upload_bytes = HistogramVec::new(
            HistogramOpts::new(
                "ingress_upload_bytes",
                "File-part sizes of accepted uploads",
            )
            .buckets(exponential_buckets(10_240.0, 4.0, 10)?),
            &["service"],
        )?;
        let in_flight = IntGauge::new("ingress_uploads_in_flight", "Uploads being received")?;
        let backlog = IntGauge::new(
            "ingress_backlog_payloads",
            "Payloads accepted by this process and waiting for their verdict",
        )?;
        let stage_seconds = Histogram::with_opts(HistogramOpts::new(
            "ingress_stage_seconds",
            "Time to stream an upload into quarantine",
        ))?;
        let handoff_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ingress_handoff_seconds",
                "Announce hand-off until acknowledged",
            ),
            &["mode"],
        )?;
        let validation_messages = IntCounterVec::new(
            Opts::new(
                "ingress_validation_messages_total",
                "Validation responses by outcome",
            ),
            &["result"],
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "ingress_consumer_lag",
                "Validation responses not yet applied, per partition held",
            ),
            &["topic", "partition"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "ingress_dead_letters_total",
                "Validation responses dead-lettered, by reason",
            ),
            &["reason"],
        )?;
        let status_publish_failures = IntCounter::new(
            "ingress_status_publish_failures_total",
            "Status messages that could not be published",
        )?;
        let tenant_mismatches = IntCounter::new(
            "ingress_validation_tenant_mismatches_total",
            "Validation responses whose echoed org_id or account differs from the stored payload's",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("intake_build_info", "Build information"),
            &["version", "commit"],
        )?;
        registry.register(Box::new(uploads.clone()))?;
        registry.register(Box::new(upload_bytes.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(backlog.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        registry.register(Box::new(handoff_seconds.clone()))?;
        registry.register(Box::new(validation_messages.clone()))?;
        registry.register(Box::new(consumer_lag.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(status_publish_failures.clone()))?;
        registry.register(Box::new(tenant_mismatches.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[intake_core::VERSION, crate::version::commit()])
            .set(1);
        Ok(Self {
            registry,
            uploads,
            upload_bytes,
            in_flight,
            backlog,
            stage_seconds,
            handoff_seconds,
            validation_messages,
            consumer_lag,
            dead_letters,
            status_publish_failures,
            tenant_mismatches,
            build_info,
        })
    }
}
