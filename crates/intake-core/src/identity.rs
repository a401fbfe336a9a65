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
    #[error("x-rh-identity JSON has the key {0:?} twice in one object")]
    DuplicateKey(String),
    #[error("x-rh-identity org_id must be a whole number or a string of digits without leading zeros (got {0})")]
    BadOrgId(String),
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
        let doc = strict_json::parse(text)?;
        let ident = doc
            .get("identity")
            .and_then(Value::as_object)
            .ok_or(IdentityError::NoIdentityObject)?;
        let kind = ident
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut org_id = canonical_org_id(ident.get("org_id"))?;
        if org_id.is_empty() {
            org_id = canonical_org_id(ident.get("internal").and_then(|i| i.get("org_id")))?;
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

/// The canonical org id (spec/README.md): a whole JSON number as its decimal text, a string trimmed of
/// surrounding whitespace that must then be decimal digits without a leading zero. Absent, `null` and
/// `""` give `""` (no org id). A fraction (`666.0`), exponent, negative number, any other string or any
/// other JSON type is refused, so two spellings of one org can never reach the deny list apart.
pub fn canonical_org_id(v: Option<&Value>) -> Result<String, IdentityError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(whole) => Ok(whole.to_string()),
            None => Err(IdentityError::BadOrgId(format!("the number {n}"))),
        },
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() || is_canonical_digits(t) {
                Ok(t.to_owned())
            } else {
                Err(IdentityError::BadOrgId(format!("{s:?}")))
            }
        }
        Some(other) => Err(IdentityError::BadOrgId(format!(
            "a JSON {}",
            json_type(other)
        ))),
    }
}

/// Decimal digits, no sign, no leading zero unless the whole text is `0`.
pub fn is_canonical_digits(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0'))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// JSON parsing that refuses an object holding one key twice, at any depth (serde_json would keep
/// the last one silently, which lets a second `identity` or `org_id` hide the first).
mod strict_json {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use super::IdentityError;

    const DUPLICATE: &str = "duplicate key: ";

    pub fn parse(text: &str) -> Result<Value, IdentityError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = Strict
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v));
        parsed.map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix(DUPLICATE) {
                Some(rest) => IdentityError::DuplicateKey(
                    rest.split(" at line ").next().unwrap_or(rest).to_owned(),
                ),
                None => IdentityError::NotJson,
            }
        })
    }

    struct Strict;

    impl<'de> de::DeserializeSeed<'de> for Strict {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            // A fraction must stay a fraction (so `666.0` is refused as an org id, not read as 666);
            // a non-finite value cannot come out of JSON text.
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = seq.next_element_seed(Strict)? {
                items.push(v);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!("{DUPLICATE}{key}")));
                }
                let value = map.next_value_seed(Strict)?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        }
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

    fn decode_doc(doc: &str) -> Result<Identity, IdentityError> {
        Identity::decode(&STANDARD.encode(doc))
    }

    #[test]
    fn org_id_has_one_canonical_form() {
        for (doc, org) in [
            (r#"{"identity":{"org_id":666}}"#, "666"),
            (r#"{"identity":{"org_id":"666"}}"#, "666"),
            (r#"{"identity":{"org_id":" 666\t"}}"#, "666"),
            (r#"{"identity":{"org_id":0}}"#, "0"),
            (
                r#"{"identity":{"org_id":"","internal":{"org_id":666}}}"#,
                "666",
            ),
            (
                r#"{"identity":{"org_id":null,"internal":{"org_id":" 666"}}}"#,
                "666",
            ),
            (
                r#"{"identity":{"org_id":18446744073709551615}}"#,
                "18446744073709551615",
            ),
        ] {
            assert_eq!(
                decode_doc(doc).map(|i| i.org_id),
                Ok(org.to_owned()),
                "{doc}"
            );
        }
    }

    #[test]
    fn org_id_spellings_that_could_dodge_the_deny_list_are_refused() {
        for doc in [
            r#"{"identity":{"org_id":666.0}}"#,
            r#"{"identity":{"org_id":6.66e2}}"#,
            r#"{"identity":{"org_id":666e0}}"#,
            r#"{"identity":{"org_id":-666}}"#,
            r#"{"identity":{"org_id":-0}}"#,
            r#"{"identity":{"org_id":18446744073709551616}}"#,
            r#"{"identity":{"org_id":"0666"}}"#,
            r#"{"identity":{"org_id":"666.0"}}"#,
            r#"{"identity":{"org_id":"+666"}}"#,
            r#"{"identity":{"org_id":"6 66"}}"#,
            r#"{"identity":{"org_id":"６６６"}}"#,
            r#"{"identity":{"org_id":true}}"#,
            r#"{"identity":{"org_id":["666"]}}"#,
            r#"{"identity":{"org_id":{"id":"666"}}}"#,
            r#"{"identity":{"internal":{"org_id":666.5}}}"#,
        ] {
            assert!(
                matches!(decode_doc(doc), Err(IdentityError::BadOrgId(_))),
                "{doc}: {:?}",
                decode_doc(doc)
            );
        }
    }

    #[test]
    fn duplicate_keys_anywhere_are_refused() {
        for (doc, key) in [
            (
                r#"{"identity":{"org_id":"666"},"identity":{"org_id":"1"}}"#,
                "identity",
            ),
            (r#"{"identity":{"org_id":"666","org_id":"1"}}"#, "org_id"),
            (
                r#"{"identity":{"org_id":"","internal":{"org_id":"666","org_id":"1"}}}"#,
                "org_id",
            ),
            (
                r#"{"identity":{"org_id":"1","internal":{},"internal":{}}}"#,
                "internal",
            ),
            (
                r#"{"identity":{"org_id":"1","type":"User","type":"Associate"}}"#,
                "type",
            ),
            (r#"{"identity":{"org_id":"1","x":[{"a":1,"a":2}]}}"#, "a"),
            (
                r#"{"identity":{"org_id":"1"},"identit\u0079":{"org_id":"2"}}"#,
                "identity",
            ),
        ] {
            assert_eq!(
                decode_doc(doc),
                Err(IdentityError::DuplicateKey(key.to_owned())),
                "{doc}"
            );
        }
        // The same key in two different objects is fine.
        assert!(decode_doc(r#"{"identity":{"org_id":"1","internal":{"org_id":"1"}}}"#).is_ok());
        // Trailing data after the document is not JSON.
        assert_eq!(
            decode_doc(r#"{"identity":{"org_id":"1"}} {}"#),
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
