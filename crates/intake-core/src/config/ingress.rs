//! Ingress settings (spec/README.md, "Ingress").

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ConfigError, EnvMap, EnvReader};
use crate::content_type::{DEFAULT_VALID_SERVICES, RESERVED_SERVICES};

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
    "INGRESS_IDLE_TIMEOUT",
    "INGRESS_MAX_UPLOADS_PER_CLIENT",
    "INGRESS_MAX_HEADER_BYTES",
    "INGRESS_MAX_PART_HEADER_BYTES",
    "INGRESS_MAX_PREAMBLE_BYTES",
    "INGRESS_MAX_METADATA_BYTES",
    "INGRESS_TRACKER_URL",
    "INGRESS_CONSUMER_GROUP",
    "INGRESS_VALIDATION_RETRIES",
    "INGRESS_VALIDATION_CONCURRENCY",
    "INGRESS_MAX_BACKLOG",
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
    /// Base of localdisk `/download` URLs, without a trailing slash: `INGRESS_PUBLIC_URL`, else the
    /// URL following `INGRESS_LISTEN` (see [`url_following`]), which [`Self::follow_bound`] makes
    /// exact once the listener is bound.
    pub public_url: String,
    /// Whether `INGRESS_PUBLIC_URL` was set (else `public_url` follows the listener).
    pub public_url_set: bool,
    pub valid_services: Vec<String>,
    pub max_size: u64,
    pub max_size_map: BTreeMap<String, u64>,
    pub deny_org_ids: Vec<String>,
    pub announce_mode: AnnounceMode,
    pub legacy_advisor_201: bool,
    pub max_concurrent_uploads: usize,
    /// Uploads one client address may have in flight at once.
    pub max_uploads_per_client: usize,
    /// Longest wait for a complete request head (408 and close past it).
    pub header_timeout: Duration,
    /// Longest time a connection stays open with no request in flight.
    pub idle_timeout: Duration,
    /// Largest request head, request line and headers together (431 past it).
    pub max_header_bytes: usize,
    /// Largest headers of one multipart part (400 past it).
    pub max_part_header_bytes: usize,
    /// Largest multipart preamble, before the first boundary (400 past it).
    pub max_preamble_bytes: usize,
    /// Largest metadata part (413 past it).
    pub max_metadata_bytes: usize,
    pub body_idle_timeout: Duration,
    /// `INGRESS_TRACKER_URL`, else `http://localhost:<port>/api/v1/payloads/` following
    /// `TRACKER_LISTEN`.
    pub tracker_url: String,
    pub consumer_group: String,
    pub validation_retries: u32,
    /// `INGRESS_VALIDATION_CONCURRENCY`: validation responses for different payloads applied at
    /// once per partition (messages.md); default 64.
    pub validation_concurrency: usize,
    /// `INGRESS_MAX_BACKLOG`: payloads this process accepted that may wait for their verdict
    /// before uploads are answered 503 (spec ingress.md, "Admission"); `0` turns the limit off.
    pub max_backlog: u64,
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
        let listen = r.listen("INGRESS_LISTEN", DEFAULT_INGRESS_LISTEN);
        let metrics_listen = r.listen_opt("INGRESS_METRICS_LISTEN");
        let public_url_set = r.raw("INGRESS_PUBLIC_URL").is_some();
        let public_url = public_url_from(env);
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            r.fail("INGRESS_PUBLIC_URL", "expected an http:// or https:// URL");
        }
        let valid_services = r.list("INGRESS_VALID_SERVICES", &DEFAULT_VALID_SERVICES);
        for service in &valid_services {
            if RESERVED_SERVICES.contains(&service.as_str()) {
                r.fail(
                    "INGRESS_VALID_SERVICES",
                    format!(
                        "{service:?} is reserved: its announce topic would be one of intake's own \
                         (reserved: {})",
                        RESERVED_SERVICES.join(", ")
                    ),
                );
            }
        }
        let max_size = r.size("INGRESS_MAX_SIZE", 104_857_600);
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
        let max_uploads_per_client = r.u64("INGRESS_MAX_UPLOADS_PER_CLIENT", 64) as usize;
        if max_uploads_per_client == 0 {
            r.fail("INGRESS_MAX_UPLOADS_PER_CLIENT", "must be at least 1");
        }
        let header_timeout = r.duration("INGRESS_HEADER_TIMEOUT", Duration::from_secs(10));
        let body_idle_timeout = r.duration("INGRESS_BODY_IDLE_TIMEOUT", Duration::from_secs(30));
        let idle_timeout = r.duration("INGRESS_IDLE_TIMEOUT", Duration::from_secs(60));
        fn bytes(r: &mut EnvReader<'_>, name: &str, default: u64, least: u64) -> usize {
            let v = r.size(name, default);
            if v < least {
                r.fail(name, format!("must be at least {least}"));
            }
            usize::try_from(v).unwrap_or(usize::MAX)
        }
        let max_header_bytes = bytes(&mut r, "INGRESS_MAX_HEADER_BYTES", 65_536, 8_192);
        let max_part_header_bytes = bytes(&mut r, "INGRESS_MAX_PART_HEADER_BYTES", 16_384, 256);
        let max_preamble_bytes = bytes(&mut r, "INGRESS_MAX_PREAMBLE_BYTES", 16_384, 0);
        let max_metadata_bytes = bytes(&mut r, "INGRESS_MAX_METADATA_BYTES", 1_048_576, 2);
        let tracker_url = match r.raw("INGRESS_TRACKER_URL") {
            Some(url) => url.to_owned(),
            None => format!(
                "{}/api/v1/payloads/",
                url_following(r.raw("TRACKER_LISTEN").unwrap_or(DEFAULT_TRACKER_LISTEN))
            ),
        };
        let consumer_group = r.string("INGRESS_CONSUMER_GROUP", "upload");
        let validation_retries = r.u64("INGRESS_VALIDATION_RETRIES", 5) as u32;
        let validation_concurrency =
            usize::try_from(r.u64("INGRESS_VALIDATION_CONCURRENCY", 64)).unwrap_or(usize::MAX);
        if validation_concurrency == 0 {
            r.fail("INGRESS_VALIDATION_CONCURRENCY", "must be at least 1");
        }
        let max_backlog = r.u64("INGRESS_MAX_BACKLOG", DEFAULT_MAX_BACKLOG);
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
            public_url_set,
            valid_services,
            max_size,
            max_size_map,
            deny_org_ids,
            announce_mode,
            legacy_advisor_201,
            max_concurrent_uploads,
            max_uploads_per_client,
            header_timeout,
            idle_timeout,
            max_header_bytes,
            max_part_header_bytes,
            max_preamble_bytes,
            max_metadata_bytes,
            body_idle_timeout,
            tracker_url,
            consumer_group,
            validation_retries,
            validation_concurrency,
            max_backlog,
            reannounce_after,
            reannounce_attempts,
        })
    }

    /// Once the listener is bound: without `INGRESS_PUBLIC_URL`, the public URL follows the bound
    /// address (a port 0 in `INGRESS_LISTEN` becomes the port the system chose).
    pub fn follow_bound(&mut self, bound: std::net::SocketAddr) {
        if !self.public_url_set {
            self.public_url = url_following(&bound.to_string());
        }
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

/// What `intake serve` finishes in about a minute on a small machine (BENCHMARKS.md, "Validation
/// round-trip").
pub const DEFAULT_MAX_BACKLOG: u64 = 20_000;

const DEFAULT_INGRESS_LISTEN: &str = "0.0.0.0:8080";
const DEFAULT_TRACKER_LISTEN: &str = "0.0.0.0:8081";

/// The base of localdisk download URLs for this environment, without a trailing slash:
/// `INGRESS_PUBLIC_URL`, else the URL following `INGRESS_LISTEN`. Parts that only check such URLs
/// (the pipeline's default allow-list) read it here, so they agree with ingress.
pub fn public_url_from(env: &EnvMap) -> String {
    let r = EnvReader::new(env);
    match r.raw("INGRESS_PUBLIC_URL") {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => url_following(r.raw("INGRESS_LISTEN").unwrap_or(DEFAULT_INGRESS_LISTEN)),
    }
}

/// `http://<host>:<port>` that reaches a listener on `listen` (`host:port`) from the same machine:
/// a wildcard or empty host becomes `localhost`, a specific host is kept as given.
pub fn url_following(listen: &str) -> String {
    let listen = listen.trim();
    let (host, port) = match listen.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => ("", listen),
    };
    let host = match host {
        "" | "0.0.0.0" | "[::]" | "::" | "*" => "localhost",
        h if h.contains(':') && !h.starts_with('[') => return format!("http://[{h}]:{port}"),
        h => h,
    };
    format!("http://{host}:{port}")
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
            serde_json::Value::String(s) => super::units::parse_size(s).ok(),
            _ => None,
        };
        out.insert(
            k.clone(),
            n.ok_or_else(|| {
                format!("limit for {k:?} is not a size (bytes, or a string such as \"150MiB\")")
            })?,
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
    fn public_urls_follow_the_listen_addresses_when_unset() {
        let c = IngressConfig::from_env(&EnvMap::new()).unwrap();
        assert_eq!(c.public_url, "http://localhost:8080");
        assert!(!c.public_url_set);
        assert_eq!(c.tracker_url, "http://localhost:8081/api/v1/payloads/");
        let c = IngressConfig::from_env(&env(&[
            ("INGRESS_LISTEN", "0.0.0.0:9090"),
            ("TRACKER_LISTEN", "127.0.0.1:9091"),
        ]))
        .unwrap();
        assert_eq!(c.public_url, "http://localhost:9090");
        assert_eq!(c.tracker_url, "http://127.0.0.1:9091/api/v1/payloads/");
        let c = IngressConfig::from_env(&env(&[("INGRESS_LISTEN", "[::1]:7000")])).unwrap();
        assert_eq!(c.public_url, "http://[::1]:7000");
    }

    #[test]
    fn a_set_public_url_wins_over_the_listener() {
        let mut c = IngressConfig::from_env(&env(&[
            ("INGRESS_LISTEN", "127.0.0.1:0"),
            ("INGRESS_PUBLIC_URL", "https://uploads.example.com/"),
            ("INGRESS_TRACKER_URL", "http://tracker:1/x/"),
        ]))
        .unwrap();
        c.follow_bound("127.0.0.1:4567".parse().unwrap());
        assert_eq!(c.public_url, "https://uploads.example.com");
        assert_eq!(c.tracker_url, "http://tracker:1/x/");
        let mut c = IngressConfig::from_env(&env(&[("INGRESS_LISTEN", "0.0.0.0:0")])).unwrap();
        c.follow_bound("0.0.0.0:4567".parse().unwrap());
        assert_eq!(c.public_url, "http://localhost:4567");
        c.follow_bound("[::1]:4568".parse().unwrap());
        assert_eq!(c.public_url, "http://[::1]:4568");
    }

    #[test]
    fn reserved_names_are_never_services() {
        for name in RESERVED_SERVICES {
            let err = IngressConfig::from_env(&env(&[(
                "INGRESS_VALID_SERVICES",
                &format!("advisor,{name}"),
            )]))
            .unwrap_err();
            assert!(err.names("INGRESS_VALID_SERVICES"), "{name}: {err}");
            assert!(err.to_string().contains(name), "{err}");
        }
        let c = IngressConfig::from_env(&env(&[("INGRESS_VALID_SERVICES", "advisor,validator")]))
            .unwrap();
        assert_eq!(c.valid_services, vec!["advisor", "validator"]);
    }

    #[test]
    fn a_public_url_without_a_scheme_is_refused() {
        let err =
            IngressConfig::from_env(&env(&[("INGRESS_PUBLIC_URL", "uploads:8080")])).unwrap_err();
        assert!(err.names("INGRESS_PUBLIC_URL"));
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
