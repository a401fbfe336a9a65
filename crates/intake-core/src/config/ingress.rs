//! Ingress settings (spec/README.md, "Ingress").

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ConfigError, EnvMap, EnvReader};
use crate::content_type::DEFAULT_VALID_SERVICES;

pub(super) const VARIABLES: &[&str] = &[
    "INGRESS_LISTEN",
    "INGRESS_METRICS_LISTEN",
    "INGRESS_PUBLIC_URL",
    "INGRESS_VALID_SERVICES",
    "INGRESS_MAX_SIZE",
    "INGRESS_MAX_SIZE_MAP",
    "INGRESS_DENY_ORG_IDS",
    "INGRESS_ANNOUNCE_MODE",
    "INGRESS_LEGACY_ADVISOR_201",
    "INGRESS_MAX_CONCURRENT_UPLOADS",
    "INGRESS_HEADER_TIMEOUT",
    "INGRESS_BODY_IDLE_TIMEOUT",
    "INGRESS_TRACKER_URL",
    "INGRESS_CONSUMER_GROUP",
    "INGRESS_VALIDATION_RETRIES",
    "INGRESS_REANNOUNCE_AFTER",
    "INGRESS_REANNOUNCE_ATTEMPTS",
];

/// Where announces go (messages.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceMode {
    PerService,
    Announce,
    Both,
}

impl AnnounceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnounceMode::PerService => "per-service",
            AnnounceMode::Announce => "announce",
            AnnounceMode::Both => "both",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngressConfig {
    pub listen: String,
    pub metrics_listen: Option<String>,
    /// Base of localdisk `/download` URLs, without a trailing slash.
    pub public_url: String,
    pub valid_services: Vec<String>,
    pub max_size: u64,
    pub max_size_map: BTreeMap<String, u64>,
    pub deny_org_ids: Vec<String>,
    pub announce_mode: AnnounceMode,
    pub legacy_advisor_201: bool,
    pub max_concurrent_uploads: usize,
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub tracker_url: String,
    pub consumer_group: String,
    pub validation_retries: u32,
    /// `INGRESS_REANNOUNCE_AFTER`: how long a payload stays in quarantine without a verdict before
    /// it is announced again; default 10 min.
    pub reannounce_after: Duration,
    /// `INGRESS_REANNOUNCE_ATTEMPTS`: most announces after the first; default 3. After the last,
    /// status `error` and the payload stays in quarantine.
    pub reannounce_attempts: u32,
}

impl IngressConfig {
    pub fn from_env(env: &EnvMap) -> Result<Self, ConfigError> {
        let mut r = EnvReader::new(env);
        let listen = r.string("INGRESS_LISTEN", "0.0.0.0:8080");
        let metrics_listen = r.raw("INGRESS_METRICS_LISTEN").map(str::to_owned);
        let public_url = r
            .string("INGRESS_PUBLIC_URL", "http://localhost:8080")
            .trim_end_matches('/')
            .to_owned();
        let valid_services = r.list("INGRESS_VALID_SERVICES", &DEFAULT_VALID_SERVICES);
        let max_size = r.u64("INGRESS_MAX_SIZE", 104_857_600);
        let default_map: BTreeMap<String, u64> = [("qpc".to_owned(), 157_286_400)].into();
        let max_size_map = r.parsed("INGRESS_MAX_SIZE_MAP", default_map, parse_size_map);
        let deny_org_ids = r.list("INGRESS_DENY_ORG_IDS", &[]);
        let announce_mode = r.parsed(
            "INGRESS_ANNOUNCE_MODE",
            AnnounceMode::PerService,
            |t| match t {
                "per-service" => Ok(AnnounceMode::PerService),
                "announce" => Ok(AnnounceMode::Announce),
                "both" => Ok(AnnounceMode::Both),
                _ => Err("expected per-service, announce or both".into()),
            },
        );
        let legacy_advisor_201 = r.bool("INGRESS_LEGACY_ADVISOR_201", false);
        let max_concurrent_uploads = r.u64("INGRESS_MAX_CONCURRENT_UPLOADS", 256) as usize;
        if max_concurrent_uploads == 0 {
            r.fail("INGRESS_MAX_CONCURRENT_UPLOADS", "must be at least 1");
        }
        let header_timeout = r.duration("INGRESS_HEADER_TIMEOUT", Duration::from_secs(30));
        let body_idle_timeout = r.duration("INGRESS_BODY_IDLE_TIMEOUT", Duration::from_secs(60));
        let tracker_url = r.string(
            "INGRESS_TRACKER_URL",
            "http://localhost:8081/api/v1/payloads/",
        );
        let consumer_group = r.string("INGRESS_CONSUMER_GROUP", "upload");
        let validation_retries = r.u64("INGRESS_VALIDATION_RETRIES", 5) as u32;
        let reannounce_after = r.duration("INGRESS_REANNOUNCE_AFTER", Duration::from_secs(600));
        if reannounce_after.is_zero() {
            r.fail("INGRESS_REANNOUNCE_AFTER", "must be more than zero");
        }
        let reannounce_attempts =
            u32::try_from(r.u64("INGRESS_REANNOUNCE_ATTEMPTS", 3)).unwrap_or(u32::MAX);
        r.finish(Self {
            listen,
            metrics_listen,
            public_url,
            valid_services,
            max_size,
            max_size_map,
            deny_org_ids,
            announce_mode,
            legacy_advisor_201,
            max_concurrent_uploads,
            header_timeout,
            body_idle_timeout,
            tracker_url,
            consumer_group,
            validation_retries,
            reannounce_after,
            reannounce_attempts,
        })
    }

    /// The file-part limit for `service`.
    pub fn limit_for(&self, service: &str) -> u64 {
        self.max_size_map
            .get(service)
            .copied()
            .unwrap_or(self.max_size)
    }

    /// The largest configured limit (check 6 adds 1 MiB of framing to it).
    pub fn largest_limit(&self) -> u64 {
        self.max_size_map
            .values()
            .copied()
            .chain([self.max_size])
            .max()
            .unwrap_or(self.max_size)
    }
}

fn parse_size_map(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("expected a JSON object of service to bytes")?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let n = match v {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        out.insert(
            k.clone(),
            n.ok_or_else(|| format!("limit for {k:?} is not a whole number of bytes"))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = IngressConfig::from_env(&EnvMap::new()).unwrap();
        assert_eq!(c.limit_for("advisor"), 104_857_600);
        assert_eq!(c.limit_for("qpc"), 157_286_400);
        assert_eq!(c.largest_limit(), 157_286_400);
        assert_eq!(c.announce_mode, AnnounceMode::PerService);
        assert!(c.valid_services.contains(&"testareno".to_string()));
    }

    #[test]
    fn string_sizes_and_every_error_named() {
        let c = IngressConfig::from_env(&env(&[("INGRESS_MAX_SIZE_MAP", r#"{"a":"10","b":20}"#)]))
            .unwrap();
        assert_eq!(c.limit_for("a"), 10);
        assert_eq!(c.limit_for("b"), 20);
        let err = IngressConfig::from_env(&env(&[
            ("INGRESS_MAX_SIZE", "big"),
            ("INGRESS_ANNOUNCE_MODE", "all"),
            ("INGRESS_MAX_SIZE_MAP", "[1]"),
        ]))
        .unwrap_err();
        assert!(err.names("INGRESS_MAX_SIZE"));
        assert!(err.names("INGRESS_ANNOUNCE_MODE"));
        assert!(err.names("INGRESS_MAX_SIZE_MAP"));
    }
}
