//! The parts of an announce the validator needs, read tolerantly; the whole object is kept so the
//! response can echo it.

use intake_core::RequestId;
use serde_json::{Map, Value};

/// An announce good enough to answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AnnounceView {
    pub request_id: RequestId,
    pub service: String,
    pub url: Option<String>,
    pub size: Option<u64>,
    pub org_id: Option<String>,
    pub account: Option<String>,
    /// Every field as received, echoed in the validation response.
    pub fields: Map<String, Value>,
}

/// Why an announce cannot be answered (logged; the message is committed and nothing published).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadAnnounce {
    #[error("value is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("value is not a JSON object")]
    NotAnObject,
    #[error("missing or non-string field {0:?}")]
    MissingField(&'static str),
    #[error("bad request id {0:?}")]
    BadRequestId(String),
}

fn text(fields: &Map<String, Value>, name: &str) -> Option<String> {
    fields.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// Reads an announce: `request_id` (else the legacy `payload_id`) must match the request-id
/// pattern and `service` must be a string; everything else is optional here.
pub(crate) fn parse(value: &[u8]) -> Result<AnnounceView, BadAnnounce> {
    let parsed: Value =
        serde_json::from_slice(value).map_err(|e| BadAnnounce::InvalidJson(e.to_string()))?;
    let Value::Object(fields) = parsed else {
        return Err(BadAnnounce::NotAnObject);
    };
    let id = text(&fields, "request_id")
        .or_else(|| text(&fields, "payload_id"))
        .ok_or(BadAnnounce::MissingField("request_id"))?;
    let request_id = RequestId::parse(&id).map_err(|_| BadAnnounce::BadRequestId(id.clone()))?;
    let service = text(&fields, "service").ok_or(BadAnnounce::MissingField("service"))?;
    Ok(AnnounceView {
        request_id,
        service,
        url: text(&fields, "url"),
        size: fields.get("size").and_then(Value::as_u64),
        org_id: text(&fields, "org_id"),
        account: text(&fields, "account"),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_example() {
        let v = parse(
            br#"{"account": "12345", "org_id": "54321", "request_id": "2439a2974ff44273afcd8b1d18077bf1",
                 "size": 356, "service": "advisor", "url": "http://h/x", "metadata": null}"#,
        )
        .unwrap();
        assert_eq!(v.request_id.as_str(), "2439a2974ff44273afcd8b1d18077bf1");
        assert_eq!((v.service.as_str(), v.size), ("advisor", Some(356)));
        assert_eq!(
            (v.org_id.as_deref(), v.account.as_deref()),
            (Some("54321"), Some("12345"))
        );
    }

    #[test]
    fn legacy_payload_id_is_read() {
        let v = parse(br#"{"payload_id": "52df9f748eabcfea", "service": "testareno"}"#).unwrap();
        assert_eq!(v.request_id.as_str(), "52df9f748eabcfea");
        assert_eq!(v.url, None);
    }

    #[test]
    fn bad_announces_are_named() {
        assert!(matches!(parse(b"{"), Err(BadAnnounce::InvalidJson(_))));
        assert_eq!(parse(b"[]"), Err(BadAnnounce::NotAnObject));
        assert_eq!(
            parse(br#"{"service": "a"}"#),
            Err(BadAnnounce::MissingField("request_id"))
        );
        assert_eq!(
            parse(br#"{"request_id": "a/b", "service": "a"}"#),
            Err(BadAnnounce::BadRequestId("a/b".into()))
        );
    }
}
