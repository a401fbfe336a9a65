//! Wiring configuration to components: each is opened from the environment and run as a task that
//! ends when the shared cancellation token fires.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use intake_bus::Bus;
use intake_core::config::{
    BusConfig, EnvMap, GeneralConfig, IngressConfig, StorageConfig, ValidatorConfig,
};
use intake_storage::Storage;
use tokio_util::sync::CancellationToken;

/// Everything read from the environment once at start-up.
pub struct Settings {
    pub env: EnvMap,
    pub general: GeneralConfig,
    /// Requested → real topic names from `ACG_CONFIG` (empty without it).
    pub topic_names: BTreeMap<String, String>,
}

impl Settings {
    pub fn bus(&self) -> anyhow::Result<BusConfig> {
        let mut config = BusConfig::from_env(&self.env, &self.general.data_dir)?;
        config.topic_names = self.topic_names.clone();
        Ok(config)
    }

    pub fn storage(&self) -> anyhow::Result<StorageConfig> {
        Ok(StorageConfig::from_env(&self.env, &self.general.data_dir)?)
    }

    /// The ingress configuration; a service whose announce topic is one of the configured topics
    /// is refused naming `INGRESS_VALID_SERVICES`.
    pub fn ingress(&self) -> anyhow::Result<IngressConfig> {
        let config = IngressConfig::from_env(&self.env)?;
        self.refuse_own_topics("INGRESS_VALID_SERVICES", &config.valid_services)?;
        Ok(config)
    }

    /// Refuses, naming `variable`, any service whose announce topic is one of the configured
    /// topics: a validator subscribed to it would consume intake's own messages.
    pub fn refuse_own_topics(&self, variable: &str, services: &[String]) -> anyhow::Result<()> {
        let bus = self.bus()?;
        let collisions: Vec<intake_core::config::BadVariable> = services
            .iter()
            .filter_map(|service| {
                let topic = bus.topics.service_collision(service)?;
                Some(intake_core::config::BadVariable {
                    name: variable.to_owned(),
                    problem: format!(
                        "{service:?} cannot be a service: its announce topic would be {topic}, \
                         one of intake's own"
                    ),
                })
            })
            .collect();
        if collisions.is_empty() {
            Ok(())
        } else {
            Err(intake_core::config::ConfigError(collisions).into())
        }
    }

    pub fn tracker(&self) -> anyhow::Result<intake_core::config::TrackerConfig> {
        Ok(intake_core::config::TrackerConfig::from_env(
            &self.env,
            &self.general.data_dir,
        )?)
    }

    /// The pipeline configuration: the file named, else the built-in default.
    pub fn pipeline(
        &self,
        path: Option<&std::path::Path>,
    ) -> anyhow::Result<intake_pipeline::PipelineConfig> {
        let loaded = match path {
            Some(p) => intake_pipeline::load_config(p, &self.env),
            None => {
                let cwd = std::env::current_dir().context("current directory")?;
                intake_pipeline::load_config_str(
                    intake_pipeline::default_config_yaml(),
                    &cwd,
                    &self.env,
                )
            }
        };
        // Typed, so that a bad pipeline configuration exits 2 (spec pipeline.md §2).
        loaded
            .map_err(intake_pipeline::PipelineError::from)
            .context("pipeline configuration")
    }

    pub fn validator(&self) -> anyhow::Result<ValidatorConfig> {
        let config = ValidatorConfig::from_env(&self.env)?;
        self.refuse_own_topics("VALIDATOR_SERVICES", &config.services)?;
        Ok(config)
    }
}

pub async fn open_bus(config: &BusConfig) -> anyhow::Result<Arc<dyn Bus>> {
    intake_bus::open(config).await.context("bus")
}

pub async fn open_storage(config: &StorageConfig, public_url: &str) -> anyhow::Result<Storage> {
    intake_storage::open(config, public_url)
        .await
        .map_err(|e| anyhow::anyhow!("storage: {e}"))
}

/// With `BUS_CREATE_TOPICS=true`, creates the topics a component uses before it starts, exactly as
/// `intake topics create` would (idempotent: existing topics are left as they are). Partition and
/// replication counts are the broker's defaults.
pub async fn create_topics_at_start(
    bus: &dyn Bus,
    bus_config: &BusConfig,
    topics: Vec<String>,
) -> anyhow::Result<()> {
    if !bus_config.create_topics || topics.is_empty() {
        return Ok(());
    }
    let specs: Vec<intake_bus::TopicSpec> = topics
        .into_iter()
        .map(|name| intake_bus::TopicSpec {
            name,
            partitions: BROKER_DEFAULT,
            replication: BROKER_DEFAULT as i16,
        })
        .collect();
    bus.create_topics(&specs)
        .await
        .context("creating topics at start-up (BUS_CREATE_TOPICS)")?;
    tracing::info!(topics = specs.len(), "topics present (BUS_CREATE_TOPICS)");
    Ok(())
}

/// A partition or replication count of -1 asks the broker for its configured default.
const BROKER_DEFAULT: i32 = -1;

/// Binds ingress's listener. Without `INGRESS_PUBLIC_URL`, the public URL then follows the bound
/// address, so download links name the port actually listened on (a port 0 included).
pub async fn bind_ingress(config: &mut IngressConfig) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("INGRESS_LISTEN: listening on {}", config.listen))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("INGRESS_LISTEN: the address bound for {}", config.listen))?;
    config.follow_bound(bound);
    tracing::info!(addr = %bound, public_url = %config.public_url, "ingress listening");
    Ok(listener)
}

/// Starts ingress (HTTP + validation consumer). With `pipeline_metrics` (the pipeline and the
/// validator run in the same process, `intake serve`), ingress's `/metrics` shows their metrics too
/// (spec pipeline.md §3.3).
#[allow(
    clippy::too_many_arguments,
    reason = "`serve` composes every part: each argument is one it hands on"
)]
pub fn spawn_ingress(
    settings: &Settings,
    config: IngressConfig,
    listener: tokio::net::TcpListener,
    bus_config: BusConfig,
    storage: Storage,
    bus: Arc<dyn Bus>,
    cancel: CancellationToken,
    pipeline_metrics: bool,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let state = intake_ingress::AppState::new(intake_ingress::Parts {
        config,
        bus_config,
        identity_required: settings.general.identity_required,
        store: storage.store,
        downloads: storage.downloads,
        bus,
        shutting_down: CancellationToken::new(),
        pending: Some(
            intake_ingress::pending::Pending::open(
                settings.general.data_dir.join("ingress-pending"),
            )
            .context("opening the folder of payloads awaiting a verdict")?,
        ),
    })?;
    if pipeline_metrics {
        intake_pipeline::metrics::register_into(&state.inner.metrics.registry)
            .context("registering the pipeline's metrics")?;
        intake_validator::metrics::register_into(&state.inner.metrics.registry)
            .context("registering the validator's metrics")?;
    }
    let options = intake_ingress::ServeOptions {
        grace: settings.general.shutdown_grace,
    };
    Ok(spawn_part("ingress", async move {
        intake_ingress::run_on(state, listener, options, cancel)
            .await
            .context("ingress")
    }))
}

/// Starts the reference validator.
pub fn spawn_validator(
    config: ValidatorConfig,
    bus_config: BusConfig,
    bus: Arc<dyn Bus>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    spawn_part("validator", async move {
        intake_validator::run(config, &bus_config, bus, cancel)
            .await
            .context("validator")
    })
}

/// Starts the payload tracker.
pub fn spawn_tracker(
    settings: &Settings,
    config: intake_core::config::TrackerConfig,
    bus_config: BusConfig,
    bus: Arc<dyn Bus>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let general = settings.general.clone();
    spawn_part("tracker", async move {
        intake_tracker::run(config, &general, &bus_config, bus, cancel)
            .await
            .map_err(|e| match e {
                // Rejected credentials or a missing database: a configuration error (exit 2).
                intake_tracker::TrackerError::Database {
                    variable,
                    target,
                    problem,
                } => anyhow::Error::from(intake_core::config::ConfigError(vec![
                    intake_core::config::BadVariable {
                        name: variable.to_owned(),
                        problem: format!("PostgreSQL at {target}: {problem}"),
                    },
                ])),
                other => anyhow::Error::from(other).context("tracker"),
            })
    })
}

/// Starts the rules pipeline.
pub fn spawn_pipeline(
    settings: &Settings,
    config: intake_pipeline::PipelineConfig,
    bus_config: BusConfig,
    bus: Arc<dyn Bus>,
    store: Option<Arc<dyn intake_storage::PayloadStore>>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let grace = settings.general.shutdown_grace;
    spawn_part("pipeline", async move {
        intake_pipeline::run_with_grace(config, &bus_config, bus, store, cancel, grace)
            .await
            .map_err(|e| anyhow::anyhow!("pipeline: {e}"))
    })
}

/// Spawns one part of the process in a `part` span naming it; the caller keeps the handle, and
/// [`join_all`] awaits it.
#[allow(
    clippy::disallowed_methods,
    reason = "the one spawn of the process's parts: each handle is returned and awaited by join_all"
)]
pub fn spawn_part<F>(name: &'static str, part: F) -> tokio::task::JoinHandle<anyhow::Result<()>>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    tokio::spawn(tracing::Instrument::instrument(
        part,
        tracing::info_span!("part", name),
    ))
}

/// Waits for SIGTERM/SIGINT and fires `cancel`.
#[allow(
    clippy::disallowed_methods,
    reason = "waits for the process's signal for as long as the process lives; nothing awaits it"
)]
pub fn cancel_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        intake_http::serve::shutdown_signal().await;
        tracing::info!("shutdown requested; draining");
        c.cancel();
    });
    cancel
}

/// Waits for every task; the first failure cancels the others and is returned after they end.
pub async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut pending: futures::stream::FuturesUnordered<_> = tasks.into_iter().collect();
    let mut first_error: Option<anyhow::Error> = None;
    while let Some(joined) = pending.next().await {
        let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            cancel.cancel();
            if first_error.is_none() {
                // Printed once, when the process ends with it.
                tracing::info!("a component stopped; shutting down the others");
                first_error = Some(e);
            } else {
                tracing::error!(error = format!("{e:#}"), "a component also stopped");
            }
        } else if !cancel.is_cancelled() {
            // A component ending on its own means the process can no longer do its job.
            tracing::warn!("a component ended; shutting down the others");
            cancel.cancel();
        }
    }
    first_error.map_or(Ok(()), Err)
}
