//! Typed reading of the YAML tree: `${VAR}` substitution on scalars, the declared type wins,
//! unknown keys reported with their path (and a hint), every problem collected for one report.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use intake_core::config::{units, EnvMap};
use intake_rules::yaml::{Node, NodeKind};
use regex::Regex;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `service.downloader.max_archive_size`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pipeline configuration:\n{}", .0.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl ConfigErrors {
    /// Whether some issue is about `path`.
    pub fn mentions(&self, path: &str) -> bool {
        self.0.iter().any(|i| i.path == path)
    }
}

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

/// A map being read: keys taken are remembered, the rest are unknown.
pub struct Section<'a> {
    path: String,
    entries: Vec<(&'a str, &'a Node)>,
    taken: Vec<&'static str>,
}

/// Reads values, collecting issues.
pub struct Reader<'e> {
    pub env: &'e EnvMap,
    pub issues: Vec<ConfigIssue>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'e> Reader<'e> {
    pub fn new(env: &'e EnvMap) -> Self {
        Reader {
            env,
            issues: Vec::new(),
        }
    }

    pub fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Opens `node` as a mapping at `path`; `None` (with an issue) if it is not one.
    pub fn section<'a>(&mut self, node: Option<&'a Node>, path: &str) -> Section<'a> {
        let entries = match node.map(|n| &n.kind) {
            Some(NodeKind::Map(entries)) => entries.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            Some(NodeKind::Scalar { text, .. })
                if text.is_empty() || text == "null" || text == "~" =>
            {
                Vec::new()
            }
            None => Vec::new(),
            Some(_) => {
                self.fail(path, "expected a mapping");
                Vec::new()
            }
        };
        Section {
            path: path.to_owned(),
            entries,
            taken: Vec::new(),
        }
    }

    /// Reports the keys of `s` not taken, with a hint for close names.
    pub fn finish(&mut self, s: Section<'_>) {
        for (k, _) in &s.entries {
            if s.taken.contains(k) {
                continue;
            }
            let hint = s
                .taken
                .iter()
                .map(|t| (strsim::levenshtein(k, t), *t))
                .filter(|(d, _)| *d <= 3)
                .min()
                .map(|(_, t)| format!(" (did you mean {t}?)"))
                .unwrap_or_default();
            self.fail(&join(&s.path, k), format!("unknown key{hint}"));
        }
    }

    /// The substituted text of a scalar; `None` when absent, null or empty after substitution.
    fn scalar(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar { text, plain, .. } => {
                if *plain && matches!(text.as_str(), "null" | "~") {
                    return None;
                }
                match substitute(text, self.env) {
                    Ok(t) if t.is_empty() => None,
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.fail(path, e);
                        None
                    }
                }
            }
            _ => {
                self.fail(
                    path,
                    format!("expected a value, found {}", node.type_name()),
                );
                None
            }
        }
    }

    pub fn string(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<String> {
        let (node, path) = s.take(key)?;
        self.scalar(node, &path)
    }

    pub fn parsed<T>(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let (node, path) = s.take(key)?;
        let text = self.scalar(node, &path)?;
        let v = parse(text.trim());
        if v.is_none() {
            self.fail(&path, format!("expected {what} (got {text:?})"));
        }
        v
    }

    pub fn u64(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<u64> {
        self.parsed(s, key, "a whole number", |t| {
            t.chars()
                .all(|c| c.is_ascii_digit())
                .then(|| t.parse().ok())
                .flatten()
        })
    }

    pub fn bool(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<bool> {
        self.parsed(s, key, "true or false", |t| match t {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    pub fn duration(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<Duration> {
        self.parsed(s, key, "a duration such as 50ms, 30s, 5m, 24h, 7d", |t| {
            units::parse_duration(t).ok()
        })
    }

    pub fn size(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<u64> {
        self.parsed(s, key, "a size such as 100MiB or 1048576", parse_size)
    }

    pub fn list(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<Vec<String>> {
        let (node, path) = s.take(key)?;
        match &node.kind {
            NodeKind::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(t) = self.scalar(item, &format!("{path}[{i}]")) {
                        out.push(t);
                    }
                }
                Some(out)
            }
            NodeKind::Scalar { .. } => {
                let text = self.scalar(node, &path)?;
                Some(
                    text.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect(),
                )
            }
            NodeKind::Map(_) => {
                self.fail(&path, "expected a list");
                None
            }
        }
    }

    /// A map of strings (librdkafka settings, env, logging filters).
    pub fn string_map(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some((node, path)) = s.take(key) else {
            return out;
        };
        match &node.kind {
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    if let Some(t) = self.scalar(v, &join(&path, k)) {
                        out.insert(k.clone(), t);
                    }
                }
            }
            _ => self.fail(&path, "expected a mapping"),
        }
        out
    }
}

impl<'a> Section<'a> {
    /// Takes `key`: its node and path, when present.
    pub fn take(&mut self, key: &'static str) -> Option<(&'a Node, String)> {
        self.taken.push(key);
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, n)| (*n, join(&self.path, key)))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| *k == key)
    }
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
