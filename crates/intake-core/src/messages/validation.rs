//! Validator → ingress: the verdict on a payload, parsed tolerantly with a typed reason for every
//! refusal (each maps to a dead-letter reason code).

use serde_json::{Map, Value};

use crate::RequestId;

/// The verdict of a validation response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
    Handoff,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Failure => "failure",
            Verdict::Handoff => "handoff",
        }
    }
}

/// A validation response that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationResponse {
    pub request_id: RequestId,
    pub service: String,
    pub validation: Verdict,
    pub reason: Option<String>,
    pub account: Option<String>,
    pub principal: Option<String>,
    pub org_id: Option<String>,
    /// Inventory host id.
    pub id: Option<String>,
    pub b64_identity: Option<String>,
    pub satellite_managed: Option<bool>,
    pub metadata: Option<Map<String, Value>>,
    /// `extras` plus every unknown field.
    pub extras: Map<String, Value>,
    /// Set when `request_id` and `payload_id` were both given and differ.
    pub payload_id_mismatch: bool,
}

/// Why a validation response was refused; `reason_code` is the DLQ reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("value is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("value is not a JSON object")]
    NotAnObject,
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    #[error("field {0:?} has the wrong type")]
    WrongType(&'static str),
    #[error("bad request id {id:?}: {reason}")]
    BadRequestId { id: String, reason: String },
    #[error("bad validation value {0:?}; expected success, failure or handoff")]
    BadValidationValue(String),
}

impl ValidationError {
    /// The `dlq_reason` code of messages.md.
    pub fn reason_code(&self) -> &'static str {
        match self {
            ValidationError::InvalidJson(_) => "invalid_json",
            ValidationError::NotAnObject => "not_an_object",
            ValidationError::MissingField(_) | ValidationError::WrongType(_) => "missing_field",
            ValidationError::BadRequestId { .. } => "bad_request_id",
            ValidationError::BadValidationValue(_) => "bad_validation_value",
        }
    }
}

/// Announce fields that validators echo; known, so never copied into `extras`.
const KNOWN: &[&str] = &[
    "request_id",
    "payload_id",
    "service",
    "validation",
    "reason",
    "account",
    "rh_account",
    "principal",
    "org_id",
    "id",
    "b64_identity",
    "satellite_managed",
    "metadata",
    "extras",
    "hash",
    "url",
    "size",
    "category",
    "content_type",
    "timestamp",
];

/// Reads an optional string field; `null` counts as absent.
fn opt_str(obj: &Map<String, Value>, key: &'static str) -> Result<Option<String>, ValidationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if matches!(key, "account" | "org_id" | "principal" | "id") => {
            Ok(Some(n.to_string()))
        }
        Some(_) => Err(ValidationError::WrongType(key)),
    }
}

impl ValidationResponse {
    /// Parses the raw bytes of a validation response.
    pub fn parse(bytes: &[u8]) -> Result<Self, ValidationError> {
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| ValidationError::InvalidJson(e.to_string()))?;
        let Value::Object(obj) = doc else {
            return Err(ValidationError::NotAnObject);
        };
        let rid = opt_str(&obj, "request_id")?.filter(|s| !s.is_empty());
        let pid = opt_str(&obj, "payload_id")?.filter(|s| !s.is_empty());
        let payload_id_mismatch = matches!((&rid, &pid), (Some(a), Some(b)) if a != b);
        let id_text = rid
            .or(pid)
            .ok_or(ValidationError::MissingField("request_id"))?;
        let service = opt_str(&obj, "service")?
            .filter(|s| !s.trim().is_empty())
            .ok_or(ValidationError::MissingField("service"))?;
        let verdict_text =
            opt_str(&obj, "validation")?.ok_or(ValidationError::MissingField("validation"))?;
        let request_id = RequestId::parse(&id_text).map_err(|e| ValidationError::BadRequestId {
            id: id_text.clone(),
            reason: e.to_string(),
        })?;
        let validation = match verdict_text.trim().to_ascii_lowercase().as_str() {
            "success" => Verdict::Success,
            "failure" => Verdict::Failure,
            "handoff" => Verdict::Handoff,
            "" => return Err(ValidationError::MissingField("validation")),
            _ => return Err(ValidationError::BadValidationValue(verdict_text)),
        };
        let satellite_managed = match obj.get("satellite_managed") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => None,
        };
        let metadata = match obj.get("metadata") {
            Some(Value::Object(m)) => Some(m.clone()),
            _ => None,
        };
        let mut extras = match obj.get("extras") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        for (k, v) in &obj {
            if !KNOWN.contains(&k.as_str()) && !v.is_null() {
                extras.insert(k.clone(), v.clone());
            }
        }
        Ok(Self {
            request_id,
            service: service.trim().to_owned(),
            validation,
            reason: opt_str(&obj, "reason")?,
            account: opt_str(&obj, "account")?,
            principal: opt_str(&obj, "principal")?,
            org_id: opt_str(&obj, "org_id")?,
            id: opt_str(&obj, "id")?.filter(|s| !s.is_empty()),
            b64_identity: opt_str(&obj, "b64_identity")?,
            satellite_managed,
            metadata,
            extras,
            payload_id_mismatch,
        })
    }

    /// Best-effort request id and service of a message that failed to parse, for the `error` status.
    pub fn salvage_ids(bytes: &[u8]) -> (Option<RequestId>, Option<String>) {
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(bytes) else {
            return (None, None);
        };
        let id = ["request_id", "payload_id"]
            .iter()
            .filter_map(|k| obj.get(*k).and_then(Value::as_str))
            .find_map(|s| RequestId::parse(s).ok());
        let service = obj
            .get("service")
            .and_then(Value::as_str)
            .map(str::to_owned);
        (id, service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_success() {
        let r = ValidationResponse::parse(
            br#"{"request_id":"2439a2974ff44273afcd8b1d18077bf1","service":"advisor","validation":" Success "}"#,
        )
        .unwrap();
        assert_eq!(r.validation, Verdict::Success);
        assert!(r.extras.is_empty());
    }

    #[test]
    fn payload_id_fallback_and_unknown_fields_to_extras() {
        let r = ValidationResponse::parse(
            br#"{"payload_id":"abc","service":"advisor","validation":"failure","reason":"not a tarball",
                "account":"12345","org_id":"54321","system_id":"3c9b","url":"http://x","size":3,
                "extras":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(r.request_id.as_str(), "abc");
        assert_eq!(r.validation, Verdict::Failure);
        assert_eq!(r.extras.get("system_id").unwrap(), "3c9b");
        assert_eq!(r.extras.get("a").unwrap(), 1);
        assert!(!r.extras.contains_key("url"));
        assert!(!r.extras.contains_key("size"));
    }

    #[test]
    fn request_id_wins_over_payload_id() {
        let r = ValidationResponse::parse(
            br#"{"request_id":"a","payload_id":"b","service":"s","validation":"handoff"}"#,
        )
        .unwrap();
        assert_eq!(r.request_id.as_str(), "a");
        assert!(r.payload_id_mismatch);
    }

    #[test]
    fn every_refusal_has_its_reason_code() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "invalid_json"),
            (b"[1,2]", "not_an_object"),
            (
                br#"{"service":"s","validation":"success"}"#,
                "missing_field",
            ),
            (
                br#"{"request_id":"a","validation":"success"}"#,
                "missing_field",
            ),
            (br#"{"request_id":"a","service":"s"}"#, "missing_field"),
            (
                br#"{"request_id":null,"service":"s","validation":"success"}"#,
                "missing_field",
            ),
            (
                br#"{"request_id":"../x","service":"s","validation":"success"}"#,
                "bad_request_id",
            ),
            (
                br#"{"request_id":"a","service":"s","validation":"maybe"}"#,
                "bad_validation_value",
            ),
        ];
        for (raw, code) in cases {
            let err = ValidationResponse::parse(raw).unwrap_err();
            assert_eq!(err.reason_code(), *code, "{}", String::from_utf8_lossy(raw));
        }
    }
}
