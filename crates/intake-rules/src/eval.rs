//! Evaluates a [`Graph`] against one archive (extracted, or in memory) and builds the report in
//! insights-core's JSON shape (spec pipeline.md §8).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::graph::{module_of, valid_key, Graph};
use crate::model::{Inputs, Kind, Outcome, Output, Response, RunCx};
use crate::source::FileSource;

/// Longest `details` (compact JSON characters) kept as is.
pub const MAX_DETAIL_LENGTH: usize = 65_535;

/// The version and commit intake reports for itself and its built-in sets.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The source commit, when the build set `INTAKE_COMMIT`.
pub const COMMIT: &str = match option_env!("INTAKE_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// Why evaluation stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("the archive deadline passed before component {0}")]
    DeadlineExceeded(String),
}

/// A finished evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The report object (every key of §8 present).
    pub report: Value,
    /// Components that failed or panicked.
    pub failed_components: Vec<String>,
}

impl Evaluation {
    /// Entries per bucket type: `rule`, `pass`, `info`, `fingerprint`, `skip`.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let len = |k: &str| {
            self.report
                .get(k)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        vec![
            ("rule", len("reports")),
            ("pass", len("pass")),
            ("info", len("info")),
            ("fingerprint", len("fingerprints")),
            ("skip", len("skips")),
        ]
    }
}

/// The insights-core execution context of an archive root.
pub fn execution_context(root: &Path) -> &'static str {
    execution_context_of(&FileSource::Dir(root))
}

/// The insights-core execution context of an archive's files.
pub fn execution_context_of(source: &FileSource<'_>) -> &'static str {
    if source.is_dir("sos_commands") {
        "insights.core.context.SosArchiveContext"
    } else if source.is_file("config/id") || source.is_file("config/version.json") {
        "intake.context.InsightsOperatorContext"
    } else {
        "insights.core.context.HostArchiveContext"
    }
}

fn python_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

struct Buckets {
    results: Vec<(String, &'static str, Value)>,
    skips: Vec<Value>,
    metadata: Map<String, Value>,
    failed: Vec<String>,
}

impl Graph {
    /// Runs every component once, in order, against the tree at `root`.
    pub fn evaluate(&self, root: &Path, deadline: Instant) -> Result<Evaluation, EvalError> {
        self.evaluate_source(FileSource::Dir(root), deadline)
    }

    /// Runs every component once, in order, against an archive's files (on disk or in memory).
    pub fn evaluate_source(
        &self,
        source: FileSource<'_>,
        deadline: Instant,
    ) -> Result<Evaluation, EvalError> {
        let start = intake_core::time::now_string();
        let files = source.list_files();
        let cx = RunCx {
            source,
            files: &files,
            deadline,
        };
        let mut values: HashMap<String, Output> = HashMap::new();
        let mut b = Buckets {
            results: Vec::new(),
            skips: Vec::new(),
            metadata: Map::new(),
            failed: Vec::new(),
        };
        for c in &self.order {
            if Instant::now() >= deadline {
                return Err(EvalError::DeadlineExceeded(c.name().to_owned()));
            }
            let deps = c.deps();
            let missing: Vec<String> = deps
                .requires
                .iter()
                .filter(|d| !values.contains_key(*d))
                .cloned()
                .collect();
            let unmet: Vec<&Vec<String>> = deps
                .any_of
                .iter()
                .filter(|g| !g.iter().any(|d| values.contains_key(d)))
                .collect();
            if !missing.is_empty() || !unmet.is_empty() {
                if c.kind() == Kind::Rule {
                    let any: Vec<String> = unmet.iter().map(|g| python_list(g)).collect();
                    let details = format!("All: {} Any: {}", python_list(&missing), any.join(" "));
                    b.skips
                        .push(skip(c.name(), "MISSING_REQUIREMENTS", details));
                }
                continue;
            }
            let inputs = Inputs { values: &values };
            let outcome = catch_unwind(AssertUnwindSafe(|| c.run(&inputs, &cx)));
            let outcome = match outcome {
                Ok(o) => o,
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".to_owned());
                    Outcome::Fail(crate::model::ComponentError(format!("panicked: {msg}")))
                }
            };
            match outcome {
                Outcome::Value(v) => {
                    if c.kind() == Kind::Rule {
                        self.rule_value(c.name(), &v, &mut b);
                    } else {
                        values.insert(c.name().to_owned(), v);
                    }
                }
                Outcome::Skip(_) => {}
                Outcome::Fail(e) => {
                    tracing::warn!(component = c.name(), error = %e, "component failed");
                    b.failed.push(c.name().to_owned());
                    if c.kind() == Kind::Rule {
                        b.skips.push(skip(c.name(), "RULE_FAILED", e.0));
                    }
                }
            }
        }
        Ok(self.finish(b, &source, start))
    }

    fn rule_value(&self, name: &str, v: &Output, b: &mut Buckets) {
        let Some(resp) = v.downcast_ref::<Option<Response>>() else {
            b.failed.push(name.to_owned());
            b.skips.push(skip(
                name,
                "RULE_FAILED",
                "the rule returned a value that is not a response".into(),
            ));
            return;
        };
        match resp {
            None => {}
            Some(Response::Metadata(m)) => {
                for (k, v) in m {
                    b.metadata.insert(k.clone(), v.clone());
                }
            }
            Some(Response::Result { kind, key, details }) => {
                if !valid_key(key) {
                    b.failed.push(name.to_owned());
                    b.skips.push(skip(
                        name,
                        "RULE_FAILED",
                        format!("invalid result key {key:?}"),
                    ));
                    return;
                }
                let mut d = Map::new();
                d.insert("type".into(), Value::String(kind.type_name().into()));
                d.insert(kind.key_field().into(), Value::String(key.clone()));
                for (k, v) in details {
                    if k != "type" && k != kind.key_field() {
                        d.insert(k.clone(), v.clone());
                    }
                }
                let mut details = Value::Object(d);
                let len = details.to_string().chars().count();
                if len > MAX_DETAIL_LENGTH {
                    tracing::warn!(
                        component = name,
                        length = len,
                        "result details too long, replaced"
                    );
                    details = json!({"type": kind.type_name(), kind.key_field(): key, "max_detail_length_error": len});
                }
                let id = format!("{}|{}", module_of(name), key);
                let entry = json!({
                    format!("{}_id", kind.type_name()): id,
                    "component": name,
                    "type": kind.type_name(),
                    "key": key,
                    "details": details,
                    "tags": self.tags.get(name).cloned().unwrap_or_default(),
                    "links": self.links.get(name).cloned().unwrap_or_default(),
                });
                if !self.removed_ids.iter().any(|p| id.starts_with(p.as_str())) {
                    b.results.push((name.to_owned(), kind.bucket(), entry));
                }
            }
        }
    }

    fn finish(&self, mut b: Buckets, source: &FileSource<'_>, start: String) -> Evaluation {
        b.results.sort_by(|x, y| x.0.cmp(&y.0));
        b.skips
            .sort_by(|x, y| x["rule_fqdn"].as_str().cmp(&y["rule_fqdn"].as_str()));
        let bucket = |name: &str| -> Value {
            Value::Array(
                b.results
                    .iter()
                    .filter(|r| r.1 == name)
                    .map(|r| r.2.clone())
                    .collect(),
            )
        };
        let mut plugin_sets = Map::new();
        plugin_sets.insert(
            "intake".into(),
            json!({"version": VERSION, "commit": COMMIT}),
        );
        for s in &self.sets {
            plugin_sets.insert(
                s.name.clone(),
                json!({"version": s.version, "commit": s.commit}),
            );
        }
        let report = json!({
            "system": {"metadata": b.metadata, "hostname": null},
            "reports": bucket("reports"),
            "fingerprints": bucket("fingerprints"),
            "skips": b.skips,
            "info": bucket("info"),
            "pass": bucket("pass"),
            "analysis_metadata": {
                "start": start,
                "finish": intake_core::time::now_string(),
                "execution_context": execution_context_of(source),
                "plugin_sets": plugin_sets,
            },
        });
        Evaluation {
            report,
            failed_components: b.failed,
        }
    }
}

fn skip(component: &str, reason: &str, details: String) -> Value {
    json!({"rule_fqdn": component, "reason": reason, "details": details, "type": "skip"})
}
