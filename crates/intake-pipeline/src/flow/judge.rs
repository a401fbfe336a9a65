//! The CPU-bound part of a message on the blocking pool: extraction and the rules, on disk or in
//! memory, each bounded by the archive's deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intake_rules::FileSource;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::Shared;
use crate::config::OnMissing;
use crate::decode::Decoded;
use crate::download::WorkDir;
use crate::engine::Tree;
use crate::error::{Stage, StageError};

/// An archive extracted and judged in memory.
pub(super) struct Judged {
    pub(super) kind: &'static str,
    pub(super) cluster_id: Option<String>,
    pub(super) cluster_id_problem: Option<String>,
    /// When extraction ended.
    pub(super) extracted_at: Instant,
    /// Time spent in the rules.
    pub(super) rules_time: Duration,
    /// `None` when the `cluster_id` watcher stops the message before the rules.
    pub(super) rules: Option<Result<Value, StageError>>,
}

/// Which step a blocking job was in when it panicked or ran out of time.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Extraction,
    Rules,
}

impl Phase {
    fn panicked(self, e: tokio::task::JoinError) -> StageError {
        match self {
            Phase::Extraction => StageError::internal(Stage::Extract, "extraction panicked"),
            Phase::Rules => StageError::internal(Stage::Rules, "the rules engine panicked"),
        }
        .caused_by(e)
    }

    fn too_late(self) -> StageError {
        match self {
            Phase::Extraction => StageError::permanent(
                Stage::Extract,
                "deadline_exceeded",
                "extraction passed the archive deadline",
            ),
            Phase::Rules => StageError::permanent(
                Stage::Rules,
                "deadline_exceeded",
                "rules passed the archive deadline",
            ),
        }
    }
}

/// Waits for `job` until `deadline` plus `slack` (the job checks the deadline itself; the slack is
/// for one that cannot, whose thread is then abandoned and counted). A panic or the deadline is
/// charged to the step `phase` says the job was in.
async fn within_deadline<T>(
    job: JoinHandle<Result<T, StageError>>,
    deadline: Instant,
    slack: Duration,
    phase: impl Fn() -> Phase,
) -> Result<T, StageError> {
    match tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()) + slack,
        job,
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(phase().panicked(e)),
        Err(_) => {
            crate::metrics::get().abandoned_threads.inc();
            Err(phase().too_late())
        }
    }
}

impl Shared {
    /// Extraction into memory and, unless the `cluster_id` watcher will stop the message, the
    /// rules: one trip to the blocking pool, bounded by the archive's deadline.
    pub(super) async fn judge_in_memory(
        &self,
        archive: Vec<u8>,
        d: &Decoded,
        deadline: Instant,
    ) -> Result<Judged, StageError> {
        let engine = self.engine.clone();
        let identity_has_id = d.identity_cluster_id.is_some();
        let on_missing = self.watchers.cluster_id;
        let extracted = Arc::new(AtomicBool::new(false));
        let flag = extracted.clone();
        let job = tokio::task::spawn_blocking(move || {
            let tree = engine.extract_in_memory(archive, deadline)?;
            flag.store(true, Ordering::Release);
            let extracted_at = Instant::now();
            let stops = tree.cluster_id.is_none()
                && !identity_has_id
                && matches!(on_missing, Some(OnMissing::DeadLetter | OnMissing::Skip));
            let rules = (!stops).then(|| {
                engine
                    .run_rules_on(FileSource::Memory(&tree.files), deadline)
                    .map(|e| e.report)
            });
            Ok(Judged {
                kind: tree.kind,
                cluster_id: tree.cluster_id,
                cluster_id_problem: tree.cluster_id_problem,
                extracted_at,
                rules_time: extracted_at.elapsed(),
                rules,
            })
        });
        within_deadline(job, deadline, Duration::from_secs(1), || {
            if extracted.load(Ordering::Acquire) {
                Phase::Rules
            } else {
                Phase::Extraction
            }
        })
        .await
    }

    pub(super) async fn extract(
        &self,
        work: &WorkDir,
        deadline: Instant,
    ) -> Result<Tree, StageError> {
        let archive = work.archive();
        let dir = work.path().join("extracted");
        let engine = self.engine.clone();
        let job = tokio::task::spawn_blocking(move || engine.extract(&archive, &dir, deadline));
        within_deadline(job, deadline, Duration::from_secs(1), || Phase::Extraction).await
    }

    pub(super) async fn rules(&self, tree: &Tree, deadline: Instant) -> Result<Value, StageError> {
        let engine = self.engine.clone();
        let tree = tree.clone();
        let job = tokio::task::spawn_blocking(move || {
            engine.run_rules(&tree, deadline).map(|e| e.report)
        });
        within_deadline(job, deadline, Duration::from_millis(100), || Phase::Rules).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_finished_job_gives_its_result() {
        let job = tokio::task::spawn_blocking(|| Ok::<_, StageError>(7));
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = within_deadline(job, deadline, Duration::ZERO, || Phase::Rules).await;
        assert_eq!(got.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_job_past_the_deadline_fails_the_step_it_was_in() {
        for (phase, stage, text) in [
            (
                Phase::Extraction,
                Stage::Extract,
                "extraction passed the archive deadline",
            ),
            (
                Phase::Rules,
                Stage::Rules,
                "rules passed the archive deadline",
            ),
        ] {
            let job = tokio::task::spawn_blocking(|| {
                std::thread::sleep(Duration::from_millis(300));
                Ok::<_, StageError>(())
            });
            let deadline = Instant::now() + Duration::from_millis(20);
            let err = within_deadline(job, deadline, Duration::from_millis(10), move || phase)
                .await
                .unwrap_err();
            assert_eq!(
                (err.stage, err.reason, err.detail.as_str()),
                (stage, "deadline_exceeded", text)
            );
            assert!(!err.is_transient());
        }
    }

    #[tokio::test]
    async fn a_panic_is_an_internal_error_of_the_step_it_was_in_with_its_cause() {
        let job = tokio::task::spawn_blocking(|| -> Result<(), StageError> {
            panic!("a rule blew up");
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = within_deadline(job, deadline, Duration::ZERO, || Phase::Rules)
            .await
            .unwrap_err();
        assert_eq!(
            (err.stage, err.reason, err.detail.as_str()),
            (Stage::Rules, "internal", "the rules engine panicked")
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
