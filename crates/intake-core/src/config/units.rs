//! Parsing of the value forms the spec allows: durations, sizes, booleans, lists, listen addresses.
//! Every variable of a kind parses through the one function here, so a form accepted by one is
//! accepted by all.

use std::time::Duration;

/// `50ms`, `30s`, `5m`, `24h`, `7d`, or bare seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let err = || "expected a duration such as 50ms, 30s, 5m, 24h, 7d or bare seconds".to_owned();
    let (num, mult_ms): (&str, u64) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000)
    } else if let Some(n) = t.strip_suffix('d') {
        (n, 86_400_000)
    } else {
        (t, 1_000)
    };
    let n: u64 = num.trim().parse().map_err(|_| err())?;
    n.checked_mul(mult_ms)
        .map(Duration::from_millis)
        .ok_or_else(err)
}

/// Formats a duration in the largest unit that divides it (`24h`, `90s`, `50ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// What [`parse_size`] accepts, for error messages.
pub const SIZE_FORMS: &str =
    "expected a size: bytes, or a number with KiB, MiB, GiB, TiB (1024s) or K, M, G, T (1000s), B optional";

/// A size in bytes: `1048576`, `100MiB`, `1.5 GiB`, `10KB`, `2M`. `Ki`/`Mi`/`Gi`/`Ti` count in 1024s,
/// `K`/`M`/`G`/`T` in 1000s (case does not matter), a trailing `B` is optional; fractions round
/// down. The one parser for every size in the configuration (and the pipeline's file).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        "t" => 1_000_000_000_000,
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        _ => return Err(SIZE_FORMS.to_owned()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(SIZE_FORMS.to_owned());
    }
    match number.split_once('.') {
        None => number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .ok_or_else(|| SIZE_FORMS.to_owned()),
        Some((whole, fraction)) => {
            let value: f64 = format!("{whole}.{fraction}")
                .parse()
                .map_err(|_| SIZE_FORMS.to_owned())?;
            let bytes = (value * multiplier as f64).floor();
            if bytes.is_finite() && bytes < u64::MAX as f64 {
                Ok(bytes as u64)
            } else {
                Err(SIZE_FORMS.to_owned())
            }
        }
    }
}

/// A listen address, `host:port` (`0.0.0.0:8080`, `[::]:8080`, `localhost:8080`): a non-empty host
/// and a port number.
pub fn parse_listen(text: &str) -> Result<String, String> {
    let t = text.trim();
    let err = || "expected host:port, such as 0.0.0.0:8080 or 127.0.0.1:8080".to_owned();
    let (host, port) = t.rsplit_once(':').ok_or_else(err)?;
    if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().is_err() {
        return Err(err());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(err());
    }
    Ok(t.to_owned())
}

pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// Splits on commas (and whitespace), trimming and dropping empties.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_millis(50)), "50ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("100 mib"), Ok(100 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("2M"), Ok(2_000_000));
        assert_eq!(parse_size("64Ki"), Ok(65_536));
        assert_eq!(parse_size("7B"), Ok(7));
        for bad in [
            "",
            "lots",
            "-1",
            "1.",
            ".5",
            "5 XB",
            "1..2",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn listen_addresses() {
        for good in ["0.0.0.0:8080", "[::]:80", "localhost:0", "127.0.0.1:65535"] {
            assert!(parse_listen(good).is_ok(), "{good}");
        }
        for bad in [
            "bad",
            "8080",
            ":8080",
            "host:",
            "host:70000",
            "::1:80",
            "a b:1",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(split_list(" a, b  c,,"), vec!["a", "b", "c"]);
    }
}
