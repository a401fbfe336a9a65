//! A YAML document as a tree that keeps what typed configuration needs and serde loses: each
//! scalar's source text and whether it was quoted, each node's line, and key order. Also the
//! JSON-compatible conversion behind the `yaml` parser, with bounds on aliases and nodes.

pub mod de;

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// Most alias expansions in one document (billion-laughs guard).
pub const MAX_ALIASES: usize = 10_000;
/// Most nodes in one document, aliases expanded.
pub const MAX_NODES: usize = 1_000_000;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 128;

/// One node; `line` is 1-based.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `text` is the scalar as written (after YAML unescaping); `plain` when it was unquoted.
    Scalar {
        text: String,
        plain: bool,
        tag: Option<String>,
    },
    Seq(Vec<Node>),
    /// Keys in source order; a key is the text of a scalar key.
    Map(Vec<(String, Node)>),
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: mapping keys must be scalars")]
    ComplexKey { line: usize },
    #[error("line {line}: duplicate key {key:?}")]
    DuplicateKey { line: usize, key: String },
    #[error("more than {MAX_ALIASES} alias expansions")]
    TooManyAliases,
    #[error("more than {MAX_NODES} nodes")]
    TooManyNodes,
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the document is empty")]
    Empty,
}

impl Node {
    /// Parses the first document of `text`.
    pub fn parse(text: &str) -> Result<Node, YamlError> {
        let mut builder = Builder {
            parser: Parser::new_from_str(text),
            anchors: HashMap::new(),
            aliases: 0,
            nodes: 0,
        };
        builder.document()
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true, .. } if is_null_text(text))
    }

    /// A short description of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The node as JSON by the YAML core schema (plain `true`, `null`, numbers resolved; quoted
    /// scalars stay strings).
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar { text, plain, tag } => scalar_json(text, *plain, tag.as_deref()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), v.to_json());
                }
                Value::Object(map)
            }
        }
    }
}

fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn scalar_json(text: &str, plain: bool, tag: Option<&str>) -> Value {
    if let Some(tag) = tag {
        if tag.ends_with("str") {
            return Value::String(text.to_owned());
        }
    }
    if !plain {
        return Value::String(text.to_owned());
    }
    if is_null_text(text) {
        return Value::Null;
    }
    match text {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')
    {
        if let Some(n) = text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(Number::from_f64)
        {
            return Value::Number(n);
        }
    }
    Value::String(text.to_owned())
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Node>,
    aliases: usize,
    nodes: usize,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, usize), YamlError> {
        self.parser
            .next_token()
            .map(|(ev, mark)| (ev, mark.line()))
            .map_err(|e| YamlError::Syntax {
                line: e.marker().line(),
                message: e.info().to_owned(),
            })
    }

    fn document(&mut self) -> Result<Node, YamlError> {
        loop {
            let (ev, line) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentStart | Event::Nothing => continue,
                Event::StreamEnd | Event::DocumentEnd => return Err(YamlError::Empty),
                other => return self.node(other, line, 0),
            }
        }
    }

    fn count(&mut self, n: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError::TooManyNodes);
        }
        Ok(())
    }

    fn node(&mut self, ev: Event, line: usize, depth: usize) -> Result<Node, YamlError> {
        if depth > MAX_DEPTH {
            return Err(YamlError::TooDeep);
        }
        self.count(1)?;
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain;
                (
                    Node {
                        line,
                        kind: NodeKind::Scalar {
                            text,
                            plain,
                            tag: tag.map(tag_text),
                        },
                    },
                    anchor,
                )
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, l) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(ev, l, depth + 1)?);
                }
                (
                    Node {
                        line,
                        kind: NodeKind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(String, Node)> = Vec::new();
                loop {
                    let (ev, l) = self.next()?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let key = match self.node(ev, l, depth + 1)?.kind {
                        NodeKind::Scalar { text, .. } => text,
                        _ => return Err(YamlError::ComplexKey { line: l }),
                    };
                    let (ev, vl) = self.next()?;
                    let value = self.node(ev, vl, depth + 1)?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(YamlError::DuplicateKey { line: l, key });
                    }
                    entries.push((key, value));
                }
                (
                    Node {
                        line,
                        kind: NodeKind::Map(entries),
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                self.aliases += 1;
                if self.aliases > MAX_ALIASES {
                    return Err(YamlError::TooManyAliases);
                }
                let target = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| YamlError::Syntax {
                        line,
                        message: "unknown alias".into(),
                    })?;
                self.count(size_of_tree(&target))?;
                return Ok(target);
            }
            _ => {
                return Err(YamlError::Syntax {
                    line,
                    message: "unexpected event".into(),
                })
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn tag_text(tag: Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

fn size_of_tree(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(size_of_tree).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(_, v)| 1 + size_of_tree(v))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_keep_their_text() {
        let n = Node::parse("a: 000123\nb: '7'\nc: [x, 2]\n").unwrap();
        let NodeKind::Map(entries) = &n.kind else {
            panic!()
        };
        assert_eq!(
            entries[0].1.kind,
            NodeKind::Scalar {
                text: "000123".into(),
                plain: true,
                tag: None
            }
        );
        assert_eq!(entries[1].1.line, 2);
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": 123, "b": "7", "c": ["x", 2]})
        );
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for n in names {
            doc.push_str(&format!("{n}: &{n} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = n;
        }
        assert!(matches!(
            Node::parse(&doc),
            Err(YamlError::TooManyNodes) | Err(YamlError::TooManyAliases)
        ));
    }
}
