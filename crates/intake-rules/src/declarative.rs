//! Declarative rule files (spec pipeline.md §7.4): one YAML file is one set of specs (each with
//! its built-in parser) and rules whose `let`, `when` and `details` are jq expressions, compiled at
//! load into components of the same graph as Rust rules. Load errors cite file, line, rule, key.

use std::path::Path;
use std::sync::Arc;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::graph::{valid_key, GraphError, Registry, SetInfo};
use crate::jq::Expr;
use crate::model::{
    Component, ComponentError, Deps, Inputs, Kind, Outcome, Response, ResponseType, RunCx,
};
use crate::parsers::{Builtin, Parser};
use crate::specs::Spec;
use crate::yaml::de::{self, KeyPath, Ordered, Segment};
use crate::yaml::{Node, NodeKind};

/// A problem in a rule file.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub rule: Option<String>,
    pub key: String,
    pub message: String,
    /// What the message was made from when it was another error (the file unreadable, the text
    /// not YAML): the [`std::error::Error::source`]. Shared, so that the error stays `Clone`.
    cause: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl LoadError {
    /// A whole-file problem (line 0, no rule, no key) caused by `cause`.
    fn of_file(
        file: &str,
        message: String,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        LoadError {
            file: file.to_owned(),
            line: 0,
            rule: None,
            key: String::new(),
            message,
            cause: Some(Arc::new(cause)),
        }
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(rule) = &self.rule {
            write!(f, "rule {rule}: ")?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for LoadError {
    /// The cause itself (not the `Arc` holding it), so that callers can downcast it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Everything the message says; the cause is not compared (library errors have no equality).
impl PartialEq for LoadError {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file
            && self.line == other.line
            && self.rule == other.rule
            && self.key == other.key
            && self.message == other.message
    }
}

impl Eq for LoadError {}

/// A rule file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: Option<String>,
    set: String,
    set_version: Option<String>,
    #[serde(default)]
    specs: Ordered<SpecDoc>,
    #[serde(default)]
    rules: Vec<RuleDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecDoc {
    path: Option<Names>,
    glob: Option<String>,
    parser: String,
    max_files: Option<usize>,
    max_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    name: String,
    #[serde(default)]
    requires: Names,
    #[serde(default)]
    any_of: Vec<Names>,
    #[serde(default)]
    optional: Names,
    #[serde(default)]
    tags: Names,
    #[serde(default)]
    links: Map<String, Value>,
    #[serde(default, rename = "let")]
    lets: Ordered<String>,
    responses: Vec<ResponseDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseDoc {
    #[serde(rename = "type")]
    kind: ResponseType,
    key: String,
    when: Option<String>,
    #[serde(default)]
    details: Ordered<String>,
}

/// A list of names, or one name alone.
#[derive(Default)]
struct Names(Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element()? {
                    out.push(name);
                }
                Ok(Names(out))
            }
        }
        deserializer.deserialize_seq(V)
    }
}

/// Turns paths into errors that cite the file, the line and the rule.
struct Cx<'a> {
    file: &'a str,
    root: &'a Node,
}

impl Cx<'_> {
    /// An error about the value at `path`, on the line of its deepest node present.
    fn err(&self, path: &KeyPath, message: impl Into<String>) -> LoadError {
        let line = (0..=path.0.len())
            .rev()
            .find_map(|n| self.root.at(&KeyPath(path.0[..n].to_vec())))
            .map_or(0, |node| node.line);
        self.err_at(path, line, message)
    }

    /// Within a named rule, the path reads `rules[].…`: the name says which rule.
    fn err_at(&self, path: &KeyPath, line: usize, message: impl Into<String>) -> LoadError {
        let rule = match path.0.as_slice() {
            [Segment::Key(k), Segment::Index(i), ..] if k == "rules" => {
                let name = KeyPath(path.0[..2].to_vec()).key("name");
                match self.root.at(&name).map(|n| &n.kind) {
                    Some(NodeKind::Scalar { text, .. }) => Some((*i, text.clone())),
                    _ => None,
                }
            }
            _ => None,
        };
        let mut key = path.to_string();
        if let Some((i, _)) = &rule {
            key = key.replacen(&format!("rules[{i}]"), "rules[]", 1);
        }
        LoadError {
            file: self.file.to_owned(),
            line,
            rule: rule.map(|(_, name)| name),
            key,
            message: message.into(),
            cause: None,
        }
    }
}

/// A loaded file, ready to register.
pub struct RuleFile {
    pub set: SetInfo,
    components: Vec<Arc<dyn Component>>,
}

impl std::fmt::Debug for RuleFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleFile")
            .field("set", &self.set)
            .finish_non_exhaustive()
    }
}

impl RuleFile {
    /// Registers the set and its components.
    pub fn register(self, reg: &mut Registry) -> Result<(), GraphError> {
        reg.add_set(self.set)?;
        for c in self.components {
            reg.add_arc(c)?;
        }
        Ok(())
    }
}

/// Reads and compiles a rule file.
pub fn load_file(path: &Path) -> Result<RuleFile, LoadError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::of_file(&name, format!("cannot read: {e}"), e))?;
    load_str(&name, &text)
}

/// Compiles a rule file's text; `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<RuleFile, LoadError> {
    let root = Node::parse(text).map_err(|e| LoadError::of_file(file, e.to_string(), e))?;
    let cx = Cx { file, root: &root };
    let doc: FileDoc = de::from_node(&root, &de::Options::default()).map_err(|problems| {
        let first = problems.into_iter().next().unwrap_or_else(|| de::Problem {
            path: KeyPath::default(),
            line: 0,
            message: "unreadable".into(),
        });
        cx.err_at(&first.path, first.line, first.message)
    })?;
    let top = KeyPath::default();
    if doc.version.as_deref().is_some_and(|v| v != "1") {
        return Err(cx.err(&top.key("version"), "only file format version 1 is known"));
    }
    let set = doc.set;
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    let hash12 = hash[..12].to_owned();
    let version = doc.set_version.unwrap_or_else(|| hash12.clone());
    let mut components: Vec<Arc<dyn Component>> = Vec::new();
    let mut local_specs = Vec::new();
    for (name, s) in doc.specs.0 {
        let key = top.key("specs").key(&name);
        let spec_name = format!("{set}.specs.{name}");
        let mut spec = match (s.path, s.glob) {
            (Some(paths), None) => {
                let refs: Vec<&str> = paths.0.iter().map(String::as_str).collect();
                Spec::path(&spec_name, &refs)
            }
            (None, Some(pattern)) => Spec::glob(&spec_name, &pattern)
                .ok_or_else(|| cx.err(&key.key("glob"), "invalid glob"))?,
            _ => return Err(cx.err(&key, "exactly one of path or glob is required")),
        };
        if let Some(n) = s.max_files {
            spec = spec.max_files(n);
        }
        if let Some(n) = s.max_bytes {
            spec = spec.max_bytes(n);
        }
        let builtin = Builtin::parse(&s.parser)
            .filter(|b| *b != Builtin::Raw)
            .ok_or_else(|| {
                cx.err(
                    &key.key("parser"),
                    "expected text, lines, kv, ini, json, yaml or csv",
                )
            })?;
        let parser = Parser::new(&format!("{set}.parsers.{name}"), &spec_name, builtin);
        local_specs.push(name);
        components.push(Arc::new(spec));
        components.push(Arc::new(parser));
    }
    for (i, rule) in doc.rules.into_iter().enumerate() {
        let path = top.key("rules").index(i);
        components.push(Arc::new(compile_rule(
            &cx,
            &path,
            &set,
            &local_specs,
            rule,
        )?));
    }
    Ok(RuleFile {
        set: SetInfo {
            name: set,
            version,
            commit: hash12,
        },
        components,
    })
}

struct Resp {
    kind: ResponseType,
    key: String,
    when: Option<Expr>,
    details: Vec<(String, Expr)>,
}

/// A compiled declarative rule.
pub struct DeclRule {
    name: String,
    deps: Deps,
    /// (input field, component) per dependency.
    fields: Vec<(String, String)>,
    tags: Vec<String>,
    links: Map<String, Value>,
    lets: Vec<(String, Expr)>,
    responses: Vec<Resp>,
}

fn compile_rule(
    cx: &Cx<'_>,
    path: &KeyPath,
    set: &str,
    local_specs: &[String],
    rule: RuleDoc,
) -> Result<DeclRule, LoadError> {
    let resolve = |dep: &str| -> String {
        if dep.contains('.') {
            dep.to_owned()
        } else if local_specs.iter().any(|s| s == dep) {
            format!("{set}.parsers.{dep}")
        } else {
            format!("{set}.{dep}")
        }
    };
    let mut deps = Deps::default();
    let mut input_fields: Vec<(String, String)> = Vec::new();
    // Each dependency is one field of the input the expressions see, named by its last segment.
    let mut add_field = |key: &str, dep: &str| -> Result<String, LoadError> {
        let global = resolve(dep);
        let field = dep.rsplit('.').next().unwrap_or(dep).to_owned();
        if input_fields
            .iter()
            .any(|(f, g)| *f == field && *g != global)
        {
            return Err(cx.err(
                &path.key(key),
                format!("two dependencies are both named {field:?} in the input"),
            ));
        }
        input_fields.push((field, global.clone()));
        Ok(global)
    };
    for d in &rule.requires.0 {
        deps.requires.push(add_field("requires", d)?);
    }
    for g in &rule.any_of {
        let group =
            g.0.iter()
                .map(|d| add_field("any_of", d))
                .collect::<Result<_, _>>()?;
        deps.any_of.push(group);
    }
    for d in &rule.optional.0 {
        deps.optional.push(add_field("optional", d)?);
    }
    let mut vars: Vec<String> = Vec::new();
    let mut lets = Vec::new();
    for (var, code) in rule.lets.0 {
        let compiled =
            Expr::compile(&code, &vars).map_err(|e| cx.err(&path.key("let").key(&var), e))?;
        vars.push(var.clone());
        lets.push((var, compiled));
    }
    let mut responses = Vec::new();
    for (i, r) in rule.responses.into_iter().enumerate() {
        let at = path.key("responses").index(i);
        if !valid_key(&r.key) {
            return Err(cx.err(&at.key("key"), "keys must match ^[A-Z0-9]+(_[A-Z0-9]+)+$"));
        }
        let when = r
            .when
            .map(|w| Expr::compile(&w, &vars).map_err(|e| cx.err(&at.key("when"), e)))
            .transpose()?;
        let mut details = Vec::new();
        for (field, code) in r.details.0 {
            let key = at.key("details").key(&field);
            if field == "type" || field == r.kind.key_field() {
                return Err(cx.err(&key, "details may not set type or the key field"));
            }
            let compiled = Expr::compile(&code, &vars).map_err(|e| cx.err(&key, e))?;
            details.push((field, compiled));
        }
        responses.push(Resp {
            kind: r.kind,
            key: r.key,
            when,
            details,
        });
    }
    Ok(DeclRule {
        name: format!("{set}.{}.report", rule.name),
        deps,
        fields: input_fields,
        tags: rule.tags.0,
        links: rule.links,
        lets,
        responses,
    })
}

impl DeclRule {
    fn evaluate(
        &self,
        inputs: &Inputs<'_>,
        cx: &RunCx<'_>,
    ) -> Result<Option<Response>, ComponentError> {
        let mut input = Map::new();
        for (field, global) in &self.fields {
            input.insert(
                field.clone(),
                inputs.get::<Value>(global).cloned().unwrap_or(Value::Null),
            );
        }
        let input = Value::Object(input);
        let deadline = || {
            if std::time::Instant::now() >= cx.deadline {
                Err(ComponentError::new("archive deadline passed"))
            } else {
                Ok(())
            }
        };
        let mut vals = Vec::new();
        for (var, expr) in &self.lets {
            deadline()?;
            let v = expr
                .first(&input, &vals)
                .map_err(|e| ComponentError::new(format!("let {var}: {e}")))?;
            vals.push(v.unwrap_or(Value::Null));
        }
        for r in &self.responses {
            deadline()?;
            let fire = match &r.when {
                None => true,
                Some(w) => match w.first(&input, &vals).map_err(ComponentError::new)? {
                    Some(Value::Bool(b)) => b,
                    other => {
                        return Err(ComponentError::new(format!(
                            "`when` of {} yielded {other:?}, not a boolean",
                            r.key
                        )))
                    }
                },
            };
            if !fire {
                continue;
            }
            let mut details = Map::new();
            for (field, expr) in &r.details {
                deadline()?;
                let v = expr
                    .first(&input, &vals)
                    .map_err(|e| ComponentError::new(format!("details.{field}: {e}")))?;
                details.insert(field.clone(), v.unwrap_or(Value::Null));
            }
            return Ok(Some(Response::Result {
                kind: r.kind,
                key: r.key.clone(),
                details,
            }));
        }
        Ok(None)
    }
}

impl Component for DeclRule {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> Kind {
        Kind::Rule
    }
    fn deps(&self) -> Deps {
        self.deps.clone()
    }
    fn tags(&self) -> Vec<String> {
        self.tags.clone()
    }
    fn links(&self) -> Map<String, Value> {
        self.links.clone()
    }
    fn run(&self, inputs: &Inputs<'_>, cx: &RunCx<'_>) -> Outcome {
        match self.evaluate(inputs, cx) {
            Ok(v) => Outcome::value(v),
            Err(e) => Outcome::Fail(e),
        }
    }
}
