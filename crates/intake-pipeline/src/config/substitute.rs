//! `${VAR}` substitution on the configuration's scalars (spec pipeline.md §3.1), and sizes.

use std::sync::OnceLock;

use intake_core::config::EnvMap;
use regex::Regex;

/// Substitutes `${NAME}` / `${NAME:default}` / `$${` in `text`.
#[allow(
    clippy::expect_used,
    reason = "a constant pattern; the unit tests run it"
)]
pub fn substitute(text: &str, env: &EnvMap) -> Result<String, String> {
    static NAME: OnceLock<Regex> = OnceLock::new();
    let name_re =
        NAME.get_or_init(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                out.push_str("${");
                rest = tail;
                continue;
            };
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(':') {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !name_re.is_match(name) {
                out.push_str("${");
                rest = tail;
                continue;
            }
            match env
                .get(name)
                .filter(|v| !v.is_empty())
                .map(String::as_str)
                .or(default)
            {
                Some(v) => out.push_str(v),
                None => {
                    return Err(format!(
                        "environment variable {name} is not set and has no default"
                    ))
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A size, parsed as every size in intake's configuration is ([`intake_core::config::units::parse_size`]).
pub fn parse_size(text: &str) -> Option<u64> {
    intake_core::config::units::parse_size(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_forms() {
        let env: EnvMap = [
            ("A".to_string(), "x".to_string()),
            ("E".to_string(), String::new()),
        ]
        .into();
        assert_eq!(substitute("${A}-${B:d:e}", &env).unwrap(), "x-d:e");
        assert_eq!(substitute("$${A} ^a$ $5", &env).unwrap(), "${A} ^a$ $5");
        assert_eq!(substitute("${E:fallback}", &env).unwrap(), "fallback");
        assert!(substitute("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100MiB"), Some(100 << 20));
        assert_eq!(parse_size("1.5K"), Some(1500));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("2048"), Some(2048));
        assert_eq!(parse_size("10 MB"), Some(10_000_000));
        assert_eq!(parse_size("ten"), None);
    }
}
