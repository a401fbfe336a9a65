//! Built-in parsers: each turns a spec's files into a JSON value that rules (and declarative
//! expressions) query; `raw` hands Rust code the bytes.

use serde_json::{Map, Value};

use crate::model::{Component, ComponentError, Deps, Inputs, Kind, Outcome, RunCx};
use crate::specs::SpecFiles;

/// The built-in parser kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Raw,
    Text,
    Lines,
    Kv,
    Ini,
    Json,
    Yaml,
    Csv,
}

impl Builtin {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "raw" => Builtin::Raw,
            "text" => Builtin::Text,
            "lines" => Builtin::Lines,
            "kv" => Builtin::Kv,
            "ini" => Builtin::Ini,
            "json" => Builtin::Json,
            "yaml" => Builtin::Yaml,
            "csv" => Builtin::Csv,
            _ => return None,
        })
    }

    /// Parses one file's bytes (not for `raw`).
    pub fn parse_bytes(self, bytes: &[u8]) -> Result<Value, String> {
        let text = String::from_utf8_lossy(bytes);
        match self {
            Builtin::Raw | Builtin::Text => Ok(Value::String(text.into_owned())),
            Builtin::Lines => Ok(Value::Array(
                text.lines().map(|l| Value::String(l.to_owned())).collect(),
            )),
            Builtin::Kv => Ok(Value::Object(parse_kv(&text))),
            Builtin::Ini => Ok(Value::Object(parse_ini(&text))),
            Builtin::Json => parse_json(&text),
            Builtin::Yaml => crate::yaml::Node::parse(&text)
                .map(|n| n.to_json())
                .map_err(|e| e.to_string()),
            Builtin::Csv => parse_csv(bytes),
        }
    }
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn parse_kv(text: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            map.insert(k.trim().to_owned(), Value::String(unquote(v).to_owned()));
        }
    }
    map
}

fn parse_ini(text: &str) -> Map<String, Value> {
    let mut map = Map::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].trim().to_owned();
            map.entry(section.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            continue;
        }
        let (k, v) = match line.split_once(['=', ':']) {
            Some((k, v)) => (k.trim(), unquote(v)),
            None => (line, ""),
        };
        if let Value::Object(sec) = map
            .entry(section.clone())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            sec.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    }
    map
}

/// JSON, skipping leading lines that do not start a JSON document (as insights-core does).
/// serde_json bounds nesting at 128 levels.
fn parse_json(text: &str) -> Result<Value, String> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('{')
            || t.starts_with('[')
            || t.starts_with('"')
            || t.is_empty() && offset == 0
        {
            break;
        }
        offset += line.len();
    }
    serde_json::from_str(&text[offset..]).map_err(|e| format!("invalid JSON: {e}"))
}

fn parse_csv(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let mut row = Map::new();
        for (h, v) in headers.iter().zip(record.iter()) {
            row.insert(h.to_owned(), Value::String(v.to_owned()));
        }
        rows.push(Value::Object(row));
    }
    Ok(Value::Array(rows))
}

/// A built-in parser bound to one spec.
#[derive(Debug, Clone)]
pub struct Parser {
    pub name: String,
    pub spec: String,
    pub builtin: Builtin,
}

impl Parser {
    pub fn new(name: &str, spec: &str, builtin: Builtin) -> Self {
        Parser {
            name: name.to_owned(),
            spec: spec.to_owned(),
            builtin,
        }
    }
}

impl Component for Parser {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Parser
    }

    fn deps(&self) -> Deps {
        Deps::requires([self.spec.clone()])
    }

    fn run(&self, inputs: &Inputs<'_>, _cx: &RunCx<'_>) -> Outcome {
        let Some(spec) = inputs.get::<SpecFiles>(&self.spec) else {
            return Outcome::Skip("spec absent");
        };
        if self.builtin == Builtin::Raw {
            return if spec.glob {
                Outcome::value(
                    spec.files
                        .iter()
                        .map(|f| f.content.clone())
                        .collect::<Vec<Vec<u8>>>(),
                )
            } else {
                Outcome::value(
                    spec.files
                        .first()
                        .map(|f| f.content.clone())
                        .unwrap_or_default(),
                )
            };
        }
        if !spec.glob {
            let Some(file) = spec.files.first() else {
                return Outcome::Skip("spec absent");
            };
            return match self.builtin.parse_bytes(&file.content) {
                Ok(v) => Outcome::value(v),
                Err(e) => Outcome::Fail(ComponentError::new(format!("{}: {e}", file.path))),
            };
        }
        // A glob parser drops failing files; it is absent only when none succeeds.
        let mut values = Vec::new();
        for file in &spec.files {
            match self.builtin.parse_bytes(&file.content) {
                Ok(v) => values.push(v),
                Err(e) => {
                    tracing::debug!(parser = %self.name, path = %file.path, error = %e, "file dropped")
                }
            }
        }
        if values.is_empty() {
            Outcome::Fail(ComponentError::new("no file parsed"))
        } else {
            Outcome::value(Value::Array(values))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtins() {
        assert_eq!(
            Builtin::Kv
                .parse_bytes(b"# c\nA = \"x y\"\nB='z'\n")
                .unwrap(),
            json!({"A": "x y", "B": "z"})
        );
        assert_eq!(
            Builtin::Ini.parse_bytes(b"top=1\n[main]\nk = v\n").unwrap(),
            json!({"": {"top": "1"}, "main": {"k": "v"}})
        );
        assert_eq!(
            Builtin::Json
                .parse_bytes(b"warning: x\n{\"a\": 1}")
                .unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            Builtin::Csv.parse_bytes(b"a,b\n1,2\n").unwrap(),
            json!([{"a": "1", "b": "2"}])
        );
        assert_eq!(
            Builtin::Lines.parse_bytes(b"x\ny\n").unwrap(),
            json!(["x", "y"])
        );
        assert_eq!(
            Builtin::Text.parse_bytes(b"a\xffb").unwrap(),
            json!("a\u{fffd}b")
        );
        assert_eq!(
            Builtin::Yaml.parse_bytes(b"a: [1, x]").unwrap(),
            json!({"a": [1, "x"]})
        );
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Builtin::Json.parse_bytes(deep.as_bytes()).is_err());
    }
}
