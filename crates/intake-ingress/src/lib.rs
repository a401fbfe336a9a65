//! Ingress: the upload API and the consumer of validation responses.
//!
//! An upload is checked (request id, identity, deny list, test connection, concurrency, size, id
//! reuse), streamed into the quarantine bucket, announced on the bus, and answered 202 only once the
//! announce is acknowledged. Validators answer on `platform.upload.validation`; [`validation`] moves
//! the payload to perm (announcing it on `platform.upload.available`) or to reject.

pub mod announce;
pub mod download;
pub mod metrics;
pub mod openapi;
pub mod peer_answer;
pub mod pending;
pub mod refusals;
pub mod router;
pub mod selfprobe;
pub mod state;
pub mod statuses;
pub mod sweeper;
pub mod track;
pub mod upload;
pub mod validation;
pub mod version;

use std::time::Duration;

pub use router::router;
pub use state::{AppState, Parts};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What can stop ingress.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("registering metrics: {0}")]
    Metrics(#[source] prometheus::Error),
    #[error("building the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// Its source (the reason) follows in the error chain.
    #[error("{variable}: cannot listen on {addr}")]
    Listen {
        variable: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("validation consumer: {0}")]
    Bus(#[from] intake_bus::BusError),
    #[error(transparent)]
    Consumer(#[from] intake_bus::runtime::RuntimeError),
}

/// Serving settings that come from the general configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub grace: Duration,
}

/// Runs ingress (HTTP listeners and the validation consumer) until `cancel` fires, then drains:
/// readiness turns 503 and new uploads are refused at once, in-flight requests get `grace`.
pub async fn run(
    state: AppState,
    options: ServeOptions,
    cancel: CancellationToken,
) -> Result<(), IngressError> {
    let listen = state.config.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| IngressError::Listen {
            variable: "INGRESS_LISTEN",
            addr: listen.clone(),
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or(listen), "ingress listening");
    run_on(state, listener, options, cancel).await
}

/// [`run`] on a listener the caller bound (tests bind port 0).
#[allow(
    clippy::disallowed_methods,
    reason = "every handle spawned here is kept and awaited before run_on returns"
)]
pub async fn run_on(
    state: AppState,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    cancel: CancellationToken,
) -> Result<(), IngressError> {
    // Shutdown order: refuse new uploads first, then stop the listener after the grace.
    let draining = state.shutting_down.clone();
    let stop_http = CancellationToken::new();
    // Tasks that end with `cancel` and have nothing to report; awaited before returning.
    let mut background = tokio::task::JoinSet::new();
    {
        let cancel = cancel.clone();
        let draining = draining.clone();
        let stop_http = stop_http.clone();
        background.spawn(
            async move {
                cancel.cancelled().await;
                draining.cancel();
                stop_http.cancel();
            }
            .instrument(tracing::info_span!("ingress.shutdown")),
        );
    }
    let metrics_server = match state.config.metrics_listen.clone() {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|source| IngressError::Listen {
                    variable: "INGRESS_METRICS_LISTEN",
                    addr: addr.clone(),
                    source,
                })?;
            let app = router::metrics_router(state.clone());
            let stop = stop_http.clone();
            let limits = router::conn_limits(&state.config);
            Some(tokio::spawn(async move {
                intake_http::serve::serve_with(l, app, stop, limits, Duration::from_secs(1)).await
            }))
        }
        None => None,
    };
    let consumer = tokio::spawn(validation::run(state.clone(), cancel.clone()));
    let sweeper = tokio::spawn(sweeper::run(state.clone(), cancel.clone()));
    let retired = tokio::spawn(sweeper::sweep_retired(state.clone(), cancel.clone()));
    background.spawn(
        selfprobe::run(state.clone(), cancel.clone())
            .instrument(tracing::info_span!("ingress.selfprobe")),
    );
    let app = router(state.clone());
    let served = intake_http::serve::serve_with(
        listener,
        app,
        stop_http,
        router::conn_limits(&state.config),
        options.grace,
    )
    .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "ingress HTTP server failed");
    }
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    if let Err(e) = sweeper.await {
        tracing::error!(error = %e, "re-announce task failed");
    }
    if let Err(e) = retired.await {
        tracing::error!(error = %e, "retired-copy sweep failed");
    }
    let consumed = consumer.await;
    // Statuses promised by answers already sent go out before the process ends.
    state.statuses.drain(options.grace).await;
    while background.join_next().await.is_some() {}
    match consumed {
        Ok(result) => result?,
        Err(e) => tracing::error!(error = %e, "validation consumer task failed"),
    }
    Ok(())
}
