//! The duration map of a payload: time per `service:source`, the sum, and the total span.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use crate::model::StatusRow;

/// Formats a span as `HH:MM:SS.ffffff`, hours zero-padded to two digits and unbounded.
pub fn format_span(span: TimeDelta) -> String {
    let micros = span.num_microseconds().unwrap_or(i64::MAX).max(0);
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        frac
    )
}

/// The duration map over every status of one payload (any order): one key per `service:source`
/// (`undefined` when no source), then `total_time_in_services` and `total_time`.
pub fn duration_map(statuses: &[StatusRow]) -> Map<String, Value> {
    let mut groups: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    let mut overall: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for s in statuses {
        let key = format!(
            "{}:{}",
            s.service,
            s.source.as_deref().unwrap_or("undefined")
        );
        let entry = groups.entry(key).or_insert((s.date, s.date));
        entry.0 = entry.0.min(s.date);
        entry.1 = entry.1.max(s.date);
        let o = overall.get_or_insert((s.date, s.date));
        o.0 = o.0.min(s.date);
        o.1 = o.1.max(s.date);
    }
    let mut map = Map::new();
    let mut sum = TimeDelta::zero();
    for (key, (first, last)) in groups {
        let span = last - first;
        sum += span;
        map.insert(key, Value::String(format_span(span)));
    }
    let total = overall
        .map(|(first, last)| last - first)
        .unwrap_or_else(TimeDelta::zero);
    map.insert(
        "total_time_in_services".into(),
        Value::String(format_span(sum)),
    );
    map.insert("total_time".into(), Value::String(format_span(total)));
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(service: &str, source: Option<&str>, date: &str) -> StatusRow {
        let date = DateTime::parse_from_rfc3339(date).unwrap().to_utc();
        StatusRow {
            id: 0,
            payload_id: 1,
            request_id: "r".into(),
            account: String::new(),
            org_id: String::new(),
            inventory_id: String::new(),
            system_id: String::new(),
            service: service.into(),
            source: source.map(str::to_owned),
            status: "x".into(),
            status_msg: String::new(),
            date,
            created_at: date,
        }
    }

    #[test]
    fn upstream_reference_case() {
        let rows = [
            row("puptoo", None, "2024-05-02T07:45:26.371Z"),
            row("puptoo", Some("inventory"), "2024-05-02T07:45:33.350Z"),
            row("puptoo", None, "2024-05-02T07:45:36.341Z"),
            row("puptoo", Some("inventory"), "2024-05-02T07:45:38.975Z"),
            row("puptoo", Some("engine"), "2024-05-02T07:45:39.374Z"),
            row("puptoo", Some("engine"), "2024-05-02T07:45:39.975Z"),
        ];
        let map = duration_map(&rows);
        assert_eq!(map["puptoo:undefined"], "00:00:09.970000");
        assert_eq!(map["puptoo:inventory"], "00:00:05.625000");
        assert_eq!(map["puptoo:engine"], "00:00:00.601000");
        assert_eq!(map["total_time_in_services"], "00:00:16.196000");
        assert_eq!(map["total_time"], "00:00:13.604000");
    }

    #[test]
    fn hours_are_unbounded() {
        assert_eq!(
            format_span(TimeDelta::seconds(27 * 3600 + 180)),
            "27:03:00.000000"
        );
        assert_eq!(
            format_span(TimeDelta::microseconds(357_764)),
            "00:00:00.357764"
        );
    }
}
