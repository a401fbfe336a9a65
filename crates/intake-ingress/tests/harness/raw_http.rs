//! HTTP/1.1 spoken by hand over a TCP socket, for what a client library hides: sending part of a
//! body, never sending it, or watching when the server answers and closes.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

/// One response as it came over the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A request line and headers (with `Host`), ending with the blank line.
pub fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: ingress.test\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads until the server closes the connection (an error after the answer, such as a reset because
/// the server did not read everything, also counts as closed). Fails the test if the server keeps
/// the connection open for 30 s.
pub async fn read_until_closed(mut reader: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server kept the connection open");
    out
}

/// Reads until `bytes` holds `needle` (or the connection ends); returns what was read.
pub async fn read_until(mut reader: impl AsyncRead + Unpin, needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    let read = async {
        while !out.windows(needle.len()).any(|w| w == needle) {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server did not answer");
    out
}

/// Reads one final response (interim 1xx ones skipped) whose body length is given by
/// `Content-Length`, leaving the connection open.
pub async fn read_response(mut reader: impl AsyncRead + Unpin) -> RawResponse {
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 4096];
    let read = async {
        loop {
            let complete = parse(&bytes).into_iter().find(|r| {
                r.status >= 200
                    && r.header("content-length")
                        .and_then(|v| v.parse::<usize>().ok())
                        .is_some_and(|len| r.body.len() == len)
            });
            if let Some(response) = complete {
                return response;
            }
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => panic!(
                    "the connection ended before a full response: {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server did not answer")
}

/// Splits what a server sent into responses (interim 1xx ones included), using `Content-Length`.
pub fn parse(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = std::str::from_utf8(&bytes[..end]).expect("ASCII response head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let start = end + 4;
        let stop = (start + len).min(bytes.len());
        out.push(RawResponse {
            status,
            headers,
            body: bytes[start..stop].to_vec(),
        });
        bytes = &bytes[stop..];
    }
    out
}
