//! Tracker settings (spec/README.md, "Tracker").

use std::time::Duration;

use super::{ConfigError, EnvMap, EnvReader};

pub(super) const VARIABLES: &[&str] = &[
    "TRACKER_LISTEN",
    "TRACKER_METRICS_LISTEN",
    "TRACKER_DATABASE_URL",
    "TRACKER_CONSUMER_GROUP",
    "TRACKER_BATCH_SIZE",
    "TRACKER_BATCH_WAIT",
    "TRACKER_RETENTION_DAYS",
    "TRACKER_PARTITION_DAYS_AHEAD",
    "TRACKER_FUTURE_SKEW",
    "TRACKER_MAX_PAGE_SIZE",
];

#[derive(Clone)]
pub struct TrackerConfig {
    pub listen: String,
    pub metrics_listen: Option<String>,
    /// May hold a password: Debug hides it.
    pub database_url: String,
    pub consumer_group: String,
    pub batch_size: usize,
    pub batch_wait: Duration,
    pub retention_days: u32,
    pub partition_days_ahead: u32,
    pub future_skew: Duration,
    pub max_page_size: u32,
}

impl std::fmt::Debug for TrackerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerConfig")
            .field("listen", &self.listen)
            .field("consumer_group", &self.consumer_group)
            .field("batch_size", &self.batch_size)
            .field("retention_days", &self.retention_days)
            .finish_non_exhaustive()
    }
}

impl TrackerConfig {
    pub fn from_env(env: &EnvMap, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let mut r = EnvReader::new(env);
        let listen = r.string("TRACKER_LISTEN", "0.0.0.0:8081");
        let metrics_listen = r.raw("TRACKER_METRICS_LISTEN").map(str::to_owned);
        let default_db = format!("sqlite://{}", data_dir.join("tracker.db").display());
        let database_url = r.string("TRACKER_DATABASE_URL", &default_db);
        if !["sqlite://", "postgres://", "postgresql://"]
            .iter()
            .any(|p| database_url.starts_with(p))
        {
            r.fail(
                "TRACKER_DATABASE_URL",
                "expected sqlite://<path> or postgres://user:pass@host:port/db",
            );
        }
        let consumer_group = r.string("TRACKER_CONSUMER_GROUP", "payload_tracker");
        let batch_size = r.u64("TRACKER_BATCH_SIZE", 500) as usize;
        if batch_size == 0 {
            r.fail("TRACKER_BATCH_SIZE", "must be at least 1");
        }
        let batch_wait = r.duration("TRACKER_BATCH_WAIT", Duration::from_millis(50));
        let retention_days = r.u64("TRACKER_RETENTION_DAYS", 7) as u32;
        if retention_days == 0 {
            r.fail("TRACKER_RETENTION_DAYS", "must be at least 1");
        }
        let partition_days_ahead = r.u64("TRACKER_PARTITION_DAYS_AHEAD", 3) as u32;
        let future_skew = r.duration("TRACKER_FUTURE_SKEW", Duration::from_secs(86_400));
        let max_page_size = r.u64("TRACKER_MAX_PAGE_SIZE", 1000) as u32;
        if max_page_size == 0 {
            r.fail("TRACKER_MAX_PAGE_SIZE", "must be at least 1");
        }
        r.finish(Self {
            listen,
            metrics_listen,
            database_url,
            consumer_group,
            batch_size,
            batch_wait,
            retention_days,
            partition_days_ahead,
            future_skew,
            max_page_size,
        })
    }
}
