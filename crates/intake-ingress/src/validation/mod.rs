//! The consumer of `platform.upload.validation` (messages.md, "How ingress processes a response"):
//! responses in order within a partition and partitions concurrently, the offset committed only once
//! every step succeeded, bad responses to the dead-letter topic, a pause with nothing committed while
//! storage or the bus is down.

mod dlq;
mod process;

use std::sync::Arc;

use async_trait::async_trait;
use intake_bus::retry::Backoff;
use intake_bus::runtime::{self, Handled, Handler, RuntimeError, Settings};
use intake_bus::{ReceivedMessage, StartFrom, Subscription};
use intake_core::messages::ValidationResponse;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub use process::Verdict;

/// Consumes validation responses until `cancel` fires, on intake-bus's consumer runtime: in order
/// within a partition for one request id, up to `INGRESS_VALIDATION_CONCURRENCY` different
/// payloads at once per partition (messages.md), partitions concurrently, each offset committed
/// once it and everything before it are applied or dead-lettered.
///
/// Running several at once is what batches them: their storage syncs and bus writes land in the
/// same group commits of the storage driver and the bus, and the offsets finished meanwhile are
/// committed together.
///
/// A step in progress is not interrupted by shutdown, so a verdict is never left half done.
/// Shutdown does end a wait (outage, retry backoff, unwritable DLQ): that message and every later
/// one stay uncommitted and come again, which is safe because every step is idempotent.
pub async fn run(state: AppState, cancel: CancellationToken) -> Result<(), RuntimeError> {
    let topic = state.bus_config.topic(&state.bus_config.topics.validation);
    let subscription = Subscription {
        group: state.config.consumer_group.clone(),
        topics: vec![topic.clone()],
        start: StartFrom::Earliest,
    };
    let consumer = intake_bus::retry::subscribe(state.bus.as_ref(), &subscription, &cancel)
        .await
        .map_err(|source| RuntimeError::Bus {
            consumer: CONSUMER,
            source,
        })?;
    let Some(consumer) = consumer else {
        return Ok(());
    };
    tracing::info!(%topic, group = %state.config.consumer_group, "consuming validation responses");
    let concurrency = state.config.validation_concurrency.max(1);
    let metrics = state.metrics.clone();
    let settings = Settings {
        per_partition: concurrency,
        lag: Some(Arc::new(move |topic, partition, lag| {
            metrics
                .consumer_lag
                .with_label_values(&[topic, partition])
                .set(lag);
        })),
        ..Settings::new(CONSUMER, concurrency + READ_AHEAD)
    };
    runtime::run(consumer, Arc::new(Responses(state)), settings, cancel).await
}

/// The consumer's name in logs and spans.
const CONSUMER: &str = "ingress-validation";

/// Messages read ahead beyond the ones being applied.
const READ_AHEAD: usize = 64;

/// Applies one validation response.
struct Responses(AppState);

#[async_trait]
impl Handler for Responses {
    /// Responses for the same payload are applied in the order they arrived.
    fn key(&self, message: &ReceivedMessage) -> Option<String> {
        ValidationResponse::parse(&message.value)
            .ok()
            .map(|response| response.request_id.to_string())
    }

    async fn handle(&self, message: ReceivedMessage, cancel: CancellationToken) -> Handled {
        let parsed = ValidationResponse::parse(&message.value);
        match process::handle(&self.0, &message, parsed, &cancel).await {
            process::Handled::Done => Handled::Done,
            process::Handled::Interrupted => {
                tracing::info!(
                    "shutdown while a validation response waited; it will be delivered again"
                );
                Handled::Abandoned
            }
        }
    }
}

/// [`AppState::dependencies`], or `None` if `cancel` fires first, so that a dependency that
/// stopped answering holds neither the consumer nor a shutdown waiting for it.
pub(crate) async fn check_health(
    state: &AppState,
    cancel: &CancellationToken,
) -> Option<(Result<(), String>, Result<(), String>)> {
    tokio::select! {
        _ = cancel.cancelled() => None,
        checked = state.dependencies() => Some(checked),
    }
}

/// Waits until storage and the bus both answer (as `/readyz` sees them): true then, false if
/// `cancel` fired first.
pub(crate) async fn wait_until_healthy(state: &AppState, cancel: &CancellationToken) -> bool {
    let mut backoff = Backoff::default();
    loop {
        let Some((storage, bus)) = check_health(state, cancel).await else {
            return false;
        };
        if storage.is_ok() && bus.is_ok() {
            return true;
        }
        tracing::warn!(
            storage = ?storage.err(),
            bus = ?bus.err(),
            "storage or bus unavailable; validation processing paused"
        );
        if !backoff.pause(cancel).await {
            return false;
        }
    }
}
