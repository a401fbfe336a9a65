//! The pipeline configuration (spec pipeline.md §3): typed structs with their documented defaults,
//! loading (the file's shape is `file.rs`, read by serde over the YAML tree with every problem
//! reported at once), and the start-up checks.

mod errors;
mod file;
mod substitute;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use intake_core::config::EnvMap;
use intake_rules::yaml::de::{self, KeyPath};
use intake_rules::yaml::Node;
use intake_rules::ComponentConfig;
use serde::Deserialize;

pub use errors::{ConfigErrors, ConfigIssue};
pub use substitute::{parse_size, substitute};

/// The configuration `intake serve` runs with (spec §3.3).
pub fn default_config_yaml() -> &'static str {
    include_str!("../../examples-config/serve-default.yaml")
}

/// The default `allowed_urls` patterns (storage.md, "Download URLs").
pub use intake_storage::links::{localdisk_url_pattern, S3_PRESIGNED_PATTERN};

#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Directory relative paths resolve against (the config file's).
    pub base_dir: PathBuf,
    pub plugins: PluginsConfig,
    pub consumer: ConsumerConfig,
    pub downloader: DownloaderConfig,
    pub engine: EngineConfig,
    pub publisher: PublisherConfig,
    pub dead_letter: DeadLetterConfig,
    pub watchers: Vec<WatcherConfig>,
    pub logging: LoggingConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginsConfig {
    /// true: every component runs unless disabled; false: only those enabled (plus their needs).
    pub default_component_enabled: bool,
    /// Built-in set names, or rule-file globs (containing `/` or ending `.yaml`). `[intake_ocp]`.
    pub packages: Vec<String>,
    pub configs: Vec<ComponentConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    /// `[platform.upload.available]`.
    pub topics: Vec<String>,
    /// `intake-pipeline`.
    pub group_id: String,
    /// `[]`: every service.
    pub services: Vec<String>,
    /// 2h; zero disables.
    pub max_record_age: Duration,
    /// 1..=256, the number of CPUs.
    pub workers: usize,
    /// Messages fetched and not yet committed: I/O concurrency (downloads, broker round trips),
    /// sized apart from `workers`. Default: 64, and never below 2 × workers.
    pub max_in_flight: usize,
    pub brokers: Option<String>,
    pub kafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloaderKind {
    Http,
    Storage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFrom {
    RequestId,
    Url,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DownloaderConfig {
    pub kind: DownloaderKind,
    /// `$INTAKE_DATA_DIR/pipeline/tmp`.
    pub tmp_dir: PathBuf,
    /// 100 MiB.
    pub max_archive_size: u64,
    /// Largest archive kept in memory from download to report (default 8 MiB; 0: never): one
    /// whose size is known and at most this is downloaded, extracted and judged without a work
    /// directory, when the engine is `rules` (an external engine needs files).
    pub max_in_memory: u64,
    /// Anchored patterns; default: the S3 presigned pattern and the localdisk download URL.
    pub allowed_urls: Vec<String>,
    pub allow_unsafe_links: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub total_timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Storage: `$S3_PERM`.
    pub bucket: String,
    pub key_from: KeyFrom,
    pub allowed_buckets: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    Rules,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExternalInput {
    Extracted,
    Archive,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExtractConfig {
    pub timeout: Duration,
    pub max_unpacked_size: u64,
    pub max_files: u64,
    pub max_file_size: u64,
    pub max_depth: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub kind: EngineKind,
    /// 120s: extraction + rules.
    pub timeout: Duration,
    pub target_components: Vec<String>,
    pub extract: ExtractConfig,
    /// External: the command and its arguments.
    pub command: Vec<String>,
    /// External: 16 MiB.
    pub max_output: u64,
    pub env: BTreeMap<String, String>,
    pub input: ExternalInput,
    /// The `plugins` section as JSON, handed verbatim to an external engine.
    pub plugins_json: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Ccx,
    Insights,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    ClusterId,
    RequestId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublisherConfig {
    pub format: Format,
    /// `ccx.ocp.results`.
    pub topic: String,
    pub key: KeyKind,
    pub report_version: u64,
    pub brokers: Option<String>,
    pub kafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterConfig {
    /// `intake.pipeline.dlq`.
    pub topic: String,
    pub brokers: Option<String>,
    pub kafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    DeadLetter,
    Skip,
    Continue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WatcherConfig {
    ClusterId { on_missing: OnMissing },
    Prometheus { listen: std::net::SocketAddr },
    PayloadStatus { topic: String, service_name: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    pub level: String,
    pub format: String,
    pub filters: BTreeMap<String, String>,
}

/// Loads a configuration file; relative paths resolve against its directory.
pub fn load_config(path: &Path, env: &EnvMap) -> Result<PipelineConfig, ConfigErrors> {
    let in_file = |issues| ConfigErrors {
        file: Some(path.to_path_buf()),
        issues,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| in_file(vec![ConfigIssue::new("", 0, format!("cannot read: {e}"))]))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_config_str(&text, &base, env).map_err(|e| in_file(e.issues))
}

/// Loads configuration text; `base_dir` is where relative paths resolve.
pub fn load_config_str(
    text: &str,
    base_dir: &Path,
    env: &EnvMap,
) -> Result<PipelineConfig, ConfigErrors> {
    let errors = |issues| ConfigErrors { file: None, issues };
    let root = Node::parse(text)
        .map_err(|e| errors(vec![ConfigIssue::new("", 0, format!("not YAML: {e}"))]))?;
    let mut issues = Vec::new();
    let service = KeyPath::default().key("service");
    let logging = service.key("logging");
    let mut skip = Vec::new();
    if ["version", "handlers", "loggers"]
        .iter()
        .any(|k| root.at(&logging.key(k)).is_some())
    {
        let message = "a Python logging dictConfig is not supported: use level, format and filters";
        issues.push(ConfigIssue::at(&root, &logging, message));
        skip.push(logging);
    }
    let substitute = |t: &str| substitute(t, env);
    let options = de::Options {
        substitute: Some(&substitute),
        empty_is_absent: true,
        skip,
    };
    let (file, problems) = de::read_node::<file::File>(&root, &options);
    issues.extend(problems.into_iter().map(ConfigIssue::from));
    let Some(file) = file else {
        return Err(errors(issues));
    };
    let plugins_json = root
        .get("plugins")
        .map_or(serde_json::Value::Null, Node::to_json);
    let mut found = Vec::new();
    let config = file.resolve(base_dir, env, plugins_json, &mut found);
    check(&config, &mut found);
    // What did not read has its default, which the checks may not like again.
    let reported: Vec<String> = issues.iter().map(|i| i.path.clone()).collect();
    found.retain(|(p, _)| !reported.contains(&p.to_string()));
    issues.extend(
        found
            .iter()
            .map(|(p, m)| ConfigIssue::at(&root, p, m.clone())),
    );
    issues.sort_by_key(|i| (i.line == 0, i.line));
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(errors(issues))
    }
}

/// The default of `max_in_flight` (pipeline.md says 2 × workers, which left the cores idle while
/// messages waited on the broker; see the crate's README).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Start-up checks of values and across sections (rule files and the graph are checked when the
/// engine is built).
fn check(c: &PipelineConfig, issues: &mut Vec<(KeyPath, String)>) {
    let service = KeyPath::default().key("service");
    let mut fail = |path: KeyPath, message: &str| issues.push((path, message.to_owned()));
    if !(1..=256).contains(&c.consumer.workers) {
        fail(
            service.key("consumer").key("workers"),
            "must be between 1 and 256",
        );
    }
    for (i, p) in c.downloader.allowed_urls.iter().enumerate() {
        if let Err(e) = regex::Regex::new(&crate::download::anchor(p)) {
            let path = service.key("downloader").key("allowed_urls").index(i);
            fail(path, &format!("invalid regex: {e}"));
        }
    }
    if c.publisher.format == Format::Ccx {
        let ok = c.watchers.iter().any(|w| matches!(w, WatcherConfig::ClusterId { on_missing } if *on_missing != OnMissing::Continue));
        if !ok {
            fail(
                service.key("watchers"),
                "format: ccx needs a cluster_id watcher with on_missing dead_letter or skip",
            );
        }
    }
    for (section, map) in [
        ("consumer", &c.consumer.kafka),
        ("publisher", &c.publisher.kafka),
        ("dead_letter", &c.dead_letter.kafka),
    ] {
        for k in ["enable.auto.commit", "enable.auto.offset.store", "group.id"] {
            if map.contains_key(k) {
                let path = service.key(section).key("kafka").key(k);
                fail(path, "intake manages this setting; remove it");
            }
        }
    }
    if c.engine.kind == EngineKind::External && c.engine.command.is_empty() {
        fail(
            service.key("engine").key("command"),
            "required with kind: external",
        );
    }
    let logging = service.key("logging");
    let level = c.logging.level.as_str();
    if !matches!(level, "error" | "warn" | "info" | "debug" | "trace") {
        fail(
            logging.key("level"),
            "expected error, warn, info, debug or trace",
        );
    }
    if !matches!(c.logging.format.as_str(), "text" | "json") {
        fail(logging.key("format"), "expected text or json");
    }
}
