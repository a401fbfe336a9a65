//! The payload tracker: consumes `platform.payload-status`, stores every status in SQL, and tells
//! where a payload is, how long each service took and what failed, through a REST API, live events
//! and a web page (spec/tracker.md).
//!
//! ```text
//! bus ──▶ ingest (check → DLQ | batch ─▶ StatusStore (sqlite | postgres) ─▶ commit offsets)
//!                                            ▲
//! HTTP /api/v1, /v1, /, /track ──────────────┘   maintenance: partitions ahead + retention, hourly
//! ```
//!
//! Entry points: [`open_store`], [`run`] (everything, until cancelled), [`router`] (the HTTP surface
//! without a listener) and [`mock`](mod@mock) (realistic journeys onto the bus).

pub mod api;
pub mod check;
pub mod duration;
mod error;
pub mod ingest;
pub mod metrics;
pub mod mock;
pub mod model;
pub mod store;

use std::sync::Arc;

use intake_bus::{Bus, StartFrom, Subscription};
use intake_core::config::{BusConfig, GeneralConfig, TrackerConfig};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use api::{router, ApiSettings, AppState};
pub use error::TrackerError;
pub use metrics::Metrics;
pub use mock::{mock, MockReport};
pub use store::{StatusStore, StoreError};

/// How long the HTTP server waits for request headers.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens the configured status store (`TRACKER_DATABASE_URL`), creating and migrating its schema.
pub async fn open_store(config: &TrackerConfig) -> Result<Arc<dyn StatusStore>, TrackerError> {
    Ok(store::open(&config.database_url).await?)
}

/// The ingest settings a configuration implies.
pub fn ingest_settings(config: &TrackerConfig, bus_config: &BusConfig) -> ingest::IngestSettings {
    ingest::IngestSettings {
        dlq_topic: bus_config.topic(&bus_config.topics.payload_status_dlq),
        batch_size: config.batch_size,
        batch_max: config.batch_max.max(config.batch_size),
        writers: config
            .writers
            .unwrap_or(if config.database_url.starts_with("sqlite:") {
                ingest::DEFAULT_WRITERS_SQLITE
            } else {
                ingest::DEFAULT_WRITERS_POSTGRES
            }),
        batch_wait: config.batch_wait,
        retention: std::time::Duration::from_secs(u64::from(config.retention_days) * 86_400),
        future_skew: config.future_skew,
    }
}

/// Runs the tracker: maintenance (partitions, retention), the ingest loop, the HTTP server on
/// `config.listen` and the optional metrics listener. Returns when `cancel` fires and all of them
/// have drained.
pub async fn run(
    config: TrackerConfig,
    general: &GeneralConfig,
    bus_config: &BusConfig,
    bus: Arc<dyn Bus>,
    cancel: CancellationToken,
) -> Result<(), TrackerError> {
    let (store, waiting) = open_or_wait(&config).await?;
    if waiting.is_none() {
        start_up_maintenance(store.as_ref(), &config).await;
    }
    let metrics = Arc::new(Metrics::new()?);
    let topic = bus_config.topic(&bus_config.topics.payload_status);
    let consumer = bus
        .subscribe(Subscription {
            group: config.consumer_group.clone(),
            topics: vec![topic.clone()],
            start: StartFrom::Earliest,
        })
        .await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| TrackerError::Listen {
            variable: "TRACKER_LISTEN",
            address: config.listen.clone(),
            source,
        })?;
    let metrics_listener =
        match &config.metrics_listen {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.map_err(
                |source| TrackerError::Listen {
                    variable: "TRACKER_METRICS_LISTEN",
                    address: address.clone(),
                    source,
                },
            )?),
            None => None,
        };
    info!(listen = %config.listen, topic = %topic, engine = store.engine(), "tracker started");
    let ingestor = ingest::Ingestor::new(
        store.clone(),
        bus.clone(),
        metrics.clone(),
        ingest_settings(&config, bus_config),
    );
    let state = AppState::new(
        store.clone(),
        Some(bus.clone()),
        metrics,
        ApiSettings::new(
            general.identity_required,
            config.max_page_size,
            config.retention_days,
        ),
    )
    .with_shutdown(cancel.clone())
    .with_write_health(ingestor.write_health());
    let mut tasks = tokio::task::JoinSet::new();
    let fatal = Arc::new(std::sync::Mutex::new(None));
    if let Some(deferred) = waiting {
        let (config, fatal, c) = (config.clone(), fatal.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = open_later(&deferred, &config, &c).await {
                *fatal
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                c.cancel();
            }
        });
    }
    let c = cancel.clone();
    let ingest_fatal = fatal.clone();
    tasks.spawn(async move {
        if let Err(e) = ingest::run_loop(ingestor, consumer, c.clone()).await {
            tracing::error!(error = %e, "status ingestion stopped; stopping the tracker");
            *ingest_fatal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.into());
            c.cancel();
        }
    });
    let c = cancel.clone();
    let (retention, ahead) = (config.retention_days, config.partition_days_ahead);
    tasks.spawn(async move { ingest::maintenance::run_loop(store, retention, ahead, c).await });
    if let Some(listener) = metrics_listener {
        let router = api::metrics_router(state.clone());
        let c = cancel.clone();
        let grace = general.shutdown_grace;
        tasks.spawn(async move {
            if let Err(e) =
                intake_http::serve::serve(listener, router, c, HEADER_TIMEOUT, grace).await
            {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    let served = intake_http::serve::serve(
        listener,
        router(state),
        cancel.clone(),
        HEADER_TIMEOUT,
        general.shutdown_grace,
    )
    .await;
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    let fatal = fatal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(e) = fatal {
        return Err(e);
    }
    served.map_err(TrackerError::Serve)
}

/// The variable that names the status store's database.
pub const DATABASE_VARIABLE: &str = "TRACKER_DATABASE_URL";

/// Partitions ahead and retention once at start-up. Not fatal: a database that cannot write now (a
/// full disk) makes the tracker not-ready, not a crash loop; the hourly run tries again, and a
/// missing partition is made when a batch needs it.
async fn start_up_maintenance(store: &dyn StatusStore, config: &TrackerConfig) {
    if let Err(e) =
        ingest::maintenance::run_once(store, config.retention_days, config.partition_days_ahead)
            .await
    {
        tracing::warn!(error = %e, "start-up maintenance failed; it runs again within the hour");
    }
}

/// Why a PostgreSQL store is not open yet, naming where it points and the variable (never the
/// password).
fn waiting_reason(target: &str, cause: &StoreError) -> String {
    let cause = match cause {
        StoreError::Unavailable { .. } => cause.detail(),
        other => other.to_string(),
    };
    format!("PostgreSQL at {target} ({DATABASE_VARIABLE}) does not answer: {cause}")
}

/// Opens the store. A PostgreSQL server that does not answer is not fatal: the tracker then starts
/// with a [`store::deferred::DeferredStore`] (not ready, naming the database and the variable) that
/// [`open_later`] completes. Rejected credentials or a missing database are
/// [`TrackerError::Database`].
async fn open_or_wait(
    config: &TrackerConfig,
) -> Result<
    (
        Arc<dyn StatusStore>,
        Option<Arc<store::deferred::DeferredStore>>,
    ),
    TrackerError,
> {
    if config.database_url.starts_with("sqlite:") {
        return Ok((open_store(config).await?, None));
    }
    let target = store::postgres::describe_url(&config.database_url);
    match store::open(&config.database_url).await {
        Ok(store) => Ok((store, None)),
        Err(e @ StoreError::Config { .. }) => Err(TrackerError::Database {
            variable: DATABASE_VARIABLE,
            target,
            problem: store::postgres::refusal(&e),
        }),
        Err(e @ StoreError::Unavailable { .. }) => {
            let why = waiting_reason(&target, &e);
            tracing::warn!(database = %target, variable = DATABASE_VARIABLE, error = %e, "database does not answer; the tracker starts not-ready and keeps trying");
            let deferred = Arc::new(store::deferred::DeferredStore::new("postgres", why));
            Ok((deferred.clone(), Some(deferred)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Tries to open the database with backoff (1 s doubling to 30 s) until it answers, then migrates it,
/// runs the start-up maintenance and hands the store to `deferred`: the tracker becomes ready by
/// itself. Rejected credentials or a missing database end it with [`TrackerError::Database`].
async fn open_later(
    deferred: &store::deferred::DeferredStore,
    config: &TrackerConfig,
    cancel: &CancellationToken,
) -> Result<(), TrackerError> {
    let target = store::postgres::describe_url(&config.database_url);
    let mut delay = std::time::Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        match store::open(&config.database_url).await {
            Ok(store) => {
                start_up_maintenance(store.as_ref(), config).await;
                deferred.set(store);
                info!(database = %target, "database answers; tracker ready");
                return Ok(());
            }
            Err(e @ StoreError::Config { .. }) => {
                return Err(TrackerError::Database {
                    variable: DATABASE_VARIABLE,
                    target,
                    problem: store::postgres::refusal(&e),
                })
            }
            Err(e) => {
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
                tracing::warn!(database = %target, variable = DATABASE_VARIABLE, error = %e, retry_in = ?delay, "database still does not answer");
                deferred.set_waiting(waiting_reason(&target, &e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documented_batch_maximum_is_the_configured_default() {
        let env = intake_core::config::EnvMap::new();
        let config = intake_core::config::TrackerConfig::from_env(&env, std::path::Path::new("/d"))
            .expect("defaults");
        assert_eq!(config.batch_max, crate::ingest::DEFAULT_BATCH_MAX);
    }
}
