//! The pipeline configuration (spec pipeline.md §3): the YAML shape with `plugins` and `service`,
//! typed structs with their documented defaults, and the start-up checks.

mod reader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use intake_core::config::EnvMap;
use intake_rules::yaml::Node;
use intake_rules::ComponentConfig;

pub use reader::{parse_size, substitute, ConfigErrors, ConfigIssue};
use reader::{Reader, Section};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloaderKind {
    Http,
    Storage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Rules,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ccx,
    Insights,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigIssue {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }])
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_config_str(&text, &base, env)
}

/// Loads configuration text; `base_dir` is where relative paths resolve.
pub fn load_config_str(
    text: &str,
    base_dir: &Path,
    env: &EnvMap,
) -> Result<PipelineConfig, ConfigErrors> {
    let root = Node::parse(text).map_err(|e| {
        ConfigErrors(vec![ConfigIssue {
            path: String::new(),
            message: format!("not YAML: {e}"),
        }])
    })?;
    let mut r = Reader::new(env);
    let mut top = r.section(Some(&root), "");
    let plugins_node = top.take("plugins").map(|(n, _)| n);
    let service_node = top.take("service").map(|(n, _)| n);
    r.finish(top);
    let plugins = read_plugins(&mut r, plugins_node, env);
    let mut service = r.section(service_node, "service");
    let consumer = read_consumer(&mut r, &mut service);
    let downloader = read_downloader(&mut r, &mut service, env);
    let engine = read_engine(&mut r, &mut service, plugins_node);
    let publisher = read_publisher(&mut r, &mut service);
    let dead_letter = read_dead_letter(&mut r, &mut service);
    let watchers = read_watchers(&mut r, &mut service, publisher.format);
    let logging = read_logging(&mut r, &mut service, env);
    r.finish(service);
    let config = PipelineConfig {
        base_dir: base_dir.to_path_buf(),
        plugins,
        consumer,
        downloader,
        engine,
        publisher,
        dead_letter,
        watchers,
        logging,
    };
    check(&mut r, &config);
    if r.issues.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(r.issues))
    }
}

fn read_plugins(r: &mut Reader<'_>, node: Option<&Node>, env: &EnvMap) -> PluginsConfig {
    let mut s = r.section(node, "plugins");
    let default_component_enabled = r.bool(&mut s, "default_component_enabled").unwrap_or(true);
    let mut packages = r
        .list(&mut s, "packages")
        .unwrap_or_else(|| vec!["intake_ocp".into()]);
    if let Some(extra) = env.get("EXTRA_PACKAGES") {
        packages.extend(
            extra
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    let mut configs = Vec::new();
    if let Some((node, path)) = s.take("configs") {
        if let intake_rules::yaml::NodeKind::Seq(items) = &node.kind {
            for (i, item) in items.iter().enumerate() {
                let mut c = r.section(Some(item), &format!("{path}[{i}]"));
                let name = r.string(&mut c, "name");
                let enabled = r.bool(&mut c, "enabled");
                let tags = r.list(&mut c, "tags");
                let links = c.take("links").and_then(|(n, p)| match n.to_json() {
                    serde_json::Value::Object(m) => Some(m),
                    _ => {
                        r.fail(&p, "expected a mapping of name to URLs");
                        None
                    }
                });
                match name {
                    Some(name) => configs.push(ComponentConfig {
                        name,
                        enabled,
                        tags,
                        links,
                    }),
                    None => r.fail(&format!("{}.name", c.path()), "required"),
                }
                r.finish(c);
            }
        } else {
            r.fail(&path, "expected a list");
        }
    }
    r.finish(s);
    PluginsConfig {
        default_component_enabled,
        packages,
        configs,
    }
}

/// The default of `max_in_flight` (pipeline.md says 2 × workers, which left the cores idle while
/// messages waited on the broker; see the crate's README).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn read_consumer(r: &mut Reader<'_>, service: &mut Section<'_>) -> ConsumerConfig {
    let node = service.take("consumer").map(|(n, _)| n);
    let mut s = r.section(node, "service.consumer");
    let topics = r
        .list(&mut s, "topics")
        .unwrap_or_else(|| vec!["platform.upload.available".into()]);
    let group_id = r
        .string(&mut s, "group_id")
        .unwrap_or_else(|| "intake-pipeline".into());
    let services = r.list(&mut s, "services").unwrap_or_default();
    let max_record_age = r
        .duration(&mut s, "max_record_age")
        .unwrap_or(Duration::from_secs(7200));
    let workers = r
        .u64(&mut s, "workers")
        .map(|w| w as usize)
        .unwrap_or_else(cpus);
    if !(1..=256).contains(&workers) {
        r.fail("service.consumer.workers", "must be between 1 and 256");
    }
    let max_in_flight = r
        .u64(&mut s, "max_in_flight")
        .map(|w| w as usize)
        .unwrap_or_else(|| DEFAULT_MAX_IN_FLIGHT.max(2 * workers))
        .max(1);
    let brokers = r.string(&mut s, "brokers");
    let kafka = r.string_map(&mut s, "kafka");
    r.finish(s);
    ConsumerConfig {
        topics,
        group_id,
        services,
        max_record_age,
        workers,
        max_in_flight,
        brokers,
        kafka,
    }
}

fn read_downloader(
    r: &mut Reader<'_>,
    service: &mut Section<'_>,
    env: &EnvMap,
) -> DownloaderConfig {
    let node = service.take("downloader").map(|(n, _)| n);
    let mut s = r.section(node, "service.downloader");
    let kind = r
        .parsed(&mut s, "kind", "http or storage", |t| match t {
            "http" => Some(DownloaderKind::Http),
            "storage" => Some(DownloaderKind::Storage),
            _ => None,
        })
        .unwrap_or(DownloaderKind::Http);
    let data_dir = env
        .get("INTAKE_DATA_DIR")
        .filter(|d| !d.is_empty())
        .cloned()
        .unwrap_or_else(|| "./data".into());
    let tmp_dir = r
        .string(&mut s, "tmp_dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&data_dir).join("pipeline/tmp"));
    // The links ingress issues: INGRESS_PUBLIC_URL, else the URL following INGRESS_LISTEN.
    let public = intake_core::config::public_url_from(env);
    let allowed_urls = r.list(&mut s, "allowed_urls").unwrap_or_else(|| {
        vec![
            S3_PRESIGNED_PATTERN.to_owned(),
            localdisk_url_pattern(&public),
        ]
    });
    let bucket = r.string(&mut s, "bucket").unwrap_or_else(|| {
        env.get("S3_PERM")
            .filter(|b| !b.is_empty())
            .cloned()
            .unwrap_or_else(|| "insights-upload-perm-test".into())
    });
    let config = DownloaderConfig {
        kind,
        tmp_dir,
        max_archive_size: r.size(&mut s, "max_archive_size").unwrap_or(100 << 20),
        allowed_urls,
        allow_unsafe_links: r.bool(&mut s, "allow_unsafe_links").unwrap_or(false),
        connect_timeout: r
            .duration(&mut s, "connect_timeout")
            .unwrap_or(Duration::from_secs(5)),
        read_timeout: r
            .duration(&mut s, "read_timeout")
            .unwrap_or(Duration::from_secs(30)),
        total_timeout: r
            .duration(&mut s, "total_timeout")
            .unwrap_or(Duration::from_secs(300)),
        retries: r.u64(&mut s, "retries").unwrap_or(3) as u32,
        backoff: r
            .duration(&mut s, "backoff")
            .unwrap_or(Duration::from_millis(500)),
        max_backoff: r
            .duration(&mut s, "max_backoff")
            .unwrap_or(Duration::from_secs(8)),
        key_from: r
            .parsed(&mut s, "key_from", "request_id or url", |t| match t {
                "request_id" => Some(KeyFrom::RequestId),
                "url" => Some(KeyFrom::Url),
                _ => None,
            })
            .unwrap_or(KeyFrom::RequestId),
        allowed_buckets: r
            .list(&mut s, "allowed_buckets")
            .unwrap_or_else(|| vec![bucket.clone()]),
        bucket,
    };
    r.finish(s);
    config
}

fn read_engine(
    r: &mut Reader<'_>,
    service: &mut Section<'_>,
    plugins: Option<&Node>,
) -> EngineConfig {
    let node = service.take("engine").map(|(n, _)| n);
    let mut s = r.section(node, "service.engine");
    let kind = r
        .parsed(&mut s, "kind", "rules or external", |t| match t {
            "rules" => Some(EngineKind::Rules),
            "external" => Some(EngineKind::External),
            _ => None,
        })
        .unwrap_or(EngineKind::Rules);
    let timeout = r
        .duration(&mut s, "timeout")
        .unwrap_or(Duration::from_secs(120));
    let target_components = r.list(&mut s, "target_components").unwrap_or_default();
    let extract_node = s.take("extract").map(|(n, _)| n);
    let mut e = r.section(extract_node, "service.engine.extract");
    let extract = ExtractConfig {
        timeout: r
            .duration(&mut e, "timeout")
            .unwrap_or(Duration::from_secs(60)),
        max_unpacked_size: r.size(&mut e, "max_unpacked_size").unwrap_or(1 << 30),
        max_files: r.u64(&mut e, "max_files").unwrap_or(10_000),
        max_file_size: r.size(&mut e, "max_file_size").unwrap_or(100 << 20),
        max_depth: r.u64(&mut e, "max_depth").unwrap_or(32) as usize,
    };
    r.finish(e);
    let command = r.list(&mut s, "command").unwrap_or_default();
    let max_output = r.size(&mut s, "max_output").unwrap_or(16 << 20);
    let env = r.string_map(&mut s, "env");
    let input = r
        .parsed(&mut s, "input", "extracted or archive", |t| match t {
            "extracted" => Some(ExternalInput::Extracted),
            "archive" => Some(ExternalInput::Archive),
            _ => None,
        })
        .unwrap_or(ExternalInput::Extracted);
    r.finish(s);
    let plugins_json = plugins
        .map(Node::to_json)
        .unwrap_or(serde_json::Value::Null);
    EngineConfig {
        kind,
        timeout,
        target_components,
        extract,
        command,
        max_output,
        env,
        input,
        plugins_json,
    }
}

fn read_publisher(r: &mut Reader<'_>, service: &mut Section<'_>) -> PublisherConfig {
    let node = service.take("publisher").map(|(n, _)| n);
    let mut s = r.section(node, "service.publisher");
    let format = r
        .parsed(&mut s, "format", "ccx or insights", |t| match t {
            "ccx" => Some(Format::Ccx),
            "insights" => Some(Format::Insights),
            _ => None,
        })
        .unwrap_or(Format::Ccx);
    let key = r
        .parsed(&mut s, "key", "cluster_id or request_id", |t| match t {
            "cluster_id" => Some(KeyKind::ClusterId),
            "request_id" => Some(KeyKind::RequestId),
            _ => None,
        })
        .unwrap_or(match format {
            Format::Ccx => KeyKind::ClusterId,
            Format::Insights => KeyKind::RequestId,
        });
    let config = PublisherConfig {
        format,
        topic: r
            .string(&mut s, "topic")
            .unwrap_or_else(|| "ccx.ocp.results".into()),
        key,
        report_version: r.u64(&mut s, "report_version").unwrap_or(1),
        brokers: r.string(&mut s, "brokers"),
        kafka: r.string_map(&mut s, "kafka"),
    };
    r.finish(s);
    config
}

fn read_dead_letter(r: &mut Reader<'_>, service: &mut Section<'_>) -> DeadLetterConfig {
    let node = service.take("dead_letter").map(|(n, _)| n);
    let mut s = r.section(node, "service.dead_letter");
    let config = DeadLetterConfig {
        topic: r
            .string(&mut s, "topic")
            .unwrap_or_else(|| "intake.pipeline.dlq".into()),
        brokers: r.string(&mut s, "brokers"),
        kafka: r.string_map(&mut s, "kafka"),
    };
    r.finish(s);
    config
}

fn read_watchers(
    r: &mut Reader<'_>,
    service: &mut Section<'_>,
    format: Format,
) -> Vec<WatcherConfig> {
    let mut out = Vec::new();
    // on_missing's default depends on the format: ccx needs a cluster id, insights does not.
    let default_on_missing = match format {
        Format::Ccx => OnMissing::DeadLetter,
        Format::Insights => OnMissing::Continue,
    };
    let Some((node, path)) = service.take("watchers") else {
        // No watchers section: the cluster id watcher alone, as the format wants it.
        return vec![WatcherConfig::ClusterId {
            on_missing: default_on_missing,
        }];
    };
    let intake_rules::yaml::NodeKind::Seq(items) = &node.kind else {
        r.fail(&path, "expected a list");
        return out;
    };
    let mut seen = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut s = r.section(Some(item), &format!("{path}[{i}]"));
        let kind = r.string(&mut s, "kind").unwrap_or_default();
        if seen.contains(&kind) {
            r.fail(
                &format!("{path}[{i}].kind"),
                format!("watcher {kind} is listed twice"),
            );
        }
        seen.push(kind.clone());
        let w = match kind.as_str() {
            "cluster_id" => r
                .parsed(
                    &mut s,
                    "on_missing",
                    "dead_letter, skip or continue",
                    |t| match t {
                        "dead_letter" => Some(OnMissing::DeadLetter),
                        "skip" => Some(OnMissing::Skip),
                        "continue" => Some(OnMissing::Continue),
                        _ => None,
                    },
                )
                .map(|on_missing| WatcherConfig::ClusterId { on_missing })
                .or(Some(WatcherConfig::ClusterId {
                    on_missing: default_on_missing,
                })),
            "prometheus" => Some(WatcherConfig::Prometheus {
                listen: r
                    .parsed(&mut s, "listen", "a socket address", |t| t.parse().ok())
                    .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 8000))),
            }),
            "payload_status" => {
                let service_name = r
                    .string(&mut s, "service_name")
                    .unwrap_or_else(|| "intake-pipeline".into());
                if service_name.chars().count() > 128 {
                    r.fail(
                        &format!("{path}[{i}].service_name"),
                        "at most 128 characters",
                    );
                }
                Some(WatcherConfig::PayloadStatus {
                    topic: r
                        .string(&mut s, "topic")
                        .unwrap_or_else(|| "platform.payload-status".into()),
                    service_name,
                })
            }
            other => {
                r.fail(
                    &format!("{path}[{i}].kind"),
                    format!("unknown watcher {other:?} (expected cluster_id, prometheus or payload_status)"),
                );
                None
            }
        };
        out.extend(w);
        r.finish(s);
    }
    out
}

fn read_logging(r: &mut Reader<'_>, service: &mut Section<'_>, env: &EnvMap) -> LoggingConfig {
    let node = service.take("logging").map(|(n, _)| n);
    let mut s = r.section(node, "service.logging");
    if s.has("version") || s.has("handlers") || s.has("loggers") {
        r.fail(
            "service.logging",
            "a Python logging dictConfig is not supported: use level, format and filters",
        );
        return LoggingConfig {
            level: "info".into(),
            format: "text".into(),
            filters: BTreeMap::new(),
        };
    }
    let level = r
        .string(&mut s, "level")
        .or_else(|| env.get("LOG_LEVEL").cloned())
        .unwrap_or_else(|| "info".into());
    if !matches!(
        level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace"
    ) {
        r.fail(
            "service.logging.level",
            "expected error, warn, info, debug or trace",
        );
    }
    let format = r
        .string(&mut s, "format")
        .or_else(|| env.get("LOG_FORMAT").cloned())
        .unwrap_or_else(|| "text".into());
    if !matches!(format.as_str(), "text" | "json") {
        r.fail("service.logging.format", "expected text or json");
    }
    let filters = r.string_map(&mut s, "filters");
    r.finish(s);
    LoggingConfig {
        level,
        format,
        filters,
    }
}

/// Start-up checks across sections (rule files and the graph are checked when the engine is built).
fn check(r: &mut Reader<'_>, c: &PipelineConfig) {
    for (i, p) in c.downloader.allowed_urls.iter().enumerate() {
        if let Err(e) = regex::Regex::new(&crate::download::anchor(p)) {
            r.fail(
                &format!("service.downloader.allowed_urls[{i}]"),
                format!("invalid regex: {e}"),
            );
        }
    }
    if c.publisher.format == Format::Ccx {
        let ok = c.watchers.iter().any(|w| matches!(w, WatcherConfig::ClusterId { on_missing } if *on_missing != OnMissing::Continue));
        if !ok {
            r.fail(
                "service.watchers",
                "format: ccx needs a cluster_id watcher with on_missing dead_letter or skip",
            );
        }
    }
    for (section, map) in [
        ("service.consumer.kafka", &c.consumer.kafka),
        ("service.publisher.kafka", &c.publisher.kafka),
        ("service.dead_letter.kafka", &c.dead_letter.kafka),
    ] {
        for k in ["enable.auto.commit", "enable.auto.offset.store", "group.id"] {
            if map.contains_key(k) {
                r.fail(
                    &format!("{section}.{k}"),
                    "intake manages this setting; remove it",
                );
            }
        }
    }
    if c.engine.kind == EngineKind::External && c.engine.command.is_empty() {
        r.fail("service.engine.command", "required with kind: external");
    }
}
