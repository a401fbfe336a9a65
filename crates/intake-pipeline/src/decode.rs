//! Filtering and decoding of input records (spec pipeline.md §4): the ten decode rules in order,
//! the first failure naming the reason.

use std::sync::OnceLock;

use intake_bus::ReceivedMessage;
use intake_core::Identity;
use regex::Regex;
use serde_json::{Map, Value};

use crate::config::{ConsumerConfig, Format};
use crate::error::{Stage, StageError};

/// A decoded announcement.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub url: String,
    /// As received (RFC3339, any offset).
    pub timestamp: String,
    pub request_id: Option<String>,
    pub org_id: String,
    pub account: Option<String>,
    pub service: Option<String>,
    pub size: Option<u64>,
    /// `identity.system.cluster_id`, when the identity has one.
    pub identity_cluster_id: Option<String>,
    pub metadata: Option<Map<String, Value>>,
}

/// Why a record is committed without processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtered {
    Service,
    TooOld,
}

impl Filtered {
    pub fn as_str(self) -> &'static str {
        match self {
            Filtered::Service => "service",
            Filtered::TooOld => "too_old",
        }
    }
}

#[allow(
    clippy::expect_used,
    reason = "a constant pattern; the unit tests run it"
)]
fn request_id_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[A-Za-z0-9-]{1,64}$").expect("valid regex"))
}

/// The filter, before parsing when the headers suffice.
pub fn filter(msg: &ReceivedMessage, config: &ConsumerConfig, now_ms: i64) -> Option<Filtered> {
    let body = || serde_json::from_slice::<Value>(&msg.value).ok();
    if !config.services.is_empty() {
        let service = match msg.header_str("service") {
            Some(s) => Some(s.to_owned()),
            None => {
                body().and_then(|b| b.get("service").and_then(Value::as_str).map(str::to_owned))
            }
        };
        if !service.is_some_and(|s| config.services.contains(&s)) {
            return Some(Filtered::Service);
        }
    }
    if !config.max_record_age.is_zero() {
        let at_ms = msg.timestamp_ms.or_else(|| {
            body()
                .and_then(|b| {
                    b.get("timestamp")
                        .and_then(Value::as_str)
                        .and_then(intake_core::time::parse_rfc3339)
                })
                .map(|t| t.timestamp_millis())
        });
        if let Some(at) = at_ms {
            if now_ms.saturating_sub(at) > config.max_record_age.as_millis() as i64 {
                return Some(Filtered::TooOld);
            }
        }
    }
    None
}

fn fail(reason: &'static str, detail: impl Into<String>) -> StageError {
    StageError::permanent(Stage::Decode, reason, detail)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decodes a record by rules 1–10, in order.
pub fn decode(msg: &ReceivedMessage, format: Format) -> Result<Decoded, StageError> {
    if msg.value.is_empty() {
        return Err(fail("empty_value", "the record has no value"));
    }
    let text = std::str::from_utf8(&msg.value)
        .map_err(|e| fail("invalid_json", "the value is not UTF-8").caused_by(e))?;
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| fail("invalid_json", format!("the value is not JSON: {e}")).caused_by(e))?;
    if doc.is_null() {
        return Err(fail("empty_value", "the value is null"));
    }
    let Value::Object(body) = doc else {
        return Err(fail("not_an_object", "the value is not a JSON object"));
    };
    for field in ["url", "timestamp"] {
        match body.get(field) {
            None | Some(Value::Null) => {
                return Err(fail("missing_field", format!("missing field {field:?}")))
            }
            Some(Value::String(s)) if s.is_empty() => {
                return Err(fail("missing_field", format!("empty field {field:?}")))
            }
            _ => {}
        }
    }
    let present = |k: &str| body.get(k).filter(|v| !v.is_null());
    for field in ["url", "timestamp", "b64_identity", "request_id"] {
        if present(field).is_some_and(|v| !v.is_string()) {
            return Err(fail(
                "bad_field_type",
                format!("field {field:?} must be a string"),
            ));
        }
    }
    for field in ["account", "org_id"] {
        if present(field).is_some_and(|v| !v.is_string() && !v.is_number()) {
            return Err(fail(
                "bad_field_type",
                format!("field {field:?} must be a string or a number"),
            ));
        }
    }
    if present("size").is_some_and(|v| v.as_u64().is_none()) {
        return Err(fail(
            "bad_field_type",
            "field \"size\" must be an integer ≥ 0",
        ));
    }
    let mut identity_doc = None;
    if let Some(raw) = present("b64_identity").and_then(Value::as_str) {
        identity_doc = Some(decode_identity(raw)?);
    }
    let ident = identity_doc.as_ref().and_then(|d| d.get("identity"));
    let nonempty = |v: Option<&Value>| v.and_then(scalar_text).filter(|s| !s.is_empty());
    let org_id = nonempty(ident.and_then(|i| i.get("org_id")))
        .or_else(|| nonempty(ident.and_then(|i| i.pointer("/internal/org_id"))))
        .or_else(|| nonempty(present("org_id")))
        .ok_or_else(|| fail("missing_org_id", "no org_id in the identity or the body"))?;
    if format == Format::Ccx && !org_id.parse::<u32>().is_ok_and(|n| n >= 1) {
        return Err(fail(
            "bad_org_id",
            format!("org_id {org_id:?} is not a decimal in 1..=4294967295"),
        ));
    }
    let request_id = present("request_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| msg.header_str("request_id").map(str::to_owned));
    if let Some(id) = &request_id {
        if !request_id_re().is_match(id) {
            return Err(fail(
                "bad_request_id",
                "request_id does not match ^[A-Za-z0-9-]{1,64}$",
            ));
        }
    }
    let timestamp = present("timestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !valid_timestamp(&timestamp) {
        return Err(fail(
            "bad_timestamp",
            format!("timestamp {timestamp:?} is not RFC3339"),
        ));
    }
    let account = nonempty(ident.and_then(|i| i.get("account_number")))
        .or_else(|| nonempty(present("account")));
    let identity_cluster_id = ident
        .and_then(|i| i.pointer("/system/cluster_id"))
        .and_then(Value::as_str)
        .and_then(crate::watchers::canonical_uuid);
    Ok(Decoded {
        url: present("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        timestamp,
        request_id,
        org_id,
        account,
        service: msg.header_str("service").map(str::to_owned).or_else(|| {
            present("service")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
        size: present("size").and_then(Value::as_u64),
        identity_cluster_id,
        metadata: present("metadata").and_then(Value::as_object).cloned(),
    })
}

fn decode_identity(raw: &str) -> Result<Value, StageError> {
    // The same base64 rules as the identity header; org_id presence is decided by rule 7 here.
    match Identity::decode(raw) {
        Ok(_) | Err(intake_core::IdentityError::NoOrgId) => {}
        Err(e) => return Err(fail("bad_identity", e.to_string()).caused_by(e)),
    }
    use base64::Engine;
    let bytes = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
    .decode(raw.trim())
    .map_err(|e| fail("bad_identity", "b64_identity is not base64").caused_by(e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| fail("bad_identity", "b64_identity is not JSON").caused_by(e))
}

/// RFC3339 with at most 9 fractional digits.
fn valid_timestamp(t: &str) -> bool {
    if intake_core::time::parse_rfc3339(t).is_none() {
        return false;
    }
    match t.find('.') {
        None => true,
        Some(dot) => {
            t[dot + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .count()
                <= 9
        }
    }
}

#[cfg(test)]
mod tests;
