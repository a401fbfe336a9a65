//! Reference validator settings (`VALIDATOR_*`).

use std::time::Duration;

use super::{ConfigError, EnvMap, EnvReader};
use crate::content_type::DEFAULT_VALID_SERVICES;

pub(super) const VARIABLES: &[&str] = &[
    "VALIDATOR_SERVICES",
    "VALIDATOR_MODE",
    "VALIDATOR_SOURCE",
    "VALIDATOR_CONSUMER_GROUP",
    "VALIDATOR_MAX_DOWNLOAD_SIZE",
    "VALIDATOR_MAX_UNPACKED_SIZE",
    "VALIDATOR_MAX_FILES",
    "VALIDATOR_TIMEOUT",
    "VALIDATOR_DOWNLOAD_RETRY_FOR",
    "VALIDATOR_CONCURRENCY",
    "VALIDATOR_NAME",
    "VALIDATOR_LISTEN",
];

/// How the validator reaches its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidatorMode {
    /// Download and inspect the archive.
    Check,
    /// Answer `success` without looking.
    PassAll,
    /// Answer `failure` (reason `fail-all mode`) without looking, like the seed's test consumer.
    FailAll,
}

impl ValidatorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidatorMode::Check => "check",
            ValidatorMode::PassAll => "pass-all",
            ValidatorMode::FailAll => "fail-all",
        }
    }
}

/// Where announces are read (messages.md, "Announce mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidatorSource {
    /// `platform.upload.<service>` for each configured service.
    PerService,
    /// `platform.upload.announce`, filtered on the `service` header.
    Announce,
}

impl ValidatorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidatorSource::PerService => "per-service",
            ValidatorSource::Announce => "announce",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// `VALIDATOR_SERVICES`: the services validated; default, ingress's default allow-list.
    pub services: Vec<String>,
    /// `VALIDATOR_MODE`: `check` (default), `pass-all` or `fail-all`.
    pub mode: ValidatorMode,
    /// `VALIDATOR_SOURCE`: `per-service` (default) or `announce`.
    pub source: ValidatorSource,
    /// `VALIDATOR_CONSUMER_GROUP`: default `intake-validator`.
    pub consumer_group: String,
    /// `VALIDATOR_MAX_DOWNLOAD_SIZE`: largest payload downloaded, bytes; default 1 GiB.
    pub max_download_size: u64,
    /// `VALIDATOR_MAX_UNPACKED_SIZE`: most decompressed bytes per archive; default 4 GiB.
    pub max_unpacked_size: u64,
    /// `VALIDATOR_MAX_FILES`: most entries per archive; default 100000.
    pub max_files: u64,
    /// `VALIDATOR_TIMEOUT`: one download attempt plus the inspection of what it fetched; default
    /// 60s.
    pub timeout: Duration,
    /// `VALIDATOR_DOWNLOAD_RETRY_FOR`: how long a payload that cannot be fetched is retried before
    /// the validator reports `error` and sends no verdict; default 2 min.
    pub download_retry_for: Duration,
    /// `VALIDATOR_CONCURRENCY`: payloads validated at once (per partition); default 16.
    pub concurrency: usize,
    /// `VALIDATOR_NAME`: the `service` of the validator's own payload-status messages; default
    /// `validator`.
    pub name: String,
    /// `VALIDATOR_LISTEN`: where `intake validator` serves `/livez`, `/readyz` and `/metrics`;
    /// default none (in `intake serve` the validator's metrics are on ingress's `/metrics`).
    pub listen: Option<String>,
}

impl ValidatorConfig {
    pub fn from_env(env: &EnvMap) -> Result<Self, ConfigError> {
        let mut r = EnvReader::new(env);
        let services = r.list("VALIDATOR_SERVICES", &DEFAULT_VALID_SERVICES);
        if services.is_empty() {
            r.fail("VALIDATOR_SERVICES", "at least one service is needed");
        }
        let mode = r.parsed("VALIDATOR_MODE", ValidatorMode::Check, |t| match t {
            "check" => Ok(ValidatorMode::Check),
            "pass-all" => Ok(ValidatorMode::PassAll),
            "fail-all" => Ok(ValidatorMode::FailAll),
            _ => Err("expected check, pass-all or fail-all".into()),
        });
        let source = r.parsed(
            "VALIDATOR_SOURCE",
            ValidatorSource::PerService,
            |t| match t {
                "per-service" => Ok(ValidatorSource::PerService),
                "announce" => Ok(ValidatorSource::Announce),
                _ => Err("expected per-service or announce".into()),
            },
        );
        let consumer_group = r.string("VALIDATOR_CONSUMER_GROUP", "intake-validator");
        let max_download_size = r.parsed("VALIDATOR_MAX_DOWNLOAD_SIZE", 1 << 30, parse_size);
        let max_unpacked_size = r.parsed("VALIDATOR_MAX_UNPACKED_SIZE", 4 << 30, parse_size);
        let max_files = r.parsed("VALIDATOR_MAX_FILES", 100_000, positive);
        let timeout = r.duration("VALIDATOR_TIMEOUT", Duration::from_secs(60));
        if timeout.is_zero() {
            r.fail("VALIDATOR_TIMEOUT", "must be more than zero");
        }
        let download_retry_for =
            r.duration("VALIDATOR_DOWNLOAD_RETRY_FOR", Duration::from_secs(120));
        // Checks mostly wait (download, bus acknowledgements), so several per core keep the
        // validator from being the round-trip's bottleneck; each holds at most 1 MiB in memory.
        let concurrency = r.parsed("VALIDATOR_CONCURRENCY", 16, positive);
        let name = r.string("VALIDATOR_NAME", "validator");
        let listen = r.listen_opt("VALIDATOR_LISTEN");
        r.finish(Self {
            services,
            mode,
            source,
            consumer_group,
            max_download_size,
            max_unpacked_size,
            max_files,
            timeout,
            download_retry_for,
            concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
            name,
            listen,
        })
    }
}

fn positive(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number above zero".to_owned()),
    }
}

/// A size above zero ([`super::units::parse_size`]).
fn parse_size(text: &str) -> Result<u64, String> {
    match super::units::parse_size(text)? {
        0 => Err("expected a size above zero".to_owned()),
        n => Ok(n),
    }
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
        let c = ValidatorConfig::from_env(&EnvMap::new()).unwrap();
        assert_eq!(c.services.len(), DEFAULT_VALID_SERVICES.len());
        assert_eq!(
            (c.mode, c.source),
            (ValidatorMode::Check, ValidatorSource::PerService)
        );
        assert_eq!(c.consumer_group, "intake-validator");
        assert_eq!(
            (c.max_download_size, c.max_unpacked_size, c.max_files),
            (1 << 30, 4 << 30, 100_000)
        );
        assert_eq!(
            (c.timeout, c.concurrency, c.name.as_str()),
            (Duration::from_secs(60), 16, "validator")
        );
    }

    #[test]
    fn values_parse() {
        let c = ValidatorConfig::from_env(&env(&[
            ("VALIDATOR_SERVICES", "advisor, testareno"),
            ("VALIDATOR_MODE", "fail-all"),
            ("VALIDATOR_SOURCE", "announce"),
            ("VALIDATOR_MAX_DOWNLOAD_SIZE", "100MiB"),
            ("VALIDATOR_MAX_UNPACKED_SIZE", "1048576"),
            ("VALIDATOR_TIMEOUT", "5m"),
        ]))
        .unwrap();
        assert_eq!(c.services, ["advisor", "testareno"]);
        assert_eq!(
            (c.mode, c.source),
            (ValidatorMode::FailAll, ValidatorSource::Announce)
        );
        assert_eq!(
            (c.max_download_size, c.max_unpacked_size),
            (100 << 20, 1 << 20)
        );
        assert_eq!(c.timeout, Duration::from_secs(300));
    }

    #[test]
    fn every_bad_variable_is_named() {
        let err = ValidatorConfig::from_env(&env(&[
            ("VALIDATOR_MODE", "maybe"),
            ("VALIDATOR_SOURCE", "both"),
            ("VALIDATOR_MAX_FILES", "0"),
            ("VALIDATOR_CONCURRENCY", "-1"),
            ("VALIDATOR_MAX_DOWNLOAD_SIZE", "lots"),
        ]))
        .unwrap_err();
        for name in [
            "VALIDATOR_MODE",
            "VALIDATOR_SOURCE",
            "VALIDATOR_MAX_FILES",
            "VALIDATOR_CONCURRENCY",
            "VALIDATOR_MAX_DOWNLOAD_SIZE",
        ] {
            assert!(err.names(name), "{name} not reported: {err}");
        }
    }
}
