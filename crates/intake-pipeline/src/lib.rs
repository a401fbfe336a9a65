//! The rules pipeline (spec pipeline.md): a consumer takes announcements of available payloads,
//! a downloader fetches the archive into a per-message work directory (or, when small, into
//! memory), the engine extracts it safely and runs the rules, a publisher sends the report on, and
//! watchers observe every step.
//!
//! ```text
//! bus ──▶ runner (filter, workers, in-order commits)
//!           └─ flow: decode ─▶ download ─▶ extract ─▶ rules | external ─▶ publish ─▶ ack ─▶ commit
//!                      └──────────── any failure ─▶ dead letter ─▶ ack ─▶ commit
//! ```
//!
//! Entry points for the binary: [`load_config`], [`default_config_yaml`], [`run`], [`check`],
//! [`process_file`], [`replay()`].

pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod describe;
pub mod download;
pub mod engine;
pub mod error;
pub mod external;
pub mod flow;
pub mod metrics;
pub mod publish;
pub mod replay;
pub mod runner;
pub mod section_bus;
pub mod watchers;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use intake_bus::Bus;
use intake_core::config::BusConfig;
use intake_storage::PayloadStore;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use config::{
    default_config_yaml, load_config, load_config_str, ConfigErrors, Format, PipelineConfig,
};
pub use error::{Chain, PipelineError, Stage, StageError};
pub use replay::{ReplayOptions, Replayed};
pub use section_bus::{SectionBus, SectionBuses};

/// How long in-flight messages get at shutdown (`SHUTDOWN_GRACE`, default 30 s).
pub fn shutdown_grace(env: &intake_core::config::EnvMap) -> Duration {
    env.get("SHUTDOWN_GRACE")
        .and_then(|t| intake_core::config::units::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(30))
}

/// Validates everything start-up checks beyond the YAML (rule files, graph, external command)
/// and returns the component graph as text (`intake pipeline check`).
pub fn check(config: &PipelineConfig) -> Result<String, PipelineError> {
    Ok(engine::Engine::build(config)?.describe())
}

/// [`check`], plus the sections' buses derived over `bus_config`; the text starts with the
/// message flow (topics, downloader, engine, publisher, dead letters, watchers, buses).
pub fn check_with_bus(
    config: &PipelineConfig,
    bus_config: &BusConfig,
) -> Result<String, PipelineError> {
    let buses = SectionBuses::derive(config, bus_config)?;
    let graph = check(config)?;
    Ok(format!(
        "{}\n{graph}",
        describe::flow(config, bus_config, &buses)
    ))
}

/// Runs the pipeline until `cancel` fires; in-flight messages then get `SHUTDOWN_GRACE` (30 s)
/// from the process environment. Metrics go to the default Prometheus registry.
pub async fn run(
    config: PipelineConfig,
    bus_config: &BusConfig,
    bus: Arc<dyn Bus>,
    store: Option<Arc<dyn PayloadStore>>,
    cancel: CancellationToken,
) -> Result<(), PipelineError> {
    let grace = shutdown_grace(&intake_core::config::process_env());
    run_with_grace(config, bus_config, bus, store, cancel, grace).await
}

/// [`run`] with an explicit shutdown grace.
pub async fn run_with_grace(
    config: PipelineConfig,
    bus_config: &BusConfig,
    bus: Arc<dyn Bus>,
    store: Option<Arc<dyn PayloadStore>>,
    cancel: CancellationToken,
    grace: Duration,
) -> Result<(), PipelineError> {
    let topic = |t: &str| bus_config.topic(t);
    let engine = Arc::new(engine::Engine::build(&config)?);
    let downloader = download::Downloader::new(&config.downloader, store)?;
    let buses = SectionBuses::derive(&config, bus_config)?;
    let consumer_bus = buses.consumer.open(&bus, bus_config)?;
    let output_bus = buses.publisher.open(&bus, bus_config)?;
    let dlq_bus = buses.dead_letter.open(&bus, bus_config)?;
    let watchers = watchers::Watchers::new(&config.watchers, bus.clone(), topic);
    let output_topic = topic(&config.publisher.topic);
    let dlq_topic = topic(&config.dead_letter.topic);
    let inputs: Vec<String> = config.consumer.topics.iter().map(|t| topic(t)).collect();
    let mut statuses = Vec::new();
    for w in &config.watchers {
        if let config::WatcherConfig::PayloadStatus { topic: t, .. } = w {
            statuses.push(topic(t));
        }
    }
    create_topics(consumer_bus.as_ref(), &inputs).await;
    create_topics(output_bus.as_ref(), std::slice::from_ref(&output_topic)).await;
    create_topics(dlq_bus.as_ref(), std::slice::from_ref(&dlq_topic)).await;
    create_topics(bus.as_ref(), &statuses).await;
    // The metrics listener ends with the pipeline, however the pipeline ends.
    let stop_listener = cancel.child_token();
    let listener = match watchers.prometheus {
        Some(listen) => {
            Some(spawn_metrics_listener(listen, bus.clone(), stop_listener.clone()).await?)
        }
        None => None,
    };
    let cpu = tokio::sync::Semaphore::new(config.consumer.workers);
    let shared = Arc::new(flow::Shared {
        cpu,
        config,
        output_bus,
        dlq_bus,
        downloader,
        engine,
        watchers,
        output_topic,
        dlq_topic,
    });
    let subscription = runner::subscription(&shared, topic);
    tracing::info!(topics = ?subscription.topics, group = %subscription.group, "pipeline consuming");
    let consumed =
        match intake_bus::retry::subscribe(consumer_bus.as_ref(), &subscription, &cancel).await {
            Ok(Some(consumer)) => runner::consume(shared, consumer, cancel, grace).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
    stop_listener.cancel();
    if let Some(listener) = listener {
        if let Err(e) = listener.await {
            tracing::error!(error = %Chain(&e), "the metrics listener failed");
        }
    }
    consumed
}

/// Creates `names` (wire names) with one partition; a failure is only logged (the topics may
/// exist already, or be managed elsewhere).
async fn create_topics(bus: &dyn Bus, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let specs: Vec<intake_bus::TopicSpec> = names
        .iter()
        .map(|name| intake_bus::TopicSpec {
            name: name.clone(),
            partitions: 1,
            replication: 1,
        })
        .collect();
    if let Err(e) = bus.create_topics(&specs).await {
        tracing::warn!(error = %Chain(&e), topics = ?names, "cannot create the pipeline's topics");
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the handle is returned to `run`, which stops the task and awaits it"
)]
async fn spawn_metrics_listener(
    listen: std::net::SocketAddr,
    bus: Arc<dyn Bus>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, PipelineError> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                let mut out = Vec::new();
                let _ = prometheus::Encoder::encode(
                    &prometheus::TextEncoder::new(),
                    &prometheus::gather(),
                    &mut out,
                );
                (
                    [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    out,
                )
            }),
        )
        .route(
            "/livez",
            get(|| async {
                if metrics::get().abandoned_threads.get() > 4 {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "abandoned threads",
                    )
                } else {
                    (axum::http::StatusCode::OK, "ok")
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let bus = bus.clone();
                async move {
                    match intake_http::health::bounded(bus.check()).await {
                        Ok(()) => (axum::http::StatusCode::OK, "ok"),
                        Err(_) => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "bus unavailable",
                        ),
                    }
                }
            }),
        );
    let serve = async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await
        {
            tracing::error!(error = %Chain(&e), "the metrics listener stopped");
        }
    };
    Ok(tokio::spawn(tracing::Instrument::instrument(
        serve,
        tracing::info_span!("pipeline.metrics_listener"),
    )))
}

/// Output of [`process_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// The report itself.
    Report,
    /// The ccx message (parsed back to JSON).
    Ccx,
}

/// Extraction + engine on a local archive, no bus (`intake pipeline process`).
pub async fn process_file(
    config: &PipelineConfig,
    archive: &Path,
    org_id: &str,
    format: OutputFormat,
) -> Result<Value, PipelineError> {
    let engine = Arc::new(engine::Engine::build(config)?);
    let work = download::WorkDir::new(&std::env::temp_dir())?;
    let deadline = Instant::now() + engine.timeout;
    let dir = work.path().join("extracted");
    let (e, a) = (engine.clone(), archive.to_path_buf());
    let tree = tokio::task::spawn_blocking(move || e.extract(&a, &dir, deadline))
        .await
        .map_err(|e| PipelineError::setup_from("", e))??;
    let report = match engine.external() {
        Some(ext) => {
            let job = external::Job {
                request_id: None,
                org_id,
                account: None,
                cluster_id: tree.cluster_id.as_deref(),
                extracted_path: &tree.root,
                archive_path: archive,
                work_dir: work.path(),
                timeout: engine.timeout,
            };
            ext.run(&job).await?
        }
        None => {
            let (e, t) = (engine.clone(), tree.clone());
            tokio::task::spawn_blocking(move || e.run_rules(&t, deadline))
                .await
                .map_err(|e| PipelineError::setup_from("", e))??
                .report
        }
    };
    match format {
        OutputFormat::Report => Ok(report),
        OutputFormat::Ccx => {
            let now = intake_core::time::now_string();
            let subject = publish::Subject {
                org_id,
                cluster_id: tree.cluster_id.as_deref(),
                timestamp: &now,
                ..Default::default()
            };
            let out = publish::render(&config.publisher, &report, &subject)?;
            serde_json::from_slice(&out.value).map_err(|e| PipelineError::setup_from("", e))
        }
    }
}

/// Replays dead letters of the configured DLQ (`intake pipeline replay`): read on the
/// dead_letter section's bus, produced again on the consumer section's bus.
pub async fn replay(
    config: &PipelineConfig,
    bus_config: &BusConfig,
    bus: Arc<dyn Bus>,
    options: &ReplayOptions,
) -> Result<Vec<Replayed>, PipelineError> {
    let buses = SectionBuses::derive(config, bus_config)?;
    let from = buses.dead_letter.open(&bus, bus_config)?;
    let to = buses.consumer.open(&bus, bus_config)?;
    replay::replay_between(
        from,
        to,
        &bus_config.topic(&config.dead_letter.topic),
        options,
    )
    .await
}
