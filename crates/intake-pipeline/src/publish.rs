//! Output formats (spec pipeline.md §9): `ccx` (the aggregator's message, keyed by cluster id,
//! ending in `\n`) and `insights` (the report plus ids, keyed by request id).

use serde_json::{Map, Value};

use crate::config::{Format, KeyKind, PublisherConfig};
use crate::error::{Stage, StageError};

/// What the output needs about the message.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    pub org_id: &'a str,
    pub account: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub cluster_id: Option<&'a str>,
    /// The input `timestamp`.
    pub timestamp: &'a str,
    pub metadata: Option<&'a Map<String, Value>>,
}

/// The bytes and key of an output message.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub key: Option<String>,
    pub value: Vec<u8>,
}

fn uint32(text: &str) -> Option<u64> {
    text.parse::<u32>().ok().filter(|n| *n >= 1).map(u64::from)
}

fn gathering_time(s: &Subject<'_>) -> String {
    let from_meta = s.metadata.and_then(|m| {
        [
            m.get("custom_metadata")
                .and_then(|c| c.get("gathering_time")),
            m.pointer_like(),
        ]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(intake_core::time::parse_rfc3339)
    });
    let t = from_meta.or_else(|| intake_core::time::parse_rfc3339(s.timestamp));
    t.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

trait PointerLike {
    fn pointer_like(&self) -> Option<&Value>;
}

impl PointerLike for Map<String, Value> {
    /// `custom_metadata.ccx_metadata.gathering_time`.
    fn pointer_like(&self) -> Option<&Value> {
        self.get("custom_metadata")?
            .get("ccx_metadata")?
            .get("gathering_time")
    }
}

/// Builds the output message for `report`.
pub fn render(
    config: &PublisherConfig,
    report: &Value,
    s: &Subject<'_>,
) -> Result<Output, StageError> {
    let invalid = |d: &str| StageError::permanent(Stage::Publish, "invalid_report", d.to_owned());
    let obj = report
        .as_object()
        .ok_or_else(|| invalid("the report is not an object"))?;
    let last_checked = intake_core::time::parse_rfc3339(s.timestamp)
        .map(intake_core::time::format)
        .ok_or_else(|| invalid("the input timestamp is not RFC3339"))?;
    match config.format {
        Format::Ccx => {
            let cluster = s.cluster_id.ok_or_else(|| invalid("no cluster id"))?;
            let org = uint32(s.org_id).ok_or_else(|| invalid("org_id is not a uint32"))?;
            let mut inner = obj.clone();
            let version = inner
                .remove("version")
                .and_then(|v| v.as_u64())
                .unwrap_or(config.report_version);
            inner.remove("workload_recommendations");
            let mut out = Map::new();
            out.insert("OrgID".into(), org.into());
            out.insert("ClusterName".into(), cluster.into());
            out.insert("Report".into(), Value::Object(inner));
            out.insert("LastChecked".into(), last_checked.into());
            out.insert("Version".into(), version.into());
            out.insert(
                "RequestId".into(),
                s.request_id.map(Value::from).unwrap_or(Value::Null),
            );
            out.insert(
                "Metadata".into(),
                serde_json::json!({"gathering_time": gathering_time(s)}),
            );
            if let Some(acc) = s.account.and_then(uint32) {
                out.insert("AccountNumber".into(), acc.into());
            }
            let mut value = serde_json::to_vec(&Value::Object(out))
                .map_err(|e| invalid(&e.to_string()).caused_by(e))?;
            value.push(b'\n');
            let key = match config.key {
                KeyKind::ClusterId => Some(cluster.to_owned()),
                KeyKind::RequestId => s.request_id.map(str::to_owned),
            };
            Ok(Output { key, value })
        }
        Format::Insights => {
            let mut out = obj.clone();
            if let Some(id) = s.request_id {
                out.insert("request_id".into(), id.into());
            }
            out.insert("org_id".into(), s.org_id.into());
            if let Some(acc) = s.account.filter(|a| !a.is_empty()) {
                out.insert("account".into(), acc.into());
            }
            if let Some(c) = s.cluster_id {
                out.insert("cluster_id".into(), c.into());
            }
            let value = serde_json::to_vec(&Value::Object(out))
                .map_err(|e| invalid(&e.to_string()).caused_by(e))?;
            let key = match (config.key, s.cluster_id) {
                (KeyKind::ClusterId, Some(c)) => Some(c.to_owned()),
                _ => s.request_id.map(str::to_owned),
            };
            Ok(Output { key, value })
        }
    }
}
