//! The starter set `intake_ocp`, for the Insights Operator cluster-archive layout: cluster id,
//! version, update status and operator health (spec pipeline.md §7.3).

use serde_json::{json, Map, Value};

use crate::graph::{GraphError, Registry, SetInfo};
use crate::model::{Component, ComponentError, Deps, Inputs, Kind, Outcome, Response, RunCx};
use crate::parsers::{Builtin, Parser};
use crate::specs::Spec;

pub const SET: &str = "intake_ocp";
const CLUSTER_ID: &str = "intake_ocp.parsers.cluster_id";
const CLUSTER_VERSION: &str = "intake_ocp.parsers.cluster_version";
const CLUSTER_OPERATORS: &str = "intake_ocp.parsers.cluster_operators";
const INFRASTRUCTURE: &str = "intake_ocp.parsers.infrastructure";
/// Longest `message` kept in `CLUSTER_UPDATE_FAILING` details.
const MAX_MESSAGE: usize = 1024;

type RuleFn = fn(&Inputs<'_>) -> Result<Option<Response>, ComponentError>;

/// A rule written in Rust as a plain function.
pub struct FnRule {
    pub name: &'static str,
    pub deps: Deps,
    pub run: RuleFn,
}

impl Component for FnRule {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> Kind {
        Kind::Rule
    }
    fn deps(&self) -> Deps {
        self.deps.clone()
    }
    fn run(&self, inputs: &Inputs<'_>, _cx: &RunCx<'_>) -> Outcome {
        match (self.run)(inputs) {
            Ok(v) => Outcome::value(v),
            Err(e) => Outcome::Fail(e),
        }
    }
}

/// Registers the set.
pub fn register(reg: &mut Registry) -> Result<(), GraphError> {
    reg.add_set(SetInfo {
        name: SET.into(),
        version: crate::VERSION.into(),
        commit: crate::COMMIT.into(),
    })?;
    let spec = |name: &str| format!("intake_ocp.specs.{name}");
    reg.add(Spec::path(&spec("cluster_id"), &["config/id"]).max_bytes(1024))?;
    reg.add(Spec::path(
        &spec("cluster_version"),
        &["config/version.json"],
    ))?;
    let operators = Spec::glob(&spec("cluster_operators"), "config/clusteroperator/*.json")
        .ok_or_else(|| GraphError::BadName(spec("cluster_operators")))?;
    reg.add(operators.max_files(500))?;
    reg.add(Spec::path(
        &spec("infrastructure"),
        &["config/infrastructure.json"],
    ))?;
    reg.add(Parser::new(CLUSTER_ID, &spec("cluster_id"), Builtin::Text))?;
    reg.add(Parser::new(
        CLUSTER_VERSION,
        &spec("cluster_version"),
        Builtin::Json,
    ))?;
    reg.add(Parser::new(
        CLUSTER_OPERATORS,
        &spec("cluster_operators"),
        Builtin::Json,
    ))?;
    reg.add(Parser::new(
        INFRASTRUCTURE,
        &spec("infrastructure"),
        Builtin::Json,
    ))?;
    reg.add(FnRule {
        name: "intake_ocp.cluster_metadata.report",
        deps: Deps::requires([CLUSTER_ID]).optional([CLUSTER_VERSION, INFRASTRUCTURE]),
        run: cluster_metadata,
    })?;
    reg.add(FnRule {
        name: "intake_ocp.version_info.report",
        deps: Deps::requires([CLUSTER_VERSION]),
        run: version_info,
    })?;
    reg.add(FnRule {
        name: "intake_ocp.cluster_update.report",
        deps: Deps::requires([CLUSTER_VERSION]),
        run: cluster_update,
    })?;
    reg.add(FnRule {
        name: "intake_ocp.operator_status.report",
        deps: Deps::requires([CLUSTER_OPERATORS]),
        run: operator_status,
    })?;
    Ok(())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn details(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn cluster_metadata(inputs: &Inputs<'_>) -> Result<Option<Response>, ComponentError> {
    let id = inputs
        .get::<Value>(CLUSTER_ID)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id: String = id
        .trim()
        .chars()
        .take(36)
        .collect::<String>()
        .trim()
        .to_lowercase();
    let mut m = Map::new();
    m.insert("cluster_id".into(), Value::String(id));
    if let Some(cv) = inputs.get::<Value>(CLUSTER_VERSION) {
        if let Some(v) = str_at(cv, "/status/desired/version") {
            m.insert("version".into(), json!(v));
        }
        if let Some(c) = str_at(cv, "/spec/channel") {
            m.insert("channel".into(), json!(c));
        }
    }
    if let Some(p) = inputs
        .get::<Value>(INFRASTRUCTURE)
        .and_then(|i| str_at(i, "/status/platform"))
    {
        m.insert("platform".into(), json!(p));
    }
    Ok(Some(Response::metadata(m)))
}

fn version_info(inputs: &Inputs<'_>) -> Result<Option<Response>, ComponentError> {
    let cv = inputs
        .get::<Value>(CLUSTER_VERSION)
        .ok_or_else(|| ComponentError::new("no cluster version"))?;
    Ok(str_at(cv, "/status/desired/version")
        .map(|v| Response::info("CLUSTER_VERSION_INFO", details(vec![("version", json!(v))]))))
}

fn condition<'a>(doc: &'a Value, kind: &str) -> Option<&'a Value> {
    doc.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn cluster_update(inputs: &Inputs<'_>) -> Result<Option<Response>, ComponentError> {
    let cv = inputs
        .get::<Value>(CLUSTER_VERSION)
        .ok_or_else(|| ComponentError::new("no cluster version"))?;
    let failing = condition(cv, "Failing")
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"));
    let Some(cond) = failing else {
        return Ok(Some(Response::pass("CLUSTER_UPDATE_FAILING", Map::new())));
    };
    let message: String = cond
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(MAX_MESSAGE)
        .collect();
    Ok(Some(Response::fail(
        "CLUSTER_UPDATE_FAILING",
        details(vec![
            (
                "current_version",
                json!(str_at(cv, "/status/desired/version").unwrap_or_default()),
            ),
            (
                "reason",
                json!(cond
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()),
            ),
            ("message", json!(message)),
        ]),
    )))
}

fn operator_status(inputs: &Inputs<'_>) -> Result<Option<Response>, ComponentError> {
    let ops = inputs
        .get::<Value>(CLUSTER_OPERATORS)
        .and_then(Value::as_array)
        .ok_or_else(|| ComponentError::new("no cluster operators"))?;
    let mut bad: Vec<Value> = Vec::new();
    for op in ops {
        let status = |kind: &str| {
            condition(op, kind)
                .and_then(|c| c.get("status"))
                .and_then(Value::as_str)
        };
        let degraded = status("Degraded") == Some("True");
        let available = status("Available") != Some("False");
        if degraded || !available {
            let which = if degraded { "Degraded" } else { "Available" };
            let reason = condition(op, which)
                .and_then(|c| c.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            bad.push(json!({
                "name": str_at(op, "/metadata/name").unwrap_or_default(),
                "degraded": degraded,
                "available": available,
                "reason": reason,
            }));
        }
    }
    if bad.is_empty() {
        return Ok(Some(Response::pass("OPERATORS_DEGRADED", Map::new())));
    }
    bad.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Some(Response::fail(
        "OPERATORS_DEGRADED",
        details(vec![("operators", Value::Array(bad))]),
    )))
}
