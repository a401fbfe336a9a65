//! Prometheus text exposition of a registry, with the process's own metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, open file descriptors, start time…) added to every `/metrics`.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Registry, TextEncoder};

/// Renders `registry` as Prometheus text (`GET /metrics`).
pub fn render(registry: &Registry) -> Response {
    let mut out = Vec::new();
    match TextEncoder::new().encode(&with_process(registry.gather()), &mut out) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            out,
        )
            .into_response(),
        Err(e) => crate::ApiError::internal(e, None).into_response(),
    }
}

/// `families` with the process collector's, unless the registry holds them already (Prometheus's
/// default registry registers one itself).
fn with_process(mut families: Vec<MetricFamily>) -> Vec<MetricFamily> {
    let process = process_collector();
    let names: Vec<&str> = process.desc().iter().map(|d| d.fq_name.as_str()).collect();
    if families.iter().any(|f| names.contains(&f.name())) {
        return families;
    }
    families.extend(process.collect());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    families
}

/// One collector for the process: it reads /proc/self on each scrape (Linux; elsewhere it reports
/// nothing).
fn process_collector() -> &'static prometheus::process_collector::ProcessCollector {
    static COLLECTOR: OnceLock<prometheus::process_collector::ProcessCollector> = OnceLock::new();
    COLLECTOR.get_or_init(prometheus::process_collector::ProcessCollector::for_self)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&with_process(registry.gather()), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_registry_shows_the_process_metrics_once() {
        let registry = Registry::new();
        let text = body(&registry);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name} in:\n{text}"
            );
        }
        // A registry that has its own process collector (the default one) is not given a second.
        let own = Registry::new();
        own.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .unwrap();
        assert_eq!(
            body(&own)
                .matches("# TYPE process_cpu_seconds_total ")
                .count(),
            1
        );
    }
}
