//! `multipart/form-data` framing written once as shared bytes around a file body the caller supplies
//! (a file stream, or a payload reused by every request of a load run).

use bytes::Bytes;

/// The bytes before and after the file part's content.
#[derive(Debug, Clone)]
pub struct Framing {
    boundary: String,
    /// The optional metadata part, then the file part's headers.
    pub head: Bytes,
    /// The closing boundary.
    pub tail: Bytes,
}

impl Framing {
    /// Frames a file part named `file` with its own `Content-Type`, preceded by a `metadata` part
    /// when one is given (the server accepts it before or after the file).
    ///
    /// `boundary` must not occur in the file; a random one (see [`random_boundary`]) makes that a
    /// non-event.
    pub fn new(
        boundary: &str,
        content_type: &str,
        file_name: &str,
        metadata: Option<&str>,
    ) -> Self {
        let mut head = String::new();
        if let Some(json) = metadata {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
                 Content-Type: application/json\r\n\r\n{json}\r\n"
            ));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
             Content-Type: {}\r\n\r\n",
            quoted_safe(file_name),
            header_safe(content_type),
        ));
        Self {
            boundary: boundary.to_owned(),
            head: Bytes::from(head),
            tail: Bytes::from(format!("\r\n--{boundary}--\r\n")),
        }
    }

    /// The request's `Content-Type` header value.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The whole body's length for a file of `file_len` bytes (the request's `Content-Length`).
    pub fn body_len(&self, file_len: u64) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + file_len
    }

    /// Head, file and tail in one buffer: for bodies reused many times, where one write beats three.
    pub fn whole(&self, file: &[u8]) -> Bytes {
        let mut body = Vec::with_capacity(self.head.len() + file.len() + self.tail.len());
        body.extend_from_slice(&self.head);
        body.extend_from_slice(file);
        body.extend_from_slice(&self.tail);
        Bytes::from(body)
    }
}

/// A boundary no file is going to contain by accident.
pub fn random_boundary() -> String {
    format!("intake-{}", uuid::Uuid::new_v4().simple())
}

/// A file name inside a quoted header parameter: quotes, backslashes and line breaks replaced.
fn quoted_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if matches!(c, '"' | '\\') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// A header value without line breaks, so a flag cannot inject headers into the part.
fn header_safe(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_metadata_then_file() {
        let f = Framing::new(
            "B",
            "application/vnd.redhat.advisor.payload+tgz",
            "a\"b.tgz",
            Some("{\"x\":1}"),
        );
        let body = f.whole(b"DATA");
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(
            text,
            "--B\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{\"x\":1}\r\n\
             --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a_b.tgz\"\r\n\
             Content-Type: application/vnd.redhat.advisor.payload+tgz\r\n\r\nDATA\r\n--B--\r\n"
        );
        assert_eq!(f.body_len(4), body.len() as u64);
        assert_eq!(f.content_type(), "multipart/form-data; boundary=B");
    }

    #[test]
    fn header_values_cannot_break_lines() {
        let f = Framing::new("B", "text/plain\r\nX-Evil: 1", "n\r\n", None);
        let head = std::str::from_utf8(&f.head).unwrap();
        assert!(!head.contains("\r\nX-Evil"), "{head}");
        assert!(head.contains("filename=\"n__\""), "{head}");
    }
}
