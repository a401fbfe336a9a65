//! The validator's metrics, in a registry of its own ([`registry`]): served by `intake validator`'s
//! health listener (`VALIDATOR_LISTEN`) and, in `intake serve`, added to ingress's `/metrics`.
//!
//! Labels, all bounded: `validation` ∈ success|failure; `reason` the stable code at the end of a
//! failure reason (the archive and download codes of the crate doc), `fail_all` in fail-all mode,
//! `none` for successes, `other` for anything else; `outcome` ∈ ok|error.

use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub(crate) struct Metrics {
    pub(crate) verdicts: IntCounterVec,
    pub(crate) download_duration: HistogramVec,
    /// `topic`, `partition`: announces not yet answered (committed offset to the end).
    pub(crate) consumer_lag: IntGaugeVec,
    registry: Registry,
}

const DOWNLOAD_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    #[allow(
        clippy::expect_used,
        reason = "a constant metric definition; the unit tests build it"
    )]
    fn new() -> Self {
        let registry = Registry::new();
        let verdicts = IntCounterVec::new(
            Opts::new(
                "intake_validator_verdicts_total",
                "Validation responses published, by validation and failure reason code",
            ),
            &["validation", "reason"],
        )
        .expect("static metric definition is valid");
        let download_duration = HistogramVec::new(
            HistogramOpts::new(
                "intake_validator_download_duration_seconds",
                "Time to download one payload in check mode, retries included, by outcome",
            )
            .buckets(DOWNLOAD_BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "intake_validator_consumer_lag",
                "Announces not yet answered, per partition held",
            ),
            &["topic", "partition"],
        )
        .expect("static metric definition is valid");
        let _ = registry.register(Box::new(verdicts.clone()));
        let _ = registry.register(Box::new(download_duration.clone()));
        let _ = registry.register(Box::new(consumer_lag.clone()));
        Self {
            verdicts,
            download_duration,
            consumer_lag,
            registry,
        }
    }

    /// Counts one published verdict.
    pub(crate) fn verdict(&self, validation: &str, reason: Option<&str>) {
        let code = reason.map_or("none", reason_code);
        self.verdicts.with_label_values(&[validation, code]).inc();
    }
}

/// The process's validator metrics.
pub(crate) fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The registry holding the validator's metrics.
pub fn registry() -> &'static Registry {
    &get().registry
}

/// Adds the validator's metrics to `registry` too (`intake serve` shows them on ingress's
/// `/metrics`).
pub fn register_into(registry: &Registry) -> prometheus::Result<()> {
    let m = get();
    let collectors: [Box<dyn Collector>; 3] = [
        Box::new(m.verdicts.clone()),
        Box::new(m.download_duration.clone()),
        Box::new(m.consumer_lag.clone()),
    ];
    for c in collectors {
        registry.register(c)?;
    }
    Ok(())
}

/// The stable code a reason ends with (`… (unsafe_path)` → `unsafe_path`); a bounded label.
fn reason_code(reason: &str) -> &str {
    if reason == "fail-all mode" {
        return "fail_all";
    }
    reason
        .strip_suffix(')')
        .and_then(|r| r.rsplit_once('('))
        .map(|(_, code)| code)
        .filter(|code| {
            !code.is_empty()
                && code.len() <= 32
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        })
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_bounded() {
        assert_eq!(
            reason_code("entry \"../x\" climbs out (unsafe_path)"),
            "unsafe_path"
        );
        assert_eq!(reason_code("fail-all mode"), "fail_all");
        assert_eq!(reason_code("something (Free Text)"), "other");
        assert_eq!(reason_code("no code at all"), "other");
    }
}
