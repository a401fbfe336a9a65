//! The configuration file as written (spec pipeline.md §3.2): every key and its type, read by
//! serde over the YAML tree; then resolved into [`PipelineConfig`] with the defaults that depend
//! on the environment or on another key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use intake_core::config::{units, EnvMap};
use intake_rules::yaml::de::KeyPath;
use intake_rules::ComponentConfig;
use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{localdisk_url_pattern, S3_PRESIGNED_PATTERN};
use super::{
    ConsumerConfig, DeadLetterConfig, DownloaderConfig, DownloaderKind, EngineConfig, EngineKind,
    ExternalInput, ExtractConfig, Format, KeyFrom, KeyKind, LoggingConfig, OnMissing,
    PipelineConfig, PluginsConfig, PublisherConfig, WatcherConfig, DEFAULT_MAX_IN_FLIGHT,
};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct File {
    plugins: Plugins,
    service: Service,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Plugins {
    default_component_enabled: Option<bool>,
    packages: Option<List>,
    configs: Vec<Component>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Component {
    name: String,
    enabled: Option<bool>,
    tags: Option<List>,
    links: Option<Map<String, Value>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Service {
    consumer: Consumer,
    downloader: Downloader,
    engine: Engine,
    publisher: Publisher,
    dead_letter: DeadLetter,
    watchers: Option<Vec<Watcher>>,
    logging: Logging,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Consumer {
    topics: Option<List>,
    group_id: Option<String>,
    services: Option<List>,
    max_record_age: Option<Dur>,
    workers: Option<usize>,
    max_in_flight: Option<usize>,
    brokers: Option<String>,
    kafka: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Downloader {
    kind: Option<DownloaderKind>,
    tmp_dir: Option<PathBuf>,
    max_archive_size: Option<Size>,
    max_in_memory: Option<Size>,
    allowed_urls: Option<List>,
    allow_unsafe_links: Option<bool>,
    connect_timeout: Option<Dur>,
    read_timeout: Option<Dur>,
    total_timeout: Option<Dur>,
    retries: Option<u32>,
    backoff: Option<Dur>,
    max_backoff: Option<Dur>,
    bucket: Option<String>,
    key_from: Option<KeyFrom>,
    allowed_buckets: Option<List>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Engine {
    kind: Option<EngineKind>,
    timeout: Option<Dur>,
    target_components: Option<List>,
    extract: Extract,
    command: Option<List>,
    max_output: Option<Size>,
    env: BTreeMap<String, String>,
    input: Option<ExternalInput>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Extract {
    timeout: Option<Dur>,
    max_unpacked_size: Option<Size>,
    max_files: Option<u64>,
    max_file_size: Option<Size>,
    max_depth: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Publisher {
    format: Option<Format>,
    topic: Option<String>,
    key: Option<KeyKind>,
    report_version: Option<u64>,
    brokers: Option<String>,
    kafka: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct DeadLetter {
    topic: Option<String>,
    brokers: Option<String>,
    kafka: BTreeMap<String, String>,
}

/// One watcher, every kind's keys together: the kind's own are checked in [`Watcher::resolve`].
/// (A serde-tagged enum would buffer the item and lose each scalar's text, and with it the
/// declared type and `${VAR}` substitution.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Watcher {
    kind: WatcherKind,
    on_missing: Option<OnMissing>,
    listen: Option<SocketAddr>,
    topic: Option<String>,
    service_name: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum WatcherKind {
    ClusterId,
    Prometheus,
    PayloadStatus,
}

impl WatcherKind {
    fn name(self) -> &'static str {
        match self {
            WatcherKind::ClusterId => "cluster_id",
            WatcherKind::Prometheus => "prometheus",
            WatcherKind::PayloadStatus => "payload_status",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Logging {
    level: Option<String>,
    format: Option<String>,
    filters: BTreeMap<String, String>,
}

/// A list of strings: a YAML list, or a scalar split on `,` (trimmed, empties dropped).
struct List(Vec<String>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = List;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list, or a comma-separated string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<List, E> {
                let items = v.split(',').map(str::trim).filter(|t| !t.is_empty());
                Ok(List(items.map(str::to_owned).collect()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(List(out))
            }
        }
        deserializer.deserialize_seq(V)
    }
}

/// A scalar read by `parse`; `expected` names its form in errors.
fn parsed<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    expected: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, D::Error> {
    struct V<T> {
        expected: &'static str,
        parse: fn(&str) -> Option<T>,
    }
    impl<T> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expected)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v.trim()).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
        }
    }
    deserializer.deserialize_str(V { expected, parse })
}

/// A duration: `50ms`, `30s`, `5m`, `24h`, `7d` or bare seconds.
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expected = "a duration such as 50ms, 30s, 5m, 24h, 7d";
        parsed(deserializer, expected, |t| units::parse_duration(t).ok()).map(Dur)
    }
}

/// A size in bytes: `100MiB`, `1.5K`, `1048576`.
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expected = "a size such as 100MiB or 1048576";
        parsed(deserializer, expected, |t| units::parse_size(t).ok()).map(Size)
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl File {
    /// The configuration, defaults filled in; `plugins_json` is the `plugins` section as written.
    /// Problems only the whole watcher list shows go to `issues`.
    pub(super) fn resolve(
        self,
        base_dir: &Path,
        env: &EnvMap,
        plugins_json: Value,
        issues: &mut Vec<(KeyPath, String)>,
    ) -> PipelineConfig {
        let s = self.service;
        let format = s.publisher.format.unwrap_or(Format::Ccx);
        PipelineConfig {
            base_dir: base_dir.to_path_buf(),
            plugins: self.plugins.resolve(env),
            consumer: s.consumer.resolve(),
            downloader: s.downloader.resolve(env),
            engine: s.engine.resolve(plugins_json),
            publisher: s.publisher.resolve(format),
            dead_letter: DeadLetterConfig {
                topic: s
                    .dead_letter
                    .topic
                    .unwrap_or_else(|| "intake.pipeline.dlq".into()),
                brokers: s.dead_letter.brokers,
                kafka: s.dead_letter.kafka,
            },
            watchers: Watcher::resolve_all(s.watchers, format, issues),
            logging: LoggingConfig {
                level: (s.logging.level)
                    .or_else(|| env.get("LOG_LEVEL").cloned())
                    .unwrap_or_else(|| "info".into()),
                format: (s.logging.format)
                    .or_else(|| env.get("LOG_FORMAT").cloned())
                    .unwrap_or_else(|| "text".into()),
                filters: s.logging.filters,
            },
        }
    }
}

impl Plugins {
    fn resolve(self, env: &EnvMap) -> PluginsConfig {
        let mut packages = self
            .packages
            .map_or_else(|| vec!["intake_ocp".into()], |l| l.0);
        if let Some(extra) = env.get("EXTRA_PACKAGES") {
            let extra = extra.split(',').map(str::trim).filter(|t| !t.is_empty());
            packages.extend(extra.map(str::to_owned));
        }
        PluginsConfig {
            default_component_enabled: self.default_component_enabled.unwrap_or(true),
            packages,
            configs: (self.configs.into_iter())
                .map(|c| ComponentConfig {
                    name: c.name,
                    enabled: c.enabled,
                    tags: c.tags.map(|l| l.0),
                    links: c.links,
                })
                .collect(),
        }
    }
}

impl Consumer {
    fn resolve(self) -> ConsumerConfig {
        let workers = self.workers.unwrap_or_else(cpus);
        ConsumerConfig {
            topics: (self.topics).map_or_else(|| vec!["platform.upload.available".into()], |l| l.0),
            group_id: self.group_id.unwrap_or_else(|| "intake-pipeline".into()),
            services: self.services.map(|l| l.0).unwrap_or_default(),
            max_record_age: duration_or(self.max_record_age, Duration::from_secs(7200)),
            workers,
            max_in_flight: (self.max_in_flight)
                .unwrap_or_else(|| DEFAULT_MAX_IN_FLIGHT.max(2 * workers))
                .max(1),
            brokers: self.brokers,
            kafka: self.kafka,
        }
    }
}

fn duration_or(value: Option<Dur>, default: Duration) -> Duration {
    value.map_or(default, |d| d.0)
}

fn size_or(value: Option<Size>, default: u64) -> u64 {
    value.map_or(default, |s| s.0)
}

impl Downloader {
    fn resolve(self, env: &EnvMap) -> DownloaderConfig {
        let set = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        let data_dir = set("INTAKE_DATA_DIR").unwrap_or_else(|| "./data".into());
        // The links ingress issues: INGRESS_PUBLIC_URL, else the URL following INGRESS_LISTEN.
        let public = intake_core::config::public_url_from(env);
        let bucket = (self.bucket)
            .or_else(|| set("S3_PERM"))
            .unwrap_or_else(|| "insights-upload-perm-test".into());
        DownloaderConfig {
            kind: self.kind.unwrap_or(DownloaderKind::Http),
            tmp_dir: (self.tmp_dir).unwrap_or_else(|| Path::new(&data_dir).join("pipeline/tmp")),
            max_archive_size: size_or(self.max_archive_size, 100 << 20),
            max_in_memory: size_or(self.max_in_memory, 8 << 20),
            allowed_urls: self.allowed_urls.map_or_else(
                || {
                    vec![
                        S3_PRESIGNED_PATTERN.to_owned(),
                        localdisk_url_pattern(&public),
                    ]
                },
                |l| l.0,
            ),
            allow_unsafe_links: self.allow_unsafe_links.unwrap_or(false),
            connect_timeout: duration_or(self.connect_timeout, Duration::from_secs(5)),
            read_timeout: duration_or(self.read_timeout, Duration::from_secs(30)),
            total_timeout: duration_or(self.total_timeout, Duration::from_secs(300)),
            retries: self.retries.unwrap_or(3),
            backoff: duration_or(self.backoff, Duration::from_millis(500)),
            max_backoff: duration_or(self.max_backoff, Duration::from_secs(8)),
            key_from: self.key_from.unwrap_or(KeyFrom::RequestId),
            allowed_buckets: (self.allowed_buckets).map_or_else(|| vec![bucket.clone()], |l| l.0),
            bucket,
        }
    }
}

impl Engine {
    fn resolve(self, plugins_json: Value) -> EngineConfig {
        let e = self.extract;
        EngineConfig {
            kind: self.kind.unwrap_or(EngineKind::Rules),
            timeout: duration_or(self.timeout, Duration::from_secs(120)),
            target_components: self.target_components.map(|l| l.0).unwrap_or_default(),
            extract: ExtractConfig {
                timeout: duration_or(e.timeout, Duration::from_secs(60)),
                max_unpacked_size: size_or(e.max_unpacked_size, 1 << 30),
                max_files: e.max_files.unwrap_or(10_000),
                max_file_size: size_or(e.max_file_size, 100 << 20),
                max_depth: e.max_depth.unwrap_or(32),
            },
            command: self.command.map(|l| l.0).unwrap_or_default(),
            max_output: size_or(self.max_output, 16 << 20),
            env: self.env,
            input: self.input.unwrap_or(ExternalInput::Extracted),
            plugins_json,
        }
    }
}

impl Publisher {
    fn resolve(self, format: Format) -> PublisherConfig {
        PublisherConfig {
            format,
            topic: self.topic.unwrap_or_else(|| "ccx.ocp.results".into()),
            key: self.key.unwrap_or(match format {
                Format::Ccx => KeyKind::ClusterId,
                Format::Insights => KeyKind::RequestId,
            }),
            report_version: self.report_version.unwrap_or(1),
            brokers: self.brokers,
            kafka: self.kafka,
        }
    }
}

impl Watcher {
    /// The watchers; none listed: the cluster id watcher alone, as the format wants it.
    fn resolve_all(
        watchers: Option<Vec<Watcher>>,
        format: Format,
        issues: &mut Vec<(KeyPath, String)>,
    ) -> Vec<WatcherConfig> {
        // on_missing's default depends on the format: ccx needs a cluster id, insights does not.
        let on_missing = match format {
            Format::Ccx => OnMissing::DeadLetter,
            Format::Insights => OnMissing::Continue,
        };
        let Some(watchers) = watchers else {
            return vec![WatcherConfig::ClusterId { on_missing }];
        };
        let list = KeyPath::default().key("service").key("watchers");
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (i, w) in watchers.into_iter().enumerate() {
            let at = list.index(i);
            for key in w.foreign_keys() {
                issues.push((
                    at.key(key),
                    format!("unknown key for a {} watcher", w.kind.name()),
                ));
            }
            if seen.contains(&w.kind) {
                let message = format!("watcher {} is listed twice", w.kind.name());
                issues.push((at.key("kind"), message));
            }
            seen.push(w.kind);
            if w.service_name
                .as_ref()
                .is_some_and(|n| n.chars().count() > 128)
            {
                issues.push((at.key("service_name"), "at most 128 characters".into()));
            }
            out.push(w.resolve(on_missing));
        }
        out
    }

    fn resolve(self, default_on_missing: OnMissing) -> WatcherConfig {
        match self.kind {
            WatcherKind::ClusterId => WatcherConfig::ClusterId {
                on_missing: self.on_missing.unwrap_or(default_on_missing),
            },
            WatcherKind::Prometheus => WatcherConfig::Prometheus {
                listen: (self.listen).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8000))),
            },
            WatcherKind::PayloadStatus => WatcherConfig::PayloadStatus {
                topic: self
                    .topic
                    .unwrap_or_else(|| "platform.payload-status".into()),
                service_name: self
                    .service_name
                    .unwrap_or_else(|| "intake-pipeline".into()),
            },
        }
    }

    /// The keys set that belong to another kind.
    fn foreign_keys(&self) -> Vec<&'static str> {
        let own: &[&str] = match self.kind {
            WatcherKind::ClusterId => &["on_missing"],
            WatcherKind::Prometheus => &["listen"],
            WatcherKind::PayloadStatus => &["topic", "service_name"],
        };
        [
            ("on_missing", self.on_missing.is_some()),
            ("listen", self.listen.is_some()),
            ("topic", self.topic.is_some()),
            ("service_name", self.service_name.is_some()),
        ]
        .into_iter()
        .filter(|(k, set)| *set && !own.contains(k))
        .map(|(k, _)| k)
        .collect()
    }
}
