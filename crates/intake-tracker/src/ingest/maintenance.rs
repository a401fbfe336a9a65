//! Partitions ahead and retention, run by the service itself at start-up and hourly (no cron).

use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::{StatusStore, StoreError};

/// How often partitions and retention run.
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// Creates partitions for `[today - retention, today + ahead]` and applies retention once.
pub async fn run_once(
    store: &dyn StatusStore,
    retention_days: u32,
    ahead_days: u32,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let today = now.date_naive();
    let first = today
        .checked_sub_days(Days::new(u64::from(retention_days)))
        .unwrap_or(today);
    let last = today
        .checked_add_days(Days::new(u64::from(ahead_days)))
        .unwrap_or(today);
    let created = store.prepare_days(first, last).await?;
    if !created.is_empty() {
        info!(partitions = ?created, "created status partitions");
    }
    let cutoff = now - chrono::Duration::days(i64::from(retention_days));
    let report = store.apply_retention(cutoff).await?;
    if report.statuses_deleted + report.payloads_deleted > 0
        || !report.partitions_dropped.is_empty()
    {
        info!(
            statuses = report.statuses_deleted,
            payloads = report.payloads_deleted,
            partitions = ?report.partitions_dropped,
            "retention removed old data"
        );
    }
    Ok(())
}

/// Runs [`run_once`] every [`INTERVAL`] until `cancel` fires; failures are logged and retried
/// at the next tick.
pub async fn run_loop(
    store: Arc<dyn StatusStore>,
    retention_days: u32,
    ahead_days: u32,
    cancel: CancellationToken,
) {
    // The first run is the caller's, at start-up.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(e) = run_once(store.as_ref(), retention_days, ahead_days).await {
                    warn!(error = %e, "partition or retention run failed; retrying at the next tick");
                }
            }
        }
    }
}
