//! serde over a [`Node`] tree, for configuration: every problem carries the path and line of the
//! value it is about, a scalar reads as the type the target declares (`000123` stays a string),
//! `${VAR}` substitution applies where the caller asks for it, and one read reports every problem.
//!
//! Reporting every problem: a value that fails to read is recorded, then the document is read
//! again as if that value were absent (its default applies, a list goes without the item). Each
//! round drops one more value, so the loop ends; configuration files are small.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected, Visitor};
use serde_json::Value;

use super::{Node, NodeKind};

/// Most rounds of one read (each drops one failing value).
const MAX_ROUNDS: usize = 1_000;

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value sits in a document: `service.watchers[0].kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    /// The path of `key` below this one.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Segment::Key(key.to_owned()));
        KeyPath(v)
    }

    /// The path of item `index` below this one.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Segment::Index(index));
        KeyPath(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Node {
    /// The value of `key` when this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at `path` below this one.
    pub fn at(&self, path: &KeyPath) -> Option<&Node> {
        path.0
            .iter()
            .try_fold(self, |node, s| match (s, &node.kind) {
                (Segment::Key(k), _) => node.get(k),
                (Segment::Index(i), NodeKind::Seq(items)) => items.get(*i),
                _ => None,
            })
    }
}

/// One problem in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: KeyPath,
    /// 1-based line of the value, or of the mapping missing a key.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Turns a scalar's text into the text a typed value reads (`${VAR}` substitution).
pub type Substitute<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// How a document reads.
#[derive(Default)]
pub struct Options<'a> {
    /// Applied to every scalar read as a typed value; free-form values (read as JSON) keep
    /// their source text.
    pub substitute: Option<Substitute<'a>>,
    /// A key or list item whose value is null, or empty after substitution, counts as absent.
    pub empty_is_absent: bool,
    /// Values read as absent from the start: problems the caller reported itself.
    pub skip: Vec<KeyPath>,
}

/// Reads `T` from `node`; `Err` holds every problem, in the order found.
pub fn from_node<T: DeserializeOwned>(
    node: &Node,
    options: &Options<'_>,
) -> Result<T, Vec<Problem>> {
    match read_node(node, options) {
        (Some(value), problems) if problems.is_empty() => Ok(value),
        (_, problems) => Err(problems),
    }
}

/// Reads `T` from `node` with every failing value read as absent, and the problems found: a
/// caller can go on checking what did read. `None` when the document as a whole did not.
pub fn read_node<T: DeserializeOwned>(
    node: &Node,
    options: &Options<'_>,
) -> (Option<T>, Vec<Problem>) {
    let mut skip = options.skip.clone();
    let mut problems = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let read = Read {
            options,
            skip: &skip,
        };
        let de = De {
            node,
            path: KeyPath::default(),
            read: &read,
        };
        match T::deserialize(de) {
            Ok(value) => return (Some(value), problems),
            Err(e) => {
                let (problem, drop) = e.into_problem(node);
                // A required value that failed to read is reported once, not again as missing.
                if !skip.contains(&problem.path) {
                    problems.push(problem);
                }
                if drop.0.is_empty() || skip.contains(&drop) {
                    return (None, problems);
                }
                skip.push(drop);
            }
        }
    }
    (None, problems)
}

/// Why a value did not read; located by the innermost node it passes through.
#[derive(Debug)]
pub struct Error {
    message: String,
    /// A key of the mapping the error is located at: the unknown or missing one.
    key: Option<(String, KeyKind)>,
    at: Option<(KeyPath, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Unknown,
    Missing,
}

impl Error {
    fn locate(mut self, path: &KeyPath, node: &Node) -> Self {
        if self.at.is_none() {
            self.at = Some((path.clone(), node.line));
        }
        self
    }

    /// The problem, and the value to read as absent next round.
    fn into_problem(self, root: &Node) -> (Problem, KeyPath) {
        let (at, line) = self.at.unwrap_or_default();
        let (path, drop, line) = match self.key {
            // The unknown key itself is dropped; its value's line is the one to show.
            Some((key, KeyKind::Unknown)) => {
                let path = at.key(&key);
                let line = root.at(&path).map_or(line, |n| n.line);
                (path.clone(), path, line)
            }
            // A missing key: the mapping holding it cannot be built, so it goes.
            Some((key, KeyKind::Missing)) => (at.key(&key), at, line),
            None => (at.clone(), at, line),
        };
        let problem = Problem {
            path,
            line,
            message: self.message,
        };
        (problem, drop)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            key: None,
            at: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = expected
            .iter()
            .map(|t| (strsim::damerau_levenshtein(field, t), *t))
            .filter(|(d, _)| *d <= 3)
            .min()
            .map(|(_, t)| format!(" (did you mean {t}?)"))
            .unwrap_or_default();
        Error {
            message: format!("unknown key{hint}"),
            key: Some((field.to_owned(), KeyKind::Unknown)),
            at: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Error {
            message: "required".into(),
            key: Some((field.to_owned(), KeyKind::Missing)),
            at: None,
        }
    }
}

struct Read<'a> {
    options: &'a Options<'a>,
    skip: &'a [KeyPath],
}

impl Read<'_> {
    /// Whether the value at `path` reads as absent.
    fn absent(&self, path: &KeyPath, node: &Node) -> bool {
        if self.skip.contains(path) {
            return true;
        }
        self.options.empty_is_absent
            && (node.is_null()
                || matches!(&node.kind, NodeKind::Scalar { text, .. }
                    if self.substitute(text).is_ok_and(|t| t.is_empty())))
    }

    fn substitute<'t>(&self, text: &'t str) -> Result<Cow<'t, str>, Error> {
        match self.options.substitute {
            Some(f) => f(text).map(Cow::Owned).map_err(de::Error::custom),
            None => Ok(Cow::Borrowed(text)),
        }
    }
}

/// The deserializer of one node.
struct De<'a> {
    node: &'a Node,
    path: KeyPath,
    read: &'a Read<'a>,
}

impl De<'_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match &self.node.kind {
            NodeKind::Scalar { text, .. } => Unexpected::Str(text),
            NodeKind::Seq(_) => Unexpected::Seq,
            NodeKind::Map(_) => Unexpected::Map,
        }
    }

    /// The scalar's text for a typed value, substituted.
    fn text(&self, exp: &dyn de::Expected) -> Result<Cow<'_, str>, Error> {
        match &self.node.kind {
            NodeKind::Scalar { text, .. } => self.read.substitute(text),
            _ => Err(de::Error::invalid_type(self.unexpected(), exp)),
        }
    }

    fn integer<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = self.text(&visitor)?;
        let t = text.trim();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let r = if digits(t) {
            t.parse().map(|n| visitor.visit_u64(n))
        } else if t.strip_prefix('-').is_some_and(digits) {
            t.parse().map(|n| visitor.visit_i64(n))
        } else {
            return Err(de::Error::invalid_type(Unexpected::Str(t), &visitor));
        };
        r.unwrap_or_else(|_| {
            Err(de::Error::invalid_value(
                Unexpected::Str(t),
                &"a whole number in range",
            ))
        })
    }

    fn float<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = self.text(&visitor)?;
        match text.trim().parse() {
            Ok(f) => visitor.visit_f64(f),
            Err(_) => Err(de::Error::invalid_type(Unexpected::Str(&text), &visitor)),
        }
    }

    fn with_location<T>(self, f: impl FnOnce(&Self) -> Result<T, Error>) -> Result<T, Error> {
        f(&self).map_err(|e| e.locate(&self.path, self.node))
    }
}

/// Text in any form reads as a string.
macro_rules! strings {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_str(visitor)
        }
    )*};
}

macro_rules! integers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let (path, node) = (self.path.clone(), self.node);
            self.integer(visitor).map_err(|e| e.locate(&path, node))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = Error;

    /// A free-form value: JSON by the YAML core schema, from the source text.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with_location(|d| match &d.node.kind {
            NodeKind::Scalar { .. } => match d.node.to_json() {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(b),
                Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => visitor.visit_u64(u),
                    (_, Some(i)) => visitor.visit_i64(i),
                    _ => visitor.visit_f64(n.as_f64().unwrap_or_default()),
                },
                Value::String(s) => visitor.visit_string(s),
                Value::Array(_) | Value::Object(_) => {
                    Err(de::Error::custom("a scalar read as a collection"))
                }
            },
            NodeKind::Seq(items) => visitor.visit_seq(Items::new(items, d)),
            NodeKind::Map(entries) => visitor.visit_map(Entries::new(entries, d)),
        })
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with_location(|d| match d.text(&visitor)?.trim() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            other => Err(de::Error::invalid_type(Unexpected::Str(other), &visitor)),
        })
    }

    integers!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (path, node) = (self.path.clone(), self.node);
        self.float(visitor).map_err(|e| e.locate(&path, node))
    }

    strings!(deserialize_char deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_identifier);

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with_location(|d| {
            let text = d.text(&visitor)?;
            visitor.visit_str(&text)
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with_location(|d| {
            if d.node.is_null() {
                visitor.visit_unit()
            } else {
                Err(de::Error::invalid_type(d.unexpected(), &visitor))
            }
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// A list; a scalar goes to the visitor as text, for types that also take one.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with_location(|d| match &d.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(Items::new(items, d)),
            NodeKind::Scalar { text, .. } => visitor.visit_str(&d.read.substitute(text)?),
            NodeKind::Map(_) => Err(de::Error::invalid_type(Unexpected::Map, &visitor)),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    /// A mapping; a null reads as an empty one.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with_location(|d| match &d.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(Entries::new(entries, d)),
            _ if d.node.is_null() => visitor.visit_map(Entries::new(&[], d)),
            _ => Err(de::Error::invalid_type(d.unexpected(), &visitor)),
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    /// Unit variants, named by a scalar.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.with_location(|d| {
            let text = d.text(&visitor)?;
            let de: StrDeserializer<'_, Error> = text.trim().into_deserializer();
            visitor.visit_enum(de)
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// A list's items, the absent ones left out.
struct Items<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'a KeyPath,
    read: &'a Read<'a>,
}

impl<'a> Items<'a> {
    fn new(items: &'a [Node], parent: &'a De<'a>) -> Self {
        Items {
            items: items.iter().enumerate(),
            path: &parent.path,
            read: parent.read,
        }
    }
}

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        for (i, node) in self.items.by_ref() {
            let path = self.path.index(i);
            if self.read.absent(&path, node) {
                continue;
            }
            let de = De {
                node,
                path,
                read: self.read,
            };
            return seed.deserialize(de).map(Some);
        }
        Ok(None)
    }
}

/// A mapping's entries, the absent ones left out.
struct Entries<'a> {
    entries: std::slice::Iter<'a, (String, Node)>,
    value: Option<(&'a Node, KeyPath)>,
    path: &'a KeyPath,
    read: &'a Read<'a>,
}

impl<'a> Entries<'a> {
    fn new(entries: &'a [(String, Node)], parent: &'a De<'a>) -> Self {
        Entries {
            entries: entries.iter(),
            value: None,
            path: &parent.path,
            read: parent.read,
        }
    }
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (key, node) in self.entries.by_ref() {
            let path = self.path.key(key);
            if self.read.absent(&path, node) {
                continue;
            }
            self.value = Some((node, path));
            let de: StrDeserializer<'_, Error> = key.as_str().into_deserializer();
            return seed.deserialize(de).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (node, path) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value read before its key"))?;
        seed.deserialize(De {
            node,
            path,
            read: self.read,
        })
    }
}

/// A mapping read in document order, each value typed: `let`, `details`, `specs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for Ordered<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests;
