//! The engine stage: safe extraction (intake-archive), the archive's root, kind and cluster id,
//! then the rules graph or an external command (spec pipeline.md §6, §7). A small archive held in
//! memory is extracted into memory ([`Engine::extract_in_memory`]) and judged there, under the
//! same limits and with the same errors; the external engine always gets a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intake_archive::{ArchiveError, Limits, SpecialFiles};
use intake_rules::{declarative, ocp, FileSource, Graph, MemoryFiles, Registry, Selection};
use serde_json::Value;

use crate::config::{EngineKind, PipelineConfig};
use crate::error::{PipelineError, Stage, StageError};

/// An extracted archive.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The extraction directory.
    pub dir: PathBuf,
    /// The archive root (the directory, or its single top-level directory).
    pub root: PathBuf,
    /// `ocp`, `hypershift` or `other`.
    pub kind: &'static str,
    /// From `config/id`, canonical lowercase.
    pub cluster_id: Option<String>,
    /// Why `config/id` gave no cluster id, for the log.
    pub cluster_id_problem: Option<String>,
}

/// A small archive extracted into memory.
#[derive(Debug, Clone)]
pub struct MemoryTree {
    /// The kept files and directories, relative to the archive root.
    pub files: MemoryFiles,
    /// `ocp`, `hypershift` or `other`.
    pub kind: &'static str,
    /// From `config/id`, canonical lowercase.
    pub cluster_id: Option<String>,
    /// Why `config/id` gave no cluster id, for the log.
    pub cluster_id_problem: Option<String>,
}

/// The configured engine.
pub struct Engine {
    graph: Option<Arc<Graph>>,
    external: Option<crate::external::External>,
    limits: Limits,
    wanted: Vec<regex::Regex>,
    keep_all: bool,
    pub timeout: Duration,
}

/// Builds the rules registry of `plugins.packages`: built-in set names, or rule-file globs.
pub fn build_graph(config: &PipelineConfig) -> Result<Graph, PipelineError> {
    let mut reg = Registry::new();
    for package in &config.plugins.packages {
        if package.contains('/') || package.ends_with(".yaml") || package.ends_with(".yml") {
            let pattern = config.base_dir.join(package);
            let paths = glob::glob(&pattern.to_string_lossy()).map_err(|e| {
                PipelineError::rules_from(format!("plugins.packages {package:?}"), e)
            })?;
            let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            files.sort();
            if files.is_empty() {
                return Err(PipelineError::rules(format!(
                    "plugins.packages {package:?}: no rule file matches"
                )));
            }
            for f in files {
                let file =
                    declarative::load_file(&f).map_err(|e| PipelineError::rules_from("", e))?;
                file.register(&mut reg)
                    .map_err(|e| PipelineError::rules_from("", e))?;
            }
        } else {
            match package.as_str() {
                ocp::SET => ocp::register(&mut reg).map_err(|e| PipelineError::rules_from("", e))?,
                other => {
                    return Err(PipelineError::rules(format!(
                        "plugins.packages: unknown rule set {other:?} (built in: intake_ocp; files need a / or .yaml)"
                    )))
                }
            }
        }
    }
    let selection = Selection {
        default_component_enabled: config.plugins.default_component_enabled,
        configs: config.plugins.configs.clone(),
        target_components: config.engine.target_components.clone(),
    };
    Graph::build(reg, &selection).map_err(|e| PipelineError::rules_from("", e))
}

impl Engine {
    pub fn build(config: &PipelineConfig) -> Result<Self, PipelineError> {
        let e = &config.engine;
        let limits = Limits {
            max_unpacked_size: e.extract.max_unpacked_size,
            max_files: e.extract.max_files,
            max_file_size: e.extract.max_file_size,
            max_depth: e.extract.max_depth,
            timeout: e.extract.timeout,
            special_files: SpecialFiles::Skip,
        };
        let (graph, external) = match e.kind {
            EngineKind::Rules => (Some(Arc::new(build_graph(config)?)), None),
            EngineKind::External => (None, Some(crate::external::External::new(config)?)),
        };
        let mut patterns: Vec<String> = graph.as_ref().map(|g| g.wanted()).unwrap_or_default();
        patterns.extend([
            "config/id".to_owned(),
            "config/version.json".into(),
            "config/infrastructure.json".into(),
            "insights-operator/remote-configuration.json".into(),
        ]);
        let keep_all = e.kind == EngineKind::External
            || patterns.iter().any(|p| p == "**" || p.starts_with("**/"));
        let wanted = patterns
            .iter()
            .filter_map(|p| intake_rules::specs::glob_regex(p))
            .collect();
        Ok(Engine {
            graph,
            external,
            limits,
            wanted,
            keep_all,
            timeout: e.timeout,
        })
    }

    /// The component graph as text (`intake pipeline check`).
    pub fn describe(&self) -> String {
        match (&self.graph, &self.external) {
            (Some(g), _) => g.describe(),
            (None, Some(x)) => format!("external engine: {}\n", x.command_line()),
            _ => String::new(),
        }
    }

    /// Whether archives may be judged in memory: the built-in rules read a [`FileSource`]; an
    /// external engine needs files.
    pub fn reads_memory(&self) -> bool {
        self.graph.is_some()
    }

    /// The limits of one archive, its time bounded by `deadline`.
    fn limits(&self, deadline: Instant) -> Limits {
        let mut limits = self.limits.clone();
        limits.timeout = limits
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        limits
    }

    /// Selective extraction: only what the specs and watchers read is kept (an external engine,
    /// or a `**` spec, keeps everything); every entry is still read, counted and checked.
    fn keeps(&self, p: &str) -> bool {
        self.keep_all
            || self.wanted.iter().any(|w| {
                w.is_match(p) || p.split_once('/').is_some_and(|(_, rest)| w.is_match(rest))
            })
    }

    /// Extracts `archive` into `dir` (blocking; call on the blocking pool).
    pub fn extract(
        &self,
        archive: &Path,
        dir: &Path,
        deadline: Instant,
    ) -> Result<Tree, StageError> {
        let limits = self.limits(deadline);
        std::fs::create_dir_all(dir)
            .map_err(|e| StageError::transient(Stage::Extract, "io", e.to_string()).caused_by(e))?;
        let keep = |p: &str| self.keeps(p);
        let extracted = intake_archive::extract_matching(archive, dir, &limits, &keep)
            .map_err(archive_error)?;
        let top = self.nested_root(&extracted.summary.top_level, &extracted.files, |only| {
            dir.join(only).is_dir()
        });
        let root = top.map_or_else(|| dir.to_path_buf(), |only| dir.join(only));
        let source = FileSource::Dir(&root);
        let (cluster_id, cluster_id_problem) = read_cluster_id(&source);
        remote_config_metric(&source);
        Ok(Tree {
            dir: dir.to_path_buf(),
            kind: archive_kind(&source),
            root,
            cluster_id,
            cluster_id_problem,
        })
    }

    /// Extracts an archive held in memory into memory (blocking): the files [`Engine::extract`]
    /// would write, under the same limits, refused with the same reasons.
    pub fn extract_in_memory(
        &self,
        archive: Vec<u8>,
        deadline: Instant,
    ) -> Result<MemoryTree, StageError> {
        let limits = self.limits(deadline);
        let keep = |p: &str| self.keeps(p);
        let extracted = intake_archive::extract_bytes_matching(archive, &limits, &keep)
            .map_err(archive_error)?;
        let paths: Vec<String> = extracted.files.keys().cloned().collect();
        let top = self
            .nested_root(&extracted.summary.top_level, &paths, |only| {
                extracted.dirs.contains(only)
            })
            .map(str::to_owned);
        let files = match top {
            None => MemoryFiles {
                files: extracted.files,
                dirs: extracted.dirs,
            },
            Some(only) => {
                let prefix = format!("{only}/");
                let below = |p: String| p.strip_prefix(&prefix).map(str::to_owned);
                MemoryFiles {
                    files: (extracted.files.into_iter())
                        .filter_map(|(p, c)| below(p).map(|p| (p, c)))
                        .collect(),
                    dirs: extracted.dirs.into_iter().filter_map(below).collect(),
                }
            }
        };
        let source = FileSource::Memory(&files);
        let (cluster_id, cluster_id_problem) = read_cluster_id(&source);
        remote_config_metric(&source);
        let kind = archive_kind(&source);
        Ok(MemoryTree {
            files,
            kind,
            cluster_id,
            cluster_id_problem,
        })
    }

    /// The single top-level directory to take as the archive root, if the archive nests
    /// everything in one and nothing wanted sits at the top.
    fn nested_root<'t>(
        &self,
        top_level: &'t [String],
        files: &[String],
        is_dir: impl Fn(&str) -> bool,
    ) -> Option<&'t str> {
        let [only] = top_level else {
            return None;
        };
        let nested = files.iter().all(|f| f.starts_with(&format!("{only}/")));
        let wanted_at_root = files
            .iter()
            .any(|f| self.wanted.iter().any(|w| w.is_match(f)));
        (nested && !files.is_empty() && !wanted_at_root && is_dir(only)).then_some(only.as_str())
    }

    /// Runs the rules over an extracted tree (blocking).
    pub fn run_rules(
        &self,
        tree: &Tree,
        deadline: Instant,
    ) -> Result<intake_rules::Evaluation, StageError> {
        self.run_rules_on(FileSource::Dir(&tree.root), deadline)
    }

    /// Runs the rules over an archive's files, on disk or in memory (blocking).
    pub fn run_rules_on(
        &self,
        source: FileSource<'_>,
        deadline: Instant,
    ) -> Result<intake_rules::Evaluation, StageError> {
        let Some(graph) = &self.graph else {
            return Err(StageError::internal(Stage::Rules, "no rules graph"));
        };
        let eval = graph.evaluate_source(source, deadline).map_err(|e| {
            StageError::permanent(Stage::Rules, "deadline_exceeded", e.to_string()).caused_by(e)
        })?;
        let m = crate::metrics::get();
        for c in &eval.failed_components {
            m.component_failures.with_label_values(&[c.as_str()]).inc();
        }
        for (kind, n) in eval.counts() {
            m.results.with_label_values(&[kind]).inc_by(n as u64);
        }
        Ok(eval)
    }

    pub fn external(&self) -> Option<&crate::external::External> {
        self.external.as_ref()
    }
}

fn archive_error(e: ArchiveError) -> StageError {
    let code = e.code();
    let detail = e.to_string();
    if e.is_transient() {
        return StageError::transient(Stage::Extract, "io", detail).caused_by(e);
    }
    let reason = match code {
        "unsupported_format" => "unsupported_format",
        "corrupt_archive" => "corrupt_archive",
        "empty_archive" => "empty_archive",
        "unsafe_path" => "unsafe_path",
        "path_too_deep" => "path_too_deep",
        "too_many_files" => "too_many_files",
        "file_too_large" => "file_too_large",
        "unpacked_too_large" => "unpacked_too_large",
        "deadline_exceeded" => "deadline_exceeded",
        _ => "unsupported_format",
    };
    StageError::permanent(Stage::Extract, reason, detail).caused_by(e)
}

fn read_cluster_id(source: &FileSource<'_>) -> (Option<String>, Option<String>) {
    match source.read("config/id") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (None, Some("config/id is missing".into()))
        }
        Err(e) => (None, Some(format!("config/id is unreadable: {e}"))),
        Ok(bytes) => {
            let text: String = String::from_utf8_lossy(&bytes).chars().take(36).collect();
            match crate::watchers::canonical_uuid(text.trim()) {
                Some(id) => (Some(id), None),
                None => (None, Some("config/id does not hold a UUID".into())),
            }
        }
    }
}

fn archive_kind(source: &FileSource<'_>) -> &'static str {
    let infra = source.read("config/infrastructure.json").ok();
    let external = infra
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| {
            v.pointer("/status/controlPlaneTopology")
                .and_then(Value::as_str)
                .map(|t| t == "External")
        })
        .unwrap_or(false);
    if external {
        "hypershift"
    } else if source.is_file("config/id") || source.is_file("config/version.json") {
        "ocp"
    } else {
        "other"
    }
}

fn remote_config_metric(source: &FileSource<'_>) {
    let Ok(bytes) = source.read("insights-operator/remote-configuration.json") else {
        return;
    };
    let version = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("version").cloned());
    let label = match version {
        None | Some(Value::Null) => "None".to_owned(),
        Some(Value::String(s))
            if s.split('.').count() == 3
                && s.split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) =>
        {
            s
        }
        Some(_) => "other".to_owned(),
    };
    crate::metrics::get()
        .remote_config_version
        .with_label_values(&[label.as_str()])
        .inc();
}
