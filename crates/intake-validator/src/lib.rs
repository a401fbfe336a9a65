//! The reference validating service (`intake validator`): it reads announces, checks each
//! payload, and answers on the validation topic (spec messages.md, "Validation response").
//!
//! ```text
//! platform.upload.<service> ─┐                    ┌─▶ platform.upload.validation (key: request id)
//! platform.upload.announce ──┴▶ parse ▶ verdict ──┤      announce echoed + validation (+ reason)
//!   (service header filter)      │                └─▶ platform.payload-status (service VALIDATOR_NAME)
//!                                └ check mode: download (size cap, retries) ▶ intake_archive::inspect
//! ```
//!
//! * **Source** (`VALIDATOR_SOURCE`): `per-service` reads `platform.upload.<service>` for each of
//!   `VALIDATOR_SERVICES`; `announce` reads `platform.upload.announce` and skips (commits) any
//!   message whose `service` header is not one of them, without parsing its body.
//! * **Verdict** (`VALIDATOR_MODE`): `check` streams the `url` into a temporary file (announced
//!   `size`, `Content-Length` and the running count are held to `VALIDATOR_MAX_DOWNLOAD_SIZE`),
//!   then inspects it under `VALIDATOR_MAX_UNPACKED_SIZE` (also the per-file limit),
//!   `VALIDATOR_MAX_FILES`, depth 32 and whatever remains of `VALIDATOR_TIMEOUT` (which bounds
//!   one download attempt plus the inspection), refusing device files. A verdict is about
//!   content only: every failure to fetch (any HTTP error answer, a timeout, a refused or cut
//!   connection) is retried with backoff (200 ms doubling to 10 s, jittered) for
//!   `VALIDATOR_DOWNLOAD_RETRY_FOR`; past it, or when the announce has no usable URL, only status
//!   `error` is sent, no verdict, and the payload stays in quarantine for ingress to announce
//!   again. Cancellation stops the retries at once (the announce stays uncommitted).
//!   `pass-all` and `fail-all` (reason `fail-all mode`) skip both.
//! * **Response**: the announce object echoed field by field, plus `validation` (`success` or
//!   `failure`) and, on failure, `reason`: a sentence followed by the stable code in parentheses,
//!   e.g. `entry "../x" climbs out of the archive with '..' (unsafe_path)`. Codes are the archive
//!   codes of [`intake_archive::ArchiveError::code`] and the content download codes of spec
//!   pipeline.md §11 (`too_large`, `empty_archive`).
//! * **Statuses** (key: request id; `org_id`, `account` from the announce; fire-and-forget):
//!   `processing` when work starts, then one terminal status: `success` (`validation success:
//!   tar.gz, 3 files, 73 bytes unpacked`), `rejected` when the payload's content is bad
//!   (`validation failure: <reason>`), or `error` when the payload could not be checked (not
//!   fetched within the retry time, no URL, local I/O), which sends no response at all.
//! * **Commits**: an announce's offset is committed once its response is acknowledged (a bad
//!   announce, which is not ours to dead-letter, is logged and committed with nothing
//!   published). Up to `VALIDATOR_CONCURRENCY` payloads are checked at once in each partition,
//!   with 64 more read ahead; per partition, only the offset below which everything is finished
//!   is committed (intake-bus's consumer runtime), so a restart redelivers anything unfinished.
//! * **Shutdown**: when the token fires, no new message is taken, in-flight payloads finish
//!   (a response publish still failing is abandoned, uncommitted), finished offsets are
//!   committed and [`run`] returns.

mod announce;
mod download;
pub mod metrics;
mod respond;
mod verdict;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use intake_bus::runtime::{self, Handled, Handler, RuntimeError, Settings};
use intake_bus::{Bus, BusError, OutgoingMessage, ReceivedMessage, StartFrom, Subscription};
use intake_core::config::{BusConfig, ValidatorConfig, ValidatorSource};
use intake_core::messages::HEADER_SERVICE;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why the validator stopped.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("bus")]
    Bus(#[from] BusError),
    #[error("building the HTTP client")]
    Http(#[source] reqwest::Error),
    #[error("consuming announces")]
    Runtime(#[from] RuntimeError),
}

/// What the validator needs for every message.
struct Context {
    config: ValidatorConfig,
    bus: Arc<dyn Bus>,
    client: reqwest::Client,
    validation_topic: String,
    status_topic: String,
}

/// The topics read for `config`, as wire names.
pub fn source_topics(config: &ValidatorConfig, bus_config: &BusConfig) -> Vec<String> {
    match config.source {
        ValidatorSource::PerService => config
            .services
            .iter()
            .map(|s| bus_config.service_topic(s))
            .collect(),
        ValidatorSource::Announce => vec![bus_config.topic(&bus_config.topics.announce)],
    }
}

/// Runs the validator until `cancel` fires (then finishes in-flight work and returns `Ok`), or a
/// bus error that retrying cannot fix. Topics are not created here: with `BUS_CREATE_TOPICS` the
/// caller creates [`intake_bus::topics::topic_names`] at start-up.
pub async fn run(
    config: ValidatorConfig,
    bus_config: &BusConfig,
    bus: Arc<dyn Bus>,
    cancel: CancellationToken,
) -> Result<(), ValidatorError> {
    let topics = source_topics(&config, bus_config);
    let validation_topic = bus_config.topic(&bus_config.topics.validation);
    let status_topic = bus_config.topic(&bus_config.topics.payload_status);
    let subscription = Subscription {
        group: config.consumer_group.clone(),
        topics,
        start: StartFrom::Earliest,
    };
    let Some(consumer) = intake_bus::retry::subscribe(bus.as_ref(), &subscription, &cancel).await?
    else {
        return Ok(());
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(ValidatorError::Http)?;
    tracing::info!(
        mode = config.mode.as_str(),
        source = config.source.as_str(),
        group = %config.consumer_group,
        "validator started"
    );
    let concurrency = config.concurrency.max(1);
    let ctx = Arc::new(Context {
        config,
        bus,
        client,
        validation_topic,
        status_topic,
    });
    // `concurrency` validated at once per partition; more are read ahead, so that one slow
    // download (its offset not yet committable) does not stop the others from starting.
    let settings = Settings {
        per_partition: concurrency,
        lag: Some(Arc::new(|topic, partition, lag| {
            metrics::get()
                .consumer_lag
                .with_label_values(&[topic, partition])
                .set(lag);
        })),
        ..Settings::new("validator", concurrency + READ_AHEAD)
    };
    runtime::run(consumer, ctx, settings, cancel).await?;
    Ok(())
}

/// Announces delivered beyond the ones being validated.
const READ_AHEAD: usize = 64;

#[async_trait]
impl Handler for Context {
    async fn handle(&self, message: ReceivedMessage, cancel: CancellationToken) -> Handled {
        if !wanted(self, &message) {
            return Handled::Done;
        }
        handle(self, message, &cancel).await
    }
}

/// In announce mode, only messages whose `service` header names a configured service.
fn wanted(ctx: &Context, message: &ReceivedMessage) -> bool {
    if ctx.config.source == ValidatorSource::PerService {
        return true;
    }
    let service = message.header_str(HEADER_SERVICE).unwrap_or_default();
    ctx.config.services.iter().any(|s| s == service)
}

/// Validates one announce and publishes the response and statuses.
async fn handle(ctx: &Context, message: ReceivedMessage, cancel: &CancellationToken) -> Handled {
    let announce = match announce::parse(&message.value) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(
                topic = %message.topic,
                partition = message.partition,
                offset = message.offset,
                error = %e,
                "ignoring an announce that cannot be answered"
            );
            return Handled::Done;
        }
    };
    let span = tracing::info_span!(
        "validate",
        request_id = %announce.request_id,
        service = %announce.service,
        org_id = announce.org_id.as_deref().unwrap_or(""),
    );
    async move {
        let name = &ctx.config.name;
        let started = format!("validating (mode {})", ctx.config.mode.as_str());
        let processing =
            respond::status_message(&ctx.status_topic, name, &announce, "processing", started);
        // The check does not wait for its `processing` status; the response does (below), so
        // the tracker still sees `processing` before the verdict's status.
        let (_, verdict) = tokio::join!(
            respond::publish_status(&ctx.bus, processing),
            verdict::decide(&ctx.config, &ctx.client, &announce, cancel)
        );
        // Cancelled while the payload could not be fetched: left uncommitted, redelivered.
        let Some(verdict) = verdict else {
            return Handled::Abandoned;
        };
        match respond::response(&announce, &verdict) {
            Some(response) => {
                tracing::info!(
                    validation = verdict.validation().unwrap_or(""),
                    reason = verdict.reason().unwrap_or(""),
                    "verdict"
                );
                metrics::get().verdict(verdict.validation().unwrap_or(""), verdict.reason());
                let response = OutgoingMessage::new(&ctx.validation_topic, response)
                    .key(announce.request_id.as_str());
                if !respond::publish_acknowledged(&ctx.bus, response, cancel).await {
                    return Handled::Abandoned;
                }
            }
            None => tracing::warn!(
                reason = verdict.reason().unwrap_or(""),
                "payload not checked; no verdict sent"
            ),
        }
        let (status, status_msg) = respond::final_status(&verdict);
        let done = respond::status_message(&ctx.status_topic, name, &announce, status, status_msg);
        respond::publish_status(&ctx.bus, done).await;
        Handled::Done
    }
    .instrument(span)
    .await
}
