//! What every ingress handler and the validation consumer share, passed explicitly.

use std::sync::Arc;

use intake_bus::Bus;
use intake_core::config::{BusConfig, IngressConfig};
use intake_storage::{DownloadVerifier, PayloadStore};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::pending::Pending;
use crate::statuses::StatusPublisher;

/// Ingress's shared state.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub config: IngressConfig,
    pub bus_config: BusConfig,
    pub identity_required: bool,
    pub store: Arc<dyn PayloadStore>,
    /// Present with the localdisk driver, which serves `/download`.
    pub downloads: Option<DownloadVerifier>,
    pub bus: Arc<dyn Bus>,
    pub metrics: Metrics,
    pub statuses: StatusPublisher,
    /// One permit per upload in flight.
    pub uploads: Arc<Semaphore>,
    /// Upload slots per client address.
    pub clients: Arc<crate::upload::clients::ClientSlots>,
    /// Fires when shutdown starts: readiness turns 503 and new uploads are refused.
    pub shutting_down: CancellationToken,
    /// Client for `/track` calls to the tracker.
    pub http: reqwest::Client,
    /// Records of payloads without a verdict, for announcing them again (none: never again).
    pub pending: Option<Pending>,
    /// Whether `INGRESS_PUBLIC_URL` reaches this process (`/readyz`).
    pub probe: crate::selfprobe::SelfProbe,
}

/// The parts ingress is built from.
pub struct Parts {
    pub config: IngressConfig,
    pub bus_config: BusConfig,
    pub identity_required: bool,
    pub store: Arc<dyn PayloadStore>,
    pub downloads: Option<DownloadVerifier>,
    pub bus: Arc<dyn Bus>,
    pub shutting_down: CancellationToken,
    /// Where payloads without a verdict are recorded ([`crate::pending`]); `None` turns announcing
    /// again off.
    pub pending: Option<Pending>,
}

impl AppState {
    pub fn new(parts: Parts) -> Result<Self, crate::IngressError> {
        let metrics = Metrics::new().map_err(crate::IngressError::Metrics)?;
        let statuses = StatusPublisher::new(
            parts.bus.clone(),
            parts
                .bus_config
                .topic(&parts.bus_config.topics.payload_status),
            metrics.status_publish_failures.clone(),
        );
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(crate::IngressError::Http)?;
        Ok(Self {
            inner: Arc::new(Inner {
                uploads: Arc::new(Semaphore::new(parts.config.max_concurrent_uploads)),
                clients: crate::upload::clients::ClientSlots::new(
                    parts.config.max_uploads_per_client,
                ),
                config: parts.config,
                bus_config: parts.bus_config,
                identity_required: parts.identity_required,
                store: parts.store,
                downloads: parts.downloads,
                bus: parts.bus,
                metrics,
                statuses,
                shutting_down: parts.shutting_down,
                http,
                pending: parts.pending,
                probe: crate::selfprobe::SelfProbe::new(),
            }),
        })
    }

    /// Payloads this process accepted that wait for their verdict (none without a records
    /// folder); also what `ingress_backlog_payloads` shows from now on.
    pub fn backlog(&self) -> Option<u64> {
        let backlog = self.pending.as_ref()?.backlog();
        self.metrics
            .backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        Some(backlog)
    }

    /// Whether storage and the bus answer, each bounded by the readiness check timeout: what
    /// `/readyz` shows and what the validation consumer waits on during an outage.
    pub async fn dependencies(&self) -> (Result<(), String>, Result<(), String>) {
        use intake_http::health::bounded;
        tokio::join!(bounded(self.store.check()), bounded(self.bus.check()))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}
