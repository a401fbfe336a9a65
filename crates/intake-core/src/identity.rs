//! The `x-rh-identity` header: base64 JSON naming the tenant (org id, account) and the caller type.

use base64::Engine;
use serde_json::Value;

/// The header that carries the identity.
pub const HEADER: &str = "x-rh-identity";

/// Longest identity header accepted, so a hostile header cannot make us decode megabytes.
pub const MAX_HEADER_LEN: usize = 32 * 1024;

/// A decoded identity. `raw` is the header as sent, forwarded as `b64_identity` and never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub org_id: String,
    pub account: String,
    pub kind: String,
    pub raw: String,
}

impl std::fmt::Debug for Identity {
    // The raw header is a credential of sorts: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("org_id", &self.org_id)
            .field("account", &self.account)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Why an identity header was refused; every variant maps to 400 (a missing header is 401 and is
/// decided by the caller, which knows whether identity is required).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("x-rh-identity is longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("x-rh-identity is not valid base64")]
    NotBase64,
    #[error("x-rh-identity does not decode to UTF-8 JSON")]
    NotJson,
    #[error("x-rh-identity JSON has no \"identity\" object")]
    NoIdentityObject,
    #[error("x-rh-identity has no org_id (identity.org_id or identity.internal.org_id)")]
    NoOrgId,
}

impl Identity {
    /// Decodes and checks a header value by the rules of spec/README.md.
    pub fn decode(raw: &str) -> Result<Self, IdentityError> {
        if raw.len() > MAX_HEADER_LEN {
            return Err(IdentityError::TooLong);
        }
        let trimmed = raw.trim();
        let bytes = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        )
        .decode(trimmed)
        .map_err(|_| IdentityError::NotBase64)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| IdentityError::NotJson)?;
        let doc: Value = serde_json::from_str(text).map_err(|_| IdentityError::NotJson)?;
        let ident = doc
            .get("identity")
            .and_then(Value::as_object)
            .ok_or(IdentityError::NoIdentityObject)?;
        let kind = ident
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut org_id = scalar_text(ident.get("org_id"));
        if org_id.is_empty() {
            org_id = scalar_text(ident.get("internal").and_then(|i| i.get("org_id")));
        }
        if org_id.is_empty() && kind != "Associate" && kind != "X509" {
            return Err(IdentityError::NoOrgId);
        }
        let account = scalar_text(ident.get("account_number"));
        Ok(Self {
            org_id,
            account,
            kind,
            raw: trimmed.to_owned(),
        })
    }

    /// Associates see every tenant.
    pub fn is_associate(&self) -> bool {
        self.kind == "Associate"
    }

    /// Encodes a minimal identity, for tests and tooling.
    pub fn encode(account: &str, org_id: &str) -> String {
        let mut ident = serde_json::Map::new();
        if !account.is_empty() {
            ident.insert("account_number".into(), Value::String(account.into()));
        }
        ident.insert("org_id".into(), Value::String(org_id.into()));
        ident.insert("type".into(), Value::String("User".into()));
        let doc = serde_json::json!({ "identity": ident });
        base64::engine::general_purpose::STANDARD.encode(doc.to_string())
    }
}

/// A string as itself, a number as its decimal text, anything else as absent.
fn scalar_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    #[test]
    fn seed_identity_uses_internal_org_id() {
        let raw = "eyJpZGVudGl0eSI6IHsiYWNjb3VudF9udW1iZXIiOiAiMTIzNDUiLCAiaW50ZXJuYWwiOiB7Im9yZ19pZCI6ICI1NDMyMSJ9fX0=";
        let id = Identity::decode(raw).unwrap();
        assert_eq!(id.account, "12345");
        assert_eq!(id.org_id, "54321");
    }

    #[test]
    fn padding_is_optional_and_numbers_become_text() {
        let doc = r#"{"identity":{"org_id":777,"account_number":12}}"#;
        let id = Identity::decode(&STANDARD_NO_PAD.encode(doc)).unwrap();
        assert_eq!(id.org_id, "777");
        assert_eq!(id.account, "12");
    }

    #[test]
    fn associates_and_x509_need_no_org() {
        for kind in ["Associate", "X509"] {
            let doc = format!(r#"{{"identity":{{"type":"{kind}"}}}}"#);
            let id = Identity::decode(&STANDARD.encode(doc)).unwrap();
            assert_eq!(id.org_id, "");
        }
        let doc = r#"{"identity":{"type":"User"}}"#;
        assert_eq!(
            Identity::decode(&STANDARD.encode(doc)),
            Err(IdentityError::NoOrgId)
        );
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        assert_eq!(Identity::decode("%%%"), Err(IdentityError::NotBase64));
        assert_eq!(
            Identity::decode(&STANDARD.encode("not json")),
            Err(IdentityError::NotJson)
        );
        assert_eq!(
            Identity::decode(&STANDARD.encode("[1]")),
            Err(IdentityError::NoIdentityObject)
        );
        assert_eq!(
            Identity::decode(&STANDARD.encode(r#"{"identity":"x"}"#)),
            Err(IdentityError::NoIdentityObject)
        );
        assert_eq!(
            Identity::decode(&STANDARD.encode([0xff, 0xfe])),
            Err(IdentityError::NotJson)
        );
    }

    #[test]
    fn encode_round_trips() {
        let id = Identity::decode(&Identity::encode("", "99")).unwrap();
        assert_eq!((id.account.as_str(), id.org_id.as_str()), ("", "99"));
    }

    #[test]
    fn debug_never_shows_the_raw_header() {
        let raw = Identity::encode("1", "2");
        let id = Identity::decode(&raw).unwrap();
        assert!(!format!("{id:?}").contains(&raw));
    }
}
