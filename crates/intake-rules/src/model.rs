//! The component model (mirrors insights-core): specs, parsers, combiners and rules, their
//! dependencies, what one run yields, and the responses rules emit.

use crate::source::FileSource;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};

/// A component's output, shared with its dependents.
pub type Output = Arc<dyn Any + Send + Sync>;

/// What kind of component a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Spec,
    Parser,
    Combiner,
    Rule,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Spec => "spec",
            Kind::Parser => "parser",
            Kind::Combiner => "combiner",
            Kind::Rule => "rule",
        }
    }
}

/// Dependencies: every `requires`, at least one of each `any_of` group, and any `optional`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deps {
    pub requires: Vec<String>,
    pub any_of: Vec<Vec<String>>,
    pub optional: Vec<String>,
}

impl Deps {
    pub fn requires<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Deps {
            requires: names.into_iter().map(Into::into).collect(),
            ..Deps::default()
        }
    }

    pub fn optional<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.optional.extend(names.into_iter().map(Into::into));
        self
    }

    pub fn any_of<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.any_of
            .push(names.into_iter().map(Into::into).collect());
        self
    }

    /// Every name this depends on.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.requires
            .iter()
            .chain(self.any_of.iter().flatten())
            .chain(self.optional.iter())
    }
}

/// Why a component failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ComponentError(pub String);

impl ComponentError {
    pub fn new(message: impl Into<String>) -> Self {
        ComponentError(message.into())
    }
}

/// What one component yields for one archive. All but `Value` make it absent for dependents.
pub enum Outcome {
    Value(Output),
    /// Benign: the input is not there or does not apply.
    Skip(&'static str),
    Fail(ComponentError),
}

impl Outcome {
    pub fn value<T: Any + Send + Sync>(value: T) -> Self {
        Outcome::Value(Arc::new(value))
    }
}

/// Per-archive context handed to every component.
pub struct RunCx<'a> {
    /// The archive's files, relative to its root (an extracted tree, or files in memory).
    pub source: FileSource<'a>,
    /// Every regular file of `source`, sorted, `/`-separated.
    pub files: &'a [String],
    pub deadline: Instant,
}

/// The outputs of a component's present dependencies.
pub struct Inputs<'a> {
    pub(crate) values: &'a HashMap<String, Output>,
}

impl Inputs<'_> {
    /// The value of dependency `name`, if present and of type `T`.
    pub fn get<T: Any + Send + Sync>(&self, name: &str) -> Option<&T> {
        self.values.get(name).and_then(|v| v.downcast_ref::<T>())
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

/// One component of the graph.
pub trait Component: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn kind(&self) -> Kind;
    fn deps(&self) -> Deps {
        Deps::default()
    }
    /// Paths and globs (relative to the archive root) the component reads; specs only.
    fn wanted(&self) -> Vec<String> {
        Vec::new()
    }
    /// Tags and links of a rule's results.
    fn tags(&self) -> Vec<String> {
        Vec::new()
    }
    fn links(&self) -> Map<String, Value> {
        Map::new()
    }
    fn run(&self, inputs: &Inputs<'_>, cx: &RunCx<'_>) -> Outcome;
}

/// A rule's response type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    /// `rule` in the report: a problem found.
    #[serde(alias = "rule")]
    Fail,
    Pass,
    Info,
    Fingerprint,
}

impl ResponseType {
    /// The entry's `type` value.
    pub fn type_name(self) -> &'static str {
        match self {
            ResponseType::Fail => "rule",
            ResponseType::Pass => "pass",
            ResponseType::Info => "info",
            ResponseType::Fingerprint => "fingerprint",
        }
    }

    /// The details field holding the key.
    pub fn key_field(self) -> &'static str {
        match self {
            ResponseType::Fail => "error_key",
            ResponseType::Pass => "pass_key",
            ResponseType::Info => "info_key",
            ResponseType::Fingerprint => "fingerprint_key",
        }
    }

    /// The report bucket.
    pub fn bucket(self) -> &'static str {
        match self {
            ResponseType::Fail => "reports",
            ResponseType::Pass => "pass",
            ResponseType::Info => "info",
            ResponseType::Fingerprint => "fingerprints",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "fail" | "rule" => ResponseType::Fail,
            "pass" => ResponseType::Pass,
            "info" => ResponseType::Info,
            "fingerprint" => ResponseType::Fingerprint,
            _ => return None,
        })
    }
}

/// What a rule emits (its value is `Option<Response>`).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Result {
        kind: ResponseType,
        key: String,
        details: Map<String, Value>,
    },
    /// Merged into `system.metadata`.
    Metadata(Map<String, Value>),
}

impl Response {
    pub fn fail(key: &str, details: Map<String, Value>) -> Self {
        Response::Result {
            kind: ResponseType::Fail,
            key: key.to_owned(),
            details,
        }
    }
    pub fn pass(key: &str, details: Map<String, Value>) -> Self {
        Response::Result {
            kind: ResponseType::Pass,
            key: key.to_owned(),
            details,
        }
    }
    pub fn info(key: &str, details: Map<String, Value>) -> Self {
        Response::Result {
            kind: ResponseType::Info,
            key: key.to_owned(),
            details,
        }
    }
    pub fn fingerprint(key: &str, details: Map<String, Value>) -> Self {
        Response::Result {
            kind: ResponseType::Fingerprint,
            key: key.to_owned(),
            details,
        }
    }
    pub fn metadata(map: Map<String, Value>) -> Self {
        Response::Metadata(map)
    }
}

/// A rule's value.
pub type RuleValue = Option<Response>;
