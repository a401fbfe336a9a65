//! Times in the contract's output form: RFC3339 UTC, `Z`, exactly six fractional digits.

use chrono::{DateTime, SecondsFormat, Utc};

pub type Timestamp = DateTime<Utc>;

/// Formats `t` as `2024-05-02T09:30:12.123456Z`.
pub fn format(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The current time in the output form.
pub fn now_string() -> String {
    format(Utc::now())
}

/// Parses any RFC3339 time (any offset) into UTC.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_and_z() {
        let t = parse_rfc3339("2024-05-02T11:30:12.5+02:00").unwrap();
        assert_eq!(format(t), "2024-05-02T09:30:12.500000Z");
        let t = parse_rfc3339("2024-05-02T09:30:12Z").unwrap();
        assert_eq!(format(t), "2024-05-02T09:30:12.000000Z");
    }
}
