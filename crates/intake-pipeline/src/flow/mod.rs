//! One message's path: filter → decode → download → extract → rules → publish, or a dead letter;
//! statuses and metrics along the way. Returns once the message may be committed.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use intake_bus::{Bus, OutgoingMessage, ReceivedMessage};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{OnMissing, PipelineConfig};
use crate::decode::{self, Decoded};
use crate::download::{Body, Downloader, Fetch};
use crate::engine::Engine;
use crate::error::{Chain, Stage, StageError};
use crate::publish::{self, Subject};
use crate::watchers::{StatusSubject, Watchers};

mod judge;

/// Everything the workers share.
pub struct Shared {
    pub config: PipelineConfig,
    /// The publisher section's bus (the shared one unless it sets `brokers`/`kafka`).
    pub output_bus: Arc<dyn Bus>,
    /// The dead_letter section's bus.
    pub dlq_bus: Arc<dyn Bus>,
    pub downloader: Downloader,
    pub engine: Arc<Engine>,
    pub watchers: Watchers,
    /// Wire names.
    pub output_topic: String,
    pub dlq_topic: String,
    /// `workers` permits: held only around the CPU-bound steps (extraction, rules, an external
    /// engine), so that waiting on downloads and the broker never idles the cores.
    pub cpu: Semaphore,
}

/// How a message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Filtered(&'static str),
    Published,
    DeadLettered(String),
    /// Cancelled at shutdown: not to be committed.
    Cancelled,
}

/// What extraction found out, in memory or on disk.
struct Facts {
    kind: &'static str,
    cluster_id: Option<String>,
    cluster_id_problem: Option<String>,
}

/// Per-message state; nothing per message lives in a shared field.
#[derive(Debug, Default)]
pub struct MessageContext {
    pub archive: &'static str,
    pub status: StatusSubject,
}

enum Step {
    Done(Ended),
    Fail(StageError),
}

impl Shared {
    /// Processes one message to its end.
    pub async fn handle(&self, msg: &ReceivedMessage, cancel: &CancellationToken) -> Ended {
        // Inside the runtime's `message` span (topic, partition, offset).
        let span = tracing::info_span!(
            "pipeline",
            request_id = tracing::field::Empty,
            org_id = tracing::field::Empty
        );
        async {
            let m = crate::metrics::get();
            m.received.inc();
            let now = chrono::Utc::now().timestamp_millis();
            if let Some(f) = decode::filter(msg, &self.config.consumer, now) {
                m.filtered.with_label_values(&[f.as_str()]).inc();
                return Ended::Filtered(f.as_str());
            }
            let mut cx = MessageContext {
                archive: "unknown",
                ..MessageContext::default()
            };
            let step = AssertUnwindSafe(self.steps(msg, &mut cx, cancel))
                .catch_unwind()
                .await;
            let err = match step {
                Ok(Step::Done(e)) => return e,
                Ok(Step::Fail(e)) => e,
                Err(_) => StageError::internal(Stage::Rules, "a panic in the pipeline"),
            };
            if cancel.is_cancelled() {
                return Ended::Cancelled;
            }
            self.dead_letter(msg, &cx, err, cancel).await
        }
        .instrument(span)
        .await
    }

    async fn dead_letter(
        &self,
        msg: &ReceivedMessage,
        cx: &MessageContext,
        err: StageError,
        cancel: &CancellationToken,
    ) -> Ended {
        let m = crate::metrics::get();
        tracing::warn!(
            stage = err.stage.as_str(),
            reason = err.reason,
            class = err.class.as_str(),
            detail = %err.detail,
            cause = Chain::sources(&err).map(tracing::field::display),
            "dead-lettering"
        );
        let record = crate::dead_letter::record(&self.dlq_topic, msg, &err);
        if intake_bus::retry::publish(self.dlq_bus.as_ref(), record, cancel)
            .await
            .is_err()
        {
            return Ended::Cancelled;
        }
        m.dead_letters
            .with_label_values(&[err.stage.as_str(), err.reason])
            .inc();
        m.failures
            .with_label_values(&[cx.archive, err.stage.as_str()])
            .inc();
        if err.stage == Stage::Decode {
            m.not_handled.inc();
        }
        if err.reason == "deadline_exceeded" {
            m.timeouts.with_label_values(&[cx.archive]).inc();
        }
        self.watchers
            .status(
                &cx.status,
                "error",
                &format!("{}: {}: {}", err.stage.as_str(), err.reason, err.detail),
            )
            .await;
        Ended::DeadLettered(err.reason.to_owned())
    }

    async fn steps(
        &self,
        msg: &ReceivedMessage,
        cx: &mut MessageContext,
        cancel: &CancellationToken,
    ) -> Step {
        let d = match decode::decode(msg, self.config.publisher.format) {
            Ok(d) => d,
            Err(e) => return Step::Fail(e),
        };
        let span = tracing::Span::current();
        span.record("request_id", d.request_id.as_deref().unwrap_or(""));
        span.record("org_id", d.org_id.as_str());
        cx.status = StatusSubject {
            request_id: d.request_id.clone(),
            org_id: d.org_id.clone(),
            account: d.account.clone(),
            cluster_id: d.identity_cluster_id.clone(),
        };
        self.watchers
            .status(
                &cx.status,
                "received",
                &format!("received from {}", msg.topic),
            )
            .await;
        match self.process(&d, cx, cancel).await {
            Ok(Some(report)) => self.publish(msg, &d, cx, report, cancel).await,
            Ok(None) => Step::Done(Ended::Filtered("no_cluster_id")),
            Err(e) => Step::Fail(e),
        }
    }

    /// Download, extract, rules; `None` when the message ends quietly (no cluster id, `skip`).
    ///
    /// A small archive (`max_in_memory`, built-in rules) stays in memory and is extracted and
    /// judged in one trip to the blocking pool; any other goes through a work directory.
    async fn process(
        &self,
        d: &Decoded,
        cx: &mut MessageContext,
        cancel: &CancellationToken,
    ) -> Result<Option<Value>, StageError> {
        let m = crate::metrics::get();
        self.watchers
            .status(&cx.status, "processing", "downloading archive")
            .await;
        let started = Instant::now();
        let fetch = Fetch {
            url: &d.url,
            request_id: d.request_id.as_deref(),
            declared_size: d.size,
        };
        let in_memory = if self.engine.reads_memory() {
            self.config.downloader.max_in_memory
        } else {
            0
        };
        let downloaded = tokio::select! {
            r = self.downloader.fetch_body(&fetch, in_memory) => r?,
            _ = cancel.cancelled() => return Err(StageError::internal(Stage::Download, "cancelled")),
        };
        m.download_duration
            .with_label_values::<&str>(&[])
            .observe(started.elapsed().as_secs_f64());
        m.downloaded.inc();
        let _cpu = tokio::select! {
            permit = self.cpu.acquire() => permit.map_err(|e| StageError::internal(Stage::Extract, "no CPU permits").caused_by(e))?,
            _ = cancel.cancelled() => return Err(StageError::internal(Stage::Extract, "cancelled")),
        };
        // The archive's deadline counts from when a core is its, not from a wait for one.
        let deadline = Instant::now() + self.engine.timeout;
        let work = match downloaded.body {
            Body::Memory(archive) => {
                let judged = self.judge_in_memory(archive, d, deadline).await?;
                let facts = Facts {
                    kind: judged.kind,
                    cluster_id: judged.cluster_id,
                    cluster_id_problem: judged.cluster_id_problem,
                };
                let extract_time = judged.extracted_at.saturating_duration_since(started);
                let went_on = self
                    .extracted(d, cx, &facts, downloaded.bytes, extract_time)
                    .await?;
                if went_on.is_none() {
                    return Ok(None);
                }
                let Some(eval) = judged.rules else {
                    return Err(StageError::internal(
                        Stage::Rules,
                        "the rules did not run on an archive they were due for",
                    ));
                };
                let report = eval?;
                m.rules_duration
                    .with_label_values(&[facts.kind])
                    .observe(judged.rules_time.as_secs_f64());
                m.process_duration
                    .with_label_values(&[facts.kind])
                    .observe(started.elapsed().as_secs_f64());
                m.processed.with_label_values(&[facts.kind]).inc();
                return Ok(Some(report));
            }
            Body::File(work) => work,
        };
        let tree = self.extract(&work, deadline).await?;
        let facts = Facts {
            kind: tree.kind,
            cluster_id: tree.cluster_id.clone(),
            cluster_id_problem: tree.cluster_id_problem.clone(),
        };
        let Some(cluster_id) = self
            .extracted(d, cx, &facts, downloaded.bytes, started.elapsed())
            .await?
        else {
            return Ok(None);
        };
        let rules_start = Instant::now();
        let report = match self.engine.external() {
            Some(ext) => {
                let job = crate::external::Job {
                    request_id: d.request_id.as_deref(),
                    org_id: &d.org_id,
                    account: d.account.as_deref(),
                    cluster_id: cluster_id.as_deref(),
                    extracted_path: &tree.root,
                    archive_path: &work.archive(),
                    work_dir: work.path(),
                    timeout: deadline.saturating_duration_since(Instant::now()),
                };
                ext.run(&job).await?
            }
            None => self.rules(&tree, deadline).await?,
        };
        m.rules_duration
            .with_label_values(&[tree.kind])
            .observe(rules_start.elapsed().as_secs_f64());
        m.process_duration
            .with_label_values(&[tree.kind])
            .observe(started.elapsed().as_secs_f64());
        m.processed.with_label_values(&[tree.kind]).inc();
        drop(work);
        Ok(Some(report))
    }

    /// After extraction: metrics, the archive's kind and cluster id in the context, and the
    /// `cluster_id` watcher's decision. `Ok(None)`: the message ends quietly (`skip`); otherwise
    /// the cluster id to judge under (the archive's, else the identity's).
    async fn extracted(
        &self,
        d: &Decoded,
        cx: &mut MessageContext,
        facts: &Facts,
        bytes: u64,
        extract_time: Duration,
    ) -> Result<Option<Option<String>>, StageError> {
        let m = crate::metrics::get();
        cx.archive = facts.kind;
        m.archive_size
            .with_label_values(&[facts.kind])
            .observe(bytes as f64);
        m.extracted.with_label_values(&[facts.kind]).inc();
        m.extract_duration
            .with_label_values(&[facts.kind])
            .observe(extract_time.as_secs_f64());
        let cluster_id = facts
            .cluster_id
            .clone()
            .or_else(|| d.identity_cluster_id.clone());
        if let Some(problem) = &facts.cluster_id_problem {
            tracing::info!(problem = %problem, "no cluster id in the archive");
        }
        cx.status.cluster_id = cluster_id.clone();
        if cluster_id.is_none() {
            match self.watchers.cluster_id {
                Some(OnMissing::DeadLetter) => {
                    return Err(StageError::permanent(
                        Stage::Extract,
                        "missing_cluster_id",
                        "no cluster id in config/id or the identity",
                    ))
                }
                Some(OnMissing::Skip) => {
                    m.filtered.with_label_values(&["no_cluster_id"]).inc();
                    self.watchers
                        .status(&cx.status, "success", "skipped: no cluster id")
                        .await;
                    return Ok(None);
                }
                _ => {}
            }
        }
        Ok(Some(cluster_id))
    }

    async fn publish(
        &self,
        msg: &ReceivedMessage,
        d: &Decoded,
        cx: &MessageContext,
        report: Value,
        cancel: &CancellationToken,
    ) -> Step {
        let subject = Subject {
            org_id: &d.org_id,
            account: d.account.as_deref(),
            request_id: d.request_id.as_deref(),
            cluster_id: cx.status.cluster_id.as_deref(),
            timestamp: &d.timestamp,
            metadata: d.metadata.as_ref(),
        };
        let out = match publish::render(&self.config.publisher, &report, &subject) {
            Ok(o) => o,
            Err(e) => return Step::Fail(e),
        };
        let mut message = OutgoingMessage::new(self.output_topic.clone(), out.value);
        message.key = out.key.map(String::into_bytes);
        for h in ["request_id", "service"] {
            if let Some(v) = msg.header_str(h) {
                message = message.header(h, v.as_bytes().to_vec());
            }
        }
        let started = Instant::now();
        if intake_bus::retry::publish(self.output_bus.as_ref(), message, cancel)
            .await
            .is_err()
        {
            return Step::Done(Ended::Cancelled);
        }
        let m = crate::metrics::get();
        m.publish_duration
            .with_label_values(&[cx.archive])
            .observe(started.elapsed().as_secs_f64());
        m.published.with_label_values(&[cx.archive]).inc();
        let count = |k: &str| report.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        let text = format!(
            "published to {}: {} reports, {} skips",
            self.output_topic,
            count("reports"),
            count("skips")
        );
        self.watchers.status(&cx.status, "success", &text).await;
        Step::Done(Ended::Published)
    }
}
