//! The checks every status message passes before it is stored (spec/tracker.md "Checks, in order"),
//! the accepted date forms, normalisation and the dedup key.

use chrono::{DateTime, FixedOffset, NaiveDateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::model::NewStatus;

/// Longest `status_msg` kept; longer ones are cut (not an error).
pub const MAX_STATUS_MSG: usize = 4096;
/// Longest `service`, `source` and `status`.
pub const MAX_NAME: usize = 128;
/// Longest account, org, inventory and system id.
pub const MAX_ID: usize = 256;

/// Why a message goes to the dead-letter topic: the `dlq_reason` code and a detail for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub detail: String,
}

impl Rejection {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The window of acceptable dates: `[now - retention, now + future_skew]`.
#[derive(Debug, Clone, Copy)]
pub struct DateWindow {
    pub earliest: DateTime<Utc>,
    pub latest: DateTime<Utc>,
}

const REQUIRED: [&str; 4] = ["service", "request_id", "status", "date"];
const TENANT_FIELDS: [&str; 4] = ["account", "org_id", "inventory_id", "system_id"];
const TEXT_FIELDS: [&str; 6] = [
    "service",
    "source",
    "request_id",
    "status",
    "status_msg",
    "date",
];

/// Runs the checks in order on a raw message value and returns the normalised status, or the first
/// failure.
pub fn check(value: &[u8], window: DateWindow) -> Result<NewStatus, Rejection> {
    match fast::check(value, window) {
        Some(status) => Ok(status),
        None => check_value(value, window),
    }
}

/// [`check`] on the message parsed as a `serde_json::Value`: every message the fast path does not
/// answer for (a rejection, a number where text is expected, a repeated field, another date form).
fn check_value(value: &[u8], window: DateWindow) -> Result<NewStatus, Rejection> {
    let parsed: Value = serde_json::from_slice(value)
        .map_err(|e| Rejection::new("invalid_json", format!("not JSON: {e}")))?;
    let Value::Object(object) = parsed else {
        return Err(Rejection::new(
            "not_an_object",
            "the value is not a JSON object",
        ));
    };
    for name in REQUIRED {
        let present = match object.get(name) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        };
        if !present {
            return Err(Rejection::new(
                "missing_field",
                format!("missing field \"{name}\""),
            ));
        }
    }
    for name in TEXT_FIELDS {
        match object.get(name) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => {
                return Err(Rejection::new(
                    "bad_field_type",
                    format!("field \"{name}\" must be a string, not {}", kind(other)),
                ))
            }
        }
    }
    for name in TENANT_FIELDS {
        match object.get(name) {
            None | Some(Value::Null) | Some(Value::String(_)) | Some(Value::Number(_)) => {}
            Some(other) => {
                return Err(Rejection::new(
                    "bad_field_type",
                    format!(
                        "field \"{name}\" must be a string or a number, not {}",
                        kind(other)
                    ),
                ))
            }
        }
    }
    let request_id = text(&object, "request_id");
    if !valid_request_id(&request_id) {
        return Err(Rejection::new(
            "bad_request_id",
            format!("request_id {request_id:?} does not match ^[A-Za-z0-9-]{{1,64}}$"),
        ));
    }
    let date_text = text(&object, "date");
    let Some(date) = parse_date(&date_text) else {
        return Err(Rejection::new(
            "bad_date",
            format!("date {date_text:?} is not an accepted date form"),
        ));
    };
    if date < window.earliest || date > window.latest {
        return Err(Rejection::new(
            "date_out_of_range",
            format!(
                "date {} is outside [{}, {}]",
                intake_core::time::format(date),
                intake_core::time::format(window.earliest),
                intake_core::time::format(window.latest)
            ),
        ));
    }
    let service = text(&object, "service");
    let source = text(&object, "source");
    let status = text(&object, "status");
    for (name, value) in [
        ("service", &service),
        ("source", &source),
        ("status", &status),
    ] {
        if value.chars().count() > MAX_NAME {
            return Err(Rejection::new(
                "field_too_long",
                format!("{name} is longer than {MAX_NAME} characters"),
            ));
        }
    }
    let ids: Vec<String> = TENANT_FIELDS
        .iter()
        .map(|name| text(&object, name))
        .collect();
    for (name, value) in TENANT_FIELDS.iter().zip(&ids) {
        if value.chars().count() > MAX_ID {
            return Err(Rejection::new(
                "field_too_long",
                format!("{name} is longer than {MAX_ID} characters"),
            ));
        }
    }
    let service = normalise_name(&service);
    let status = normalise_name(&status);
    let source = Some(normalise_name(&source)).filter(|s| !s.is_empty());
    let status_msg: String = text(&object, "status_msg")
        .chars()
        .take(MAX_STATUS_MSG)
        .collect();
    let [account, org_id, inventory_id, system_id] = <[String; 4]>::try_from(ids)
        .map_err(|_| Rejection::new("bad_field_type", "tenant fields"))?;
    let dedup_key = dedup_key(
        &request_id,
        &service,
        source.as_deref(),
        &status,
        &status_msg,
        date,
    );
    Ok(NewStatus {
        request_id,
        service,
        source,
        status,
        status_msg,
        date,
        account,
        org_id,
        inventory_id,
        system_id,
        dedup_key,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field as text: a string as is, a number as its decimal string, anything else (absent) `""`.
fn text(object: &Map<String, Value>, name: &str) -> String {
    match object.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn normalise_name(value: &str) -> String {
    value.trim().to_lowercase()
}

/// `^[A-Za-z0-9-]{1,64}$`.
pub fn valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The dedup key: sha256 of the normalised fields joined by 0x1F, as lowercase hex.
pub fn dedup_key(
    request_id: &str,
    service: &str,
    source: Option<&str>,
    status: &str,
    status_msg: &str,
    date: DateTime<Utc>,
) -> String {
    let mut hasher = Sha256::new();
    let mut date_buffer = [0u8; 27];
    let formatted;
    let date = match format_micros(date, &mut date_buffer) {
        Some(text) => text,
        None => {
            formatted = intake_core::time::format(date);
            formatted.as_str()
        }
    };
    let parts = [
        request_id,
        service,
        source.unwrap_or(""),
        status,
        status_msg,
        date,
    ];
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0x1F]);
        }
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(2 * digest.len());
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xF)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `date` as [`intake_core::time::format`] writes it (`2024-05-02T09:30:12.123456Z`), into
/// `buffer` instead of a new string; `None` for a year outside 0..=9999, which it writes otherwise.
fn format_micros(date: DateTime<Utc>, buffer: &mut [u8; 27]) -> Option<&str> {
    use chrono::{Datelike as _, Timelike as _};
    let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    // A leap second's nanoseconds run past 999 999 999; chrono writes those its own way.
    let micros = date.nanosecond() / 1000;
    if micros > 999_999 {
        return None;
    }
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            buffer[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, date.month());
    put(8, 2, date.day());
    put(11, 2, date.hour());
    put(14, 2, date.minute());
    put(17, 2, date.second());
    put(20, 6, micros);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        buffer[at] = c;
    }
    std::str::from_utf8(buffer).ok()
}

/// Parses every accepted date form (RFC3339 with `Z` or an offset, also `+0200`; no zone read as UTC;
/// a space instead of `T`), up to 9 fractional digits, truncated to microseconds.
pub fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.len() < 19 || !text.is_char_boundary(10) {
        return None;
    }
    let (day, rest) = text.split_at(10);
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let normalised = format!("{day}T{rest}");
    let parsed = DateTime::parse_from_rfc3339(&normalised)
        .ok()
        .or_else(|| {
            DateTime::<FixedOffset>::parse_from_str(&normalised, "%Y-%m-%dT%H:%M:%S%.f%z").ok()
        })
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            NaiveDateTime::parse_from_str(&normalised, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })?;
    let fraction = rest
        .split(['+', '-', 'Z', 'z'])
        .next()
        .and_then(|t| t.split('.').nth(1));
    if fraction.is_some_and(|f| f.len() > 9) {
        return None;
    }
    Some(parsed.trunc_subsecs(6))
}

mod fast;

#[cfg(test)]
mod tests;
