//! `GET /stats`: per-service counts, finished payloads, success rate and duration percentiles over a
//! window.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::Utc;
use http::HeaderMap;
use intake_core::config::units::parse_duration;
use intake_http::ApiError;
use serde_json::{json, Map, Value};

use super::params::{self, Params};
use super::{store_error, AppState};
use crate::model::StatsData;

/// The value at quantile `q` (0–1) of sorted `values`, by linear interpolation.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let weight = rank - low as f64;
    Some(sorted[low] * (1.0 - weight) + sorted[high] * weight)
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Shapes the store's numbers into the `services` object.
pub fn services(data: &StatsData) -> Map<String, Value> {
    let mut counts: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (service, status, n) in &data.status_counts {
        counts
            .entry(service)
            .or_default()
            .insert(status.clone(), json!(n));
    }
    let mut out = Map::new();
    for (service, statuses) in counts {
        let journeys: Vec<_> = data
            .journeys
            .iter()
            .filter(|j| j.service == service)
            .collect();
        let finished: Vec<_> = journeys
            .iter()
            .filter(|j| j.first_terminal.is_some())
            .collect();
        let succeeded = finished.iter().filter(|j| j.succeeded).count();
        let mut durations: Vec<f64> = finished
            .iter()
            .filter_map(|j| {
                j.first_terminal
                    .map(|t| (t - j.first).num_microseconds().unwrap_or(0) as f64 / 1e6)
            })
            .collect();
        durations.sort_by(f64::total_cmp);
        let rate =
            (!finished.is_empty()).then(|| round(succeeded as f64 / finished.len() as f64, 4));
        out.insert(
            service.to_owned(),
            json!({
                "statuses": statuses,
                "payloads": journeys.len(),
                "finished": finished.len(),
                "success_rate": rate,
                "duration_p50_seconds": percentile(&durations, 0.5).map(|v| round(v, 6)),
                "duration_p95_seconds": percentile(&durations, 0.95).map(|v| round(v, 6)),
            }),
        );
    }
    out
}

pub async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let scope = state.scope(&headers)?;
    let p = params::decode(query)?;
    let window_text = params::text(&p, "window").unwrap_or_else(|| "24h".to_owned());
    let window = parse_duration(&window_text)
        .map_err(|e| ApiError::bad_request(format!("parameter window: {e}")))?;
    if window.is_zero() || window > state.settings.retention {
        return Err(ApiError::bad_request(format!(
            "parameter window: {window_text} is not within (0, {}s] (the retention)",
            state.settings.retention.as_secs()
        )));
    }
    let service = params::name(&p, "service");
    let to = Utc::now();
    let from = to
        - chrono::Duration::from_std(window)
            .map_err(|_| ApiError::bad_request("parameter window: too long"))?;
    let data = state
        .store
        .stats(from, to, service.as_deref(), &scope)
        .await
        .map_err(|e| store_error(e, None))?;
    Ok(Json(json!({
        "window": window_text,
        "from": intake_core::time::format(from),
        "to": intake_core::time::format(to),
        "services": services(&data),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95), Some(4.8));
    }
}
