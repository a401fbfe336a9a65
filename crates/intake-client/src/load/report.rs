//! The summary of a load run: what `--json` prints and what the human-readable lines show.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::{LoadPlan, Tally};

/// Latency of answered requests (any status), in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadReport {
    pub url: String,
    pub concurrency: usize,
    /// Requests started: `answered` + failed ones (the sum of `errors_by_kind`).
    pub requests: u64,
    /// Requests that got an HTTP answer (the sum of `by_status`).
    pub answered: u64,
    /// Answers in the 2xx range (202, or 201 in legacy mode).
    pub accepted: u64,
    /// File-part bytes of the accepted uploads.
    pub accepted_bytes: u64,
    pub elapsed_seconds: f64,
    pub accepted_per_second: f64,
    /// `accepted_bytes` per second, in MB (10^6 bytes).
    pub megabytes_per_second: f64,
    pub latency_ms: Latency,
    /// Answers by HTTP status code.
    pub by_status: BTreeMap<String, u64>,
    /// Requests that got no answer, by kind: `connect`, `timeout`, `request`, `body`, `other`.
    pub errors_by_kind: BTreeMap<String, u64>,
}

impl LoadReport {
    pub(super) fn sum(plan: &LoadPlan, elapsed: Duration, tallies: Vec<Tally>) -> Self {
        let mut latency = None;
        let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
        let mut errors_by_kind = BTreeMap::new();
        let (mut accepted, mut accepted_bytes) = (0, 0);
        for t in tallies {
            match &mut latency {
                None => latency = Some(t.latency),
                // Same bounds everywhere (one histogram cloned per worker), so adding cannot fail;
                // if it somehow did, that worker's latencies are left out rather than the run.
                Some(h) => {
                    let _ = h.add(&t.latency);
                }
            }
            for (code, n) in t.statuses {
                *by_status.entry(code).or_default() += n;
            }
            for (kind, n) in t.errors {
                *errors_by_kind.entry(kind.to_owned()).or_default() += n;
            }
            accepted += t.accepted;
            accepted_bytes += t.accepted_bytes;
        }
        let answered: u64 = by_status.values().sum();
        let failed: u64 = errors_by_kind.values().sum();
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let ms = |us: u64| us as f64 / 1000.0;
        let latency_ms = match latency {
            Some(h) if !h.is_empty() => Latency {
                p50: ms(h.value_at_quantile(0.50)),
                p95: ms(h.value_at_quantile(0.95)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
                mean: h.mean() / 1000.0,
            },
            _ => Latency::default(),
        };
        Self {
            url: plan.url.to_string(),
            concurrency: plan.concurrency,
            requests: answered + failed,
            answered,
            accepted,
            accepted_bytes,
            elapsed_seconds: round3(elapsed.as_secs_f64()),
            accepted_per_second: round3(accepted as f64 / secs),
            megabytes_per_second: round3(accepted_bytes as f64 / 1e6 / secs),
            latency_ms,
            by_status: by_status
                .into_iter()
                .map(|(code, n)| (code.to_string(), n))
                .collect(),
            errors_by_kind,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests   {} in {:.2} s against {} (concurrency {})",
            self.requests, self.elapsed_seconds, self.url, self.concurrency
        )?;
        writeln!(
            f,
            "accepted   {} ({:.1}/s, {:.2} MB/s of payload)",
            self.accepted, self.accepted_per_second, self.megabytes_per_second
        )?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "latency    p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  mean {:.2} ms",
            l.p50, l.p95, l.p99, l.max, l.mean
        )?;
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        writeln!(f, "answers    {}", or_none(&statuses))?;
        let errors: Vec<String> = self
            .errors_by_kind
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect();
        writeln!(f, "errors     {}", or_none(&errors))
    }
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
