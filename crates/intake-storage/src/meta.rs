//! Object metadata (storage.md, "Keys and object metadata"): hyphenated ASCII keys, kept across moves.

use std::collections::BTreeMap;

/// The metadata table of a stored payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    pub request_id: String,
    pub account: String,
    pub org_id: String,
    pub service: String,
    pub category: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub user_agent: String,
    pub received_at: String,
}

impl ObjectMeta {
    /// The metadata as its hyphenated key → value table (S3 user metadata, localdisk sidecar).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        [
            ("request-id", self.request_id.clone()),
            ("account", self.account.clone()),
            ("org-id", self.org_id.clone()),
            ("service", self.service.clone()),
            ("category", self.category.clone()),
            ("content-type", self.content_type.clone()),
            ("size", self.size.to_string()),
            ("sha256", self.sha256.clone()),
            ("user-agent", self.user_agent.clone()),
            ("received-at", self.received_at.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ascii_only(&v)))
        .collect()
    }

    /// Reads the table back; missing keys become empty, a bad size becomes 0.
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| map.get(k).cloned().unwrap_or_default();
        Self {
            request_id: get("request-id"),
            account: get("account"),
            org_id: get("org-id"),
            service: get("service"),
            category: get("category"),
            content_type: get("content-type"),
            size: get("size").parse().unwrap_or(0),
            sha256: get("sha256"),
            user_agent: get("user-agent"),
            received_at: get("received-at"),
        }
    }
}

/// Printable ASCII only (anything else becomes `?`), as S3 metadata requires.
pub fn ascii_only(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// The `user-agent` value: printable ASCII, at most 256 characters.
pub fn user_agent_value(raw: &str) -> String {
    ascii_only(raw).chars().take(256).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_ascii() {
        let m = ObjectMeta {
            request_id: "a".into(),
            size: 12,
            user_agent: "cürl".into(),
            ..Default::default()
        };
        let back = ObjectMeta::from_map(&m.to_map());
        assert_eq!(back.size, 12);
        assert_eq!(back.user_agent, "c?rl");
        assert_eq!(user_agent_value(&"x".repeat(300)).len(), 256);
    }
}
