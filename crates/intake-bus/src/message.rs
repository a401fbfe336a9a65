//! Messages as published and as received.

/// A header: case-insensitive name, raw value (UTF-8 text for every header intake writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Topic wire name (prefix applied).
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub value: Vec<u8>,
}

impl OutgoingMessage {
    pub fn new(topic: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            headers: Vec::new(),
            value: value.into(),
        }
    }

    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// A message delivered to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub value: Vec<u8>,
    /// When the bus stored it (milliseconds since the epoch), when known.
    pub timestamp_ms: Option<i64>,
}

impl ReceivedMessage {
    /// The first header named `name` (case-insensitive) as UTF-8 text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(&h.value).ok())
    }

    /// The key as UTF-8 text, when it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}
