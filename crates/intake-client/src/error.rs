//! What can go wrong on the client side, and the server's own account of a refusal.

use serde::Deserialize;

/// The spec's shared error body (`status`, `title`, `message`, `request_id`), as far as it came.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ServerRefusal {
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

impl ServerRefusal {
    /// Reads an error answer's body; a body that is not the JSON error shape becomes the message.
    pub fn from_body(status: reqwest::StatusCode, body: &[u8]) -> Self {
        let mut refusal = serde_json::from_slice::<ServerRefusal>(body).unwrap_or_else(|_| Self {
            message: String::from_utf8_lossy(body).trim().to_owned(),
            ..Self::default()
        });
        refusal.status = status.as_u16();
        if refusal.title.is_empty() {
            refusal.title = status.canonical_reason().unwrap_or("").to_owned();
        }
        refusal
    }
}

impl std::fmt::Display for ServerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL {url:?}: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("invalid argument: {0}")]
    BadArgument(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server refused the request ({0})")]
    Refused(ServerRefusal),
    #[error("the server failed ({0})")]
    ServerFailed(ServerRefusal),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("the server's answer is not what the spec says: {0}")]
    BadAnswer(String),
}

/// A short, bounded name for a transport error (for counting them by kind).
pub fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() {
        "body"
    } else if e.is_decode() {
        "decode"
    } else if e.is_request() {
        "request"
    } else {
        "other"
    }
}

/// A transport error with its causes, e.g. "error sending request: connection refused".
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
