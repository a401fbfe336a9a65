//! Tracker settings (spec/README.md, "Tracker").

use std::time::Duration;

use super::{ConfigError, EnvMap, EnvReader};

pub(super) const VARIABLES: &[&str] = &[
    "TRACKER_LISTEN",
    "TRACKER_METRICS_LISTEN",
    "TRACKER_DATABASE_URL",
    "TRACKER_CONSUMER_GROUP",
    "TRACKER_BATCH_SIZE",
    "TRACKER_BATCH_MAX",
    "TRACKER_BATCH_WAIT",
    "TRACKER_WRITERS",
    "TRACKER_RETENTION_DAYS",
    "TRACKER_PARTITION_DAYS_AHEAD",
    "TRACKER_FUTURE_SKEW",
    "TRACKER_MAX_PAGE_SIZE",
    "TRACKER_LOCAL_MODE",
];

/// `TRACKER_LOCAL_MODE`: whether the tracker shows every payload to callers without an
/// `x-rh-identity` header (a person with a browser on their own machine has no gateway to add one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalMode {
    /// On only in `intake serve` on the embedded default (embedded bus, local disk, SQLite) with the
    /// tracker bound to a loopback address; off everywhere else.
    Auto,
    /// On wherever the tracker runs.
    On,
    /// Never: the identity rules apply as `IDENTITY_REQUIRED` says.
    Off,
}

#[derive(Clone)]
pub struct TrackerConfig {
    pub listen: String,
    pub metrics_listen: Option<String>,
    /// May hold a password: Debug hides it.
    pub database_url: String,
    pub consumer_group: String,
    pub batch_size: usize,
    /// `TRACKER_BATCH_MAX`: the largest batch a backlog is stored in (at least `batch_size`).
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// `TRACKER_WRITERS`: transactions a batch larger than `batch_size` is stored in at once;
    /// `None` leaves it to the tracker (per database engine).
    pub writers: Option<usize>,
    pub retention_days: u32,
    pub partition_days_ahead: u32,
    pub future_skew: Duration,
    pub max_page_size: u32,
    /// `TRACKER_LOCAL_MODE`, default `auto`.
    pub local_mode: LocalMode,
}

impl std::fmt::Debug for TrackerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerConfig")
            .field("listen", &self.listen)
            .field("consumer_group", &self.consumer_group)
            .field("batch_size", &self.batch_size)
            .field("batch_max", &self.batch_max)
            .field("retention_days", &self.retention_days)
            .field("local_mode", &self.local_mode)
            .finish_non_exhaustive()
    }
}

impl TrackerConfig {
    pub fn from_env(env: &EnvMap, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let mut r = EnvReader::new(env);
        let listen = r.listen("TRACKER_LISTEN", "0.0.0.0:8081");
        let metrics_listen = r.listen_opt("TRACKER_METRICS_LISTEN");
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
        let batch_max = r.u64("TRACKER_BATCH_MAX", 5_000) as usize;
        if batch_max < batch_size {
            r.fail(
                "TRACKER_BATCH_MAX",
                "must be at least TRACKER_BATCH_SIZE (a backlog's batches grow from that size to this)",
            );
        }
        let batch_wait = r.duration("TRACKER_BATCH_WAIT", Duration::from_millis(50));
        let writers = r
            .raw("TRACKER_WRITERS")
            .map(|_| r.u64("TRACKER_WRITERS", 1) as usize);
        if writers == Some(0) {
            r.fail("TRACKER_WRITERS", "must be at least 1");
        }
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
        let local_mode = r.parsed("TRACKER_LOCAL_MODE", LocalMode::Auto, |t| {
            match t.to_ascii_lowercase().as_str() {
                "auto" => Ok(LocalMode::Auto),
                "true" | "on" => Ok(LocalMode::On),
                "false" | "off" => Ok(LocalMode::Off),
                _ => Err("expected auto, true or false".into()),
            }
        });
        r.finish(Self {
            listen,
            metrics_listen,
            database_url,
            consumer_group,
            batch_size,
            batch_max,
            batch_wait,
            writers,
            retention_days,
            partition_days_ahead,
            future_skew,
            max_page_size,
            local_mode,
        })
    }

    /// Whether local mode applies. `embedded_default`: the process is `intake serve` on the embedded
    /// bus, local disk and SQLite, the set-up of one person's machine.
    pub fn local_mode_applies(&self, embedded_default: bool) -> bool {
        match self.local_mode {
            LocalMode::On => true,
            LocalMode::Off => false,
            LocalMode::Auto => {
                embedded_default
                    && self.database_url.starts_with("sqlite://")
                    && is_loopback(&self.listen)
            }
        }
    }
}

/// Whether a listen address (`host:port`) only accepts connections from this machine.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(address) = listen.parse::<std::net::SocketAddr>() {
        return address.ip().is_loopback();
    }
    listen
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<TrackerConfig, ConfigError> {
        let env: EnvMap = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TrackerConfig::from_env(&env, std::path::Path::new("/data"))
    }

    #[test]
    fn local_mode_auto_needs_the_embedded_default_and_loopback() {
        let loopback = config(&[("TRACKER_LISTEN", "127.0.0.1:8081")]).unwrap();
        assert_eq!(loopback.local_mode, LocalMode::Auto);
        assert!(loopback.local_mode_applies(true));
        assert!(
            !loopback.local_mode_applies(false),
            "not outside serve's default"
        );
        let open = config(&[]).unwrap();
        assert!(!open.local_mode_applies(true), "0.0.0.0 is not loopback");
        let postgres = config(&[
            ("TRACKER_LISTEN", "localhost:8081"),
            ("TRACKER_DATABASE_URL", "postgres://u:p@db/t"),
        ])
        .unwrap();
        assert!(!postgres.local_mode_applies(true));
        let forced = config(&[("TRACKER_LOCAL_MODE", "true")]).unwrap();
        assert!(forced.local_mode_applies(false));
        let never = config(&[
            ("TRACKER_LOCAL_MODE", "false"),
            ("TRACKER_LISTEN", "[::1]:8081"),
        ])
        .unwrap();
        assert!(!never.local_mode_applies(true));
        let bad = config(&[("TRACKER_LOCAL_MODE", "sometimes")]).unwrap_err();
        assert!(bad.names("TRACKER_LOCAL_MODE"));
    }

    #[test]
    fn writers_are_left_to_the_tracker_unless_set() {
        assert_eq!(config(&[]).unwrap().writers, None);
        assert_eq!(
            config(&[("TRACKER_WRITERS", "3")]).unwrap().writers,
            Some(3)
        );
        for bad in ["0", "two"] {
            let err = config(&[("TRACKER_WRITERS", bad)]).unwrap_err();
            assert!(err.names("TRACKER_WRITERS"), "{bad}");
        }
    }

    #[test]
    fn a_backlog_batch_is_at_least_the_batch_size() {
        let defaults = config(&[]).unwrap();
        assert_eq!((defaults.batch_size, defaults.batch_max), (500, 5_000));
        let fixed = config(&[("TRACKER_BATCH_SIZE", "200"), ("TRACKER_BATCH_MAX", "200")]).unwrap();
        assert_eq!((fixed.batch_size, fixed.batch_max), (200, 200));
        let err = config(&[("TRACKER_BATCH_SIZE", "800"), ("TRACKER_BATCH_MAX", "700")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("TRACKER_BATCH_MAX"), "{err}");
    }

    #[test]
    fn loopback_addresses() {
        for yes in [
            "127.0.0.1:8081",
            "[::1]:80",
            "localhost:8081",
            "127.0.0.2:1",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "0.0.0.0:8081",
            "[::]:8081",
            "10.0.0.1:80",
            "example.com:80",
            "bad",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }
}
