//! Declarative rule files (spec pipeline.md §7.4): one YAML file is one set of specs (each with
//! its built-in parser) and rules whose `let`, `when` and `details` are jq expressions, compiled at
//! load into components of the same graph as Rust rules. Load errors cite file, line, rule, key.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::graph::{valid_key, GraphError, Registry, SetInfo};
use crate::jq::Expr;
use crate::model::{
    Component, ComponentError, Deps, Inputs, Kind, Outcome, Response, ResponseType, RunCx,
};
use crate::parsers::{Builtin, Parser};
use crate::specs::Spec;
use crate::yaml::{Node, NodeKind};

/// A problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {}{key}: {message}", rule.as_ref().map(|r| format!("rule {r}: ")).unwrap_or_default())]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub rule: Option<String>,
    pub key: String,
    pub message: String,
}

struct Cx<'a> {
    file: &'a str,
    rule: Option<String>,
}

impl Cx<'_> {
    fn err(&self, node: &Node, key: &str, message: impl Into<String>) -> LoadError {
        LoadError {
            file: self.file.to_owned(),
            line: node.line,
            rule: self.rule.clone(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn map<'n>(
        &self,
        node: &'n Node,
        key: &str,
        allowed: &[&str],
    ) -> Result<&'n [(String, Node)], LoadError> {
        let NodeKind::Map(entries) = &node.kind else {
            return Err(self.err(
                node,
                key,
                format!("expected a mapping, found {}", node.type_name()),
            ));
        };
        for (k, v) in entries {
            if !allowed.is_empty() && !allowed.contains(&k.as_str()) {
                return Err(self.err(
                    v,
                    &join(key, k),
                    format!("unknown key (expected one of {})", allowed.join(", ")),
                ));
            }
        }
        Ok(entries)
    }

    fn string(&self, node: &Node, key: &str) -> Result<String, LoadError> {
        match &node.kind {
            NodeKind::Scalar { text, .. } => Ok(text.clone()),
            _ => Err(self.err(
                node,
                key,
                format!("expected a string, found {}", node.type_name()),
            )),
        }
    }

    fn strings(&self, node: &Node, key: &str) -> Result<Vec<String>, LoadError> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().map(|i| self.string(i, key)).collect(),
            NodeKind::Scalar { text, .. } => Ok(vec![text.clone()]),
            _ => Err(self.err(node, key, "expected a list of strings")),
        }
    }

    fn usize(&self, node: &Node, key: &str) -> Result<usize, LoadError> {
        self.string(node, key)?
            .parse()
            .map_err(|_| self.err(node, key, "expected a whole number"))
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}.{b}")
    }
}

fn get<'n>(entries: &'n [(String, Node)], key: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
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
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        file: name.clone(),
        line: 0,
        rule: None,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    load_str(&name, &text)
}

/// Compiles a rule file's text; `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<RuleFile, LoadError> {
    let mut cx = Cx { file, rule: None };
    let root = Node::parse(text).map_err(|e| LoadError {
        file: file.to_owned(),
        line: 0,
        rule: None,
        key: String::new(),
        message: e.to_string(),
    })?;
    let top = cx.map(
        &root,
        "",
        &["version", "set", "set_version", "specs", "rules"],
    )?;
    if let Some(v) = get(top, "version") {
        if cx.string(v, "version")? != "1" {
            return Err(cx.err(v, "version", "only file format version 1 is known"));
        }
    }
    let set_node = get(top, "set").ok_or_else(|| cx.err(&root, "set", "required"))?;
    let set = cx.string(set_node, "set")?;
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    let hash12 = hash[..12].to_owned();
    let version = match get(top, "set_version") {
        Some(v) => cx.string(v, "set_version")?,
        None => hash12.clone(),
    };
    let mut components: Vec<Arc<dyn Component>> = Vec::new();
    let mut local_specs = Vec::new();
    if let Some(specs) = get(top, "specs") {
        for (name, node) in cx.map(specs, "specs", &[])? {
            let key = format!("specs.{name}");
            let fields = cx.map(
                node,
                &key,
                &["path", "glob", "parser", "max_files", "max_bytes"],
            )?;
            let spec_name = format!("{set}.specs.{name}");
            let mut spec = match (get(fields, "path"), get(fields, "glob")) {
                (Some(p), None) => {
                    let paths = cx.strings(p, &join(&key, "path"))?;
                    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
                    Spec::path(&spec_name, &refs)
                }
                (None, Some(g)) => {
                    let pattern = cx.string(g, &join(&key, "glob"))?;
                    Spec::glob(&spec_name, &pattern)
                        .ok_or_else(|| cx.err(g, &join(&key, "glob"), "invalid glob"))?
                }
                _ => return Err(cx.err(node, &key, "exactly one of path or glob is required")),
            };
            if let Some(n) = get(fields, "max_files") {
                spec = spec.max_files(cx.usize(n, &join(&key, "max_files"))?);
            }
            if let Some(n) = get(fields, "max_bytes") {
                spec = spec.max_bytes(cx.usize(n, &join(&key, "max_bytes"))? as u64);
            }
            let parser_node = get(fields, "parser")
                .ok_or_else(|| cx.err(node, &join(&key, "parser"), "required"))?;
            let parser_name = cx.string(parser_node, &join(&key, "parser"))?;
            let builtin = Builtin::parse(&parser_name)
                .filter(|b| *b != Builtin::Raw)
                .ok_or_else(|| {
                    cx.err(
                        parser_node,
                        &join(&key, "parser"),
                        "expected text, lines, kv, ini, json, yaml or csv",
                    )
                })?;
            let parser = Parser::new(&format!("{set}.parsers.{name}"), &spec_name, builtin);
            local_specs.push(name.clone());
            components.push(Arc::new(spec));
            components.push(Arc::new(parser));
        }
    }
    if let Some(rules) = get(top, "rules") {
        let NodeKind::Seq(items) = &rules.kind else {
            return Err(cx.err(rules, "rules", "expected a list"));
        };
        for item in items {
            cx.rule = None;
            let rule = compile_rule(&mut cx, &set, &local_specs, item)?;
            components.push(Arc::new(rule));
        }
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
    cx: &mut Cx<'_>,
    set: &str,
    local_specs: &[String],
    item: &Node,
) -> Result<DeclRule, LoadError> {
    // Name the rule before checking its keys, so every error cites it.
    if let NodeKind::Map(entries) = &item.kind {
        if let Some(NodeKind::Scalar { text, .. }) = get(entries, "name").map(|n| &n.kind) {
            cx.rule = Some(text.clone());
        }
    }
    let fields = cx.map(
        item,
        "rules[]",
        &[
            "name",
            "requires",
            "any_of",
            "optional",
            "tags",
            "links",
            "let",
            "responses",
        ],
    )?;
    let name_node = get(fields, "name").ok_or_else(|| cx.err(item, "name", "required"))?;
    let short = cx.string(name_node, "name")?;
    cx.rule = Some(short.clone());
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
    let mut add_field =
        |cx: &Cx<'_>, node: &Node, key: &str, dep: &str| -> Result<String, LoadError> {
            let global = resolve(dep);
            let field = dep.rsplit('.').next().unwrap_or(dep).to_owned();
            if input_fields
                .iter()
                .any(|(f, g)| *f == field && *g != global)
            {
                return Err(cx.err(
                    node,
                    key,
                    format!("two dependencies are both named {field:?} in the input"),
                ));
            }
            input_fields.push((field, global.clone()));
            Ok(global)
        };
    if let Some(n) = get(fields, "requires") {
        for d in cx.strings(n, "requires")? {
            deps.requires.push(add_field(cx, n, "requires", &d)?);
        }
    }
    if let Some(n) = get(fields, "any_of") {
        let NodeKind::Seq(groups) = &n.kind else {
            return Err(cx.err(n, "any_of", "expected a list of lists"));
        };
        for g in groups {
            let mut group = Vec::new();
            for d in cx.strings(g, "any_of")? {
                group.push(add_field(cx, g, "any_of", &d)?);
            }
            deps.any_of.push(group);
        }
    }
    if let Some(n) = get(fields, "optional") {
        for d in cx.strings(n, "optional")? {
            deps.optional.push(add_field(cx, n, "optional", &d)?);
        }
    }
    let tags = match get(fields, "tags") {
        Some(n) => cx.strings(n, "tags")?,
        None => Vec::new(),
    };
    let links = match get(fields, "links") {
        Some(n) => match n.to_json() {
            Value::Object(m) => m,
            _ => return Err(cx.err(n, "links", "expected a mapping of name to URLs")),
        },
        None => Map::new(),
    };
    let mut vars: Vec<String> = Vec::new();
    let mut lets = Vec::new();
    if let Some(n) = get(fields, "let") {
        for (var, expr) in cx.map(n, "let", &[])? {
            let key = format!("let.{var}");
            let code = cx.string(expr, &key)?;
            let compiled = Expr::compile(&code, &vars).map_err(|e| cx.err(expr, &key, e))?;
            vars.push(var.clone());
            lets.push((var.clone(), compiled));
        }
    }
    let mut responses = Vec::new();
    let resp_node =
        get(fields, "responses").ok_or_else(|| cx.err(item, "responses", "required"))?;
    let NodeKind::Seq(items) = &resp_node.kind else {
        return Err(cx.err(resp_node, "responses", "expected a list"));
    };
    for (i, r) in items.iter().enumerate() {
        let key = format!("responses[{i}]");
        let rf = cx.map(r, &key, &["type", "when", "key", "details"])?;
        let type_node =
            get(rf, "type").ok_or_else(|| cx.err(r, &join(&key, "type"), "required"))?;
        let kind =
            ResponseType::parse(&cx.string(type_node, &join(&key, "type"))?).ok_or_else(|| {
                cx.err(
                    type_node,
                    &join(&key, "type"),
                    "expected fail, pass, info or fingerprint",
                )
            })?;
        let key_node = get(rf, "key").ok_or_else(|| cx.err(r, &join(&key, "key"), "required"))?;
        let result_key = cx.string(key_node, &join(&key, "key"))?;
        if !valid_key(&result_key) {
            return Err(cx.err(
                key_node,
                &join(&key, "key"),
                "keys must match ^[A-Z0-9]+(_[A-Z0-9]+)+$",
            ));
        }
        let when = match get(rf, "when") {
            Some(w) => Some(
                Expr::compile(&cx.string(w, &join(&key, "when"))?, &vars)
                    .map_err(|e| cx.err(w, &join(&key, "when"), e))?,
            ),
            None => None,
        };
        let mut details = Vec::new();
        if let Some(d) = get(rf, "details") {
            for (field, expr) in cx.map(d, &join(&key, "details"), &[])? {
                let dkey = format!("{key}.details.{field}");
                if field == "type" || field == kind.key_field() {
                    return Err(cx.err(expr, &dkey, "details may not set type or the key field"));
                }
                let code = cx.string(expr, &dkey)?;
                details.push((
                    field.clone(),
                    Expr::compile(&code, &vars).map_err(|e| cx.err(expr, &dkey, e))?,
                ));
            }
        }
        responses.push(Resp {
            kind,
            key: result_key,
            when,
            details,
        });
    }
    Ok(DeclRule {
        name: format!("{set}.{short}.report"),
        deps,
        fields: input_fields,
        tags,
        links,
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
