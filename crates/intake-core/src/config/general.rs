//! General settings shared by every part.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, EnvMap, EnvReader};

pub(super) const VARIABLES: &[&str] = &[
    "LOG_LEVEL",
    "LOG_FORMAT",
    "INTAKE_DATA_DIR",
    "IDENTITY_REQUIRED",
    "SHUTDOWN_GRACE",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct GeneralConfig {
    /// `LOG_LEVEL`, default `info`.
    pub log_level: String,
    /// `LOG_FORMAT`, default text.
    pub log_format: LogFormat,
    /// `INTAKE_DATA_DIR`, default `./data`: root of embedded state.
    pub data_dir: PathBuf,
    /// `IDENTITY_REQUIRED`, default true.
    pub identity_required: bool,
    /// `SHUTDOWN_GRACE`, default 30 s.
    pub shutdown_grace: Duration,
}

impl GeneralConfig {
    pub fn from_env(env: &EnvMap) -> Result<Self, ConfigError> {
        let mut r = EnvReader::new(env);
        let log_level = r.parsed("LOG_LEVEL", "info".to_owned(), |t| {
            let l = t.to_ascii_lowercase();
            match l.as_str() {
                "error" | "warn" | "info" | "debug" | "trace" => Ok(l),
                _ => Err("expected error, warn, info, debug or trace".into()),
            }
        });
        let log_format = r.parsed("LOG_FORMAT", LogFormat::Text, |t| {
            match t.to_ascii_lowercase().as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected text or json".into()),
            }
        });
        let data_dir = PathBuf::from(r.string("INTAKE_DATA_DIR", "./data"));
        let identity_required = r.bool("IDENTITY_REQUIRED", true);
        let shutdown_grace = r.duration("SHUTDOWN_GRACE", Duration::from_secs(30));
        r.finish(Self {
            log_level,
            log_format,
            data_dir,
            identity_required,
            shutdown_grace,
        })
    }
}
