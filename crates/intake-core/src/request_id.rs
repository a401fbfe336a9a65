//! Request ids: the one identifier a payload keeps through the platform, and its storage key.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest request id accepted anywhere (header, path, message).
pub const MAX_LEN: usize = 64;

/// A request id that matches `^[A-Za-z0-9-]{1,64}$`.
///
/// The pattern guarantees it is safe as a flat storage key: no `/`, no `.`, no whitespace.
/// Ids are opaque and compared byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RequestId(String);

/// Why a text is not a request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdError {
    #[error("request id is empty")]
    Empty,
    #[error("request id is {0} characters long; at most 64 are allowed")]
    TooLong(usize),
    #[error("request id may contain only letters, digits and '-'")]
    BadCharacter,
}

impl RequestId {
    /// Checks `text` against the request-id pattern.
    pub fn parse(text: &str) -> Result<Self, RequestIdError> {
        if text.is_empty() {
            return Err(RequestIdError::Empty);
        }
        if text.len() > MAX_LEN {
            return Err(RequestIdError::TooLong(text.chars().count()));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(RequestIdError::BadCharacter);
        }
        Ok(Self(text.to_owned()))
    }

    /// A fresh id: a UUIDv4 as 32 lowercase hex digits.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RequestId {
    type Err = RequestIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hex_and_dashed_uuids() {
        assert!(RequestId::parse("2439a2974ff44273afcd8b1d18077bf1").is_ok());
        assert!(RequestId::parse("3c9b1e52-7f0a-4d6e-8b21-95d0c4a7e610").is_ok());
        assert!(RequestId::parse("52df9f748eabcfea").is_ok());
        assert!(RequestId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_traversal_and_length() {
        assert_eq!(RequestId::parse("../x"), Err(RequestIdError::BadCharacter));
        assert_eq!(RequestId::parse("a.b"), Err(RequestIdError::BadCharacter));
        assert_eq!(RequestId::parse("a/b"), Err(RequestIdError::BadCharacter));
        assert_eq!(RequestId::parse(""), Err(RequestIdError::Empty));
        assert_eq!(
            RequestId::parse(&"a".repeat(65)),
            Err(RequestIdError::TooLong(65))
        );
        assert_eq!(RequestId::parse("é"), Err(RequestIdError::BadCharacter));
    }

    #[test]
    fn generated_ids_are_32_lower_hex() {
        let id = RequestId::generate();
        assert_eq!(id.as_str().len(), 32);
        assert!(id
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
