//! Typed configuration from environment variables (spec/README.md). Each component has one struct,
//! built by `from_env(&EnvMap)`; the environment is passed in so tests never touch the process's.
//! Every bad variable is reported by name, all of them in one error.

use std::collections::HashMap;
use std::time::Duration;

mod bus;
pub mod clowder;
mod general;
mod ingress;
mod pipeline;
mod storage;
mod tracker;
pub mod units;
mod validator;

pub use bus::{BusConfig, BusDriver, KafkaConfig, Topics};
pub use general::{GeneralConfig, LogFormat};
pub use ingress::{public_url_from, url_following, AnnounceMode, IngressConfig};
pub use pipeline::PipelineServiceConfig;
pub use storage::{BucketNames, S3Config, StorageConfig, StorageDriver};
pub use tracker::{is_loopback, LocalMode, TrackerConfig};
pub use validator::{ValidatorConfig, ValidatorMode, ValidatorSource};

/// The environment: variable name → value.
pub type EnvMap = HashMap<String, String>;

/// Reads the process environment into an [`EnvMap`] (for the binary; libraries take the map).
pub fn process_env() -> EnvMap {
    std::env::vars().collect()
}

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadVariable {
    pub name: String,
    pub problem: String,
}

/// Every bad variable found while building a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .0.iter().map(|b| format!("{}: {}", b.name, b.problem)).collect::<Vec<_>>().join("; "))]
pub struct ConfigError(pub Vec<BadVariable>);

impl ConfigError {
    /// Whether `name` is among the bad variables.
    pub fn names(&self, name: &str) -> bool {
        self.0.iter().any(|b| b.name == name)
    }
}

/// Reads variables and remembers every problem, so one run reports them all.
pub struct EnvReader<'a> {
    env: &'a EnvMap,
    errors: Vec<BadVariable>,
}

impl<'a> EnvReader<'a> {
    pub fn new(env: &'a EnvMap) -> Self {
        Self {
            env,
            errors: Vec::new(),
        }
    }

    /// The raw value, `None` when unset or empty.
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.env
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    pub fn fail(&mut self, name: &str, problem: impl Into<String>) {
        self.errors.push(BadVariable {
            name: name.to_owned(),
            problem: problem.into(),
        });
    }

    pub fn string(&mut self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_owned()
    }

    pub fn parsed<T>(
        &mut self,
        name: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(name) {
            None => default,
            Some(text) => match parse(text) {
                Ok(v) => v,
                Err(problem) => {
                    self.fail(name, format!("{problem} (got {text:?})"));
                    default
                }
            },
        }
    }

    pub fn bool(&mut self, name: &str, default: bool) -> bool {
        self.parsed(name, default, units::parse_bool)
    }

    pub fn duration(&mut self, name: &str, default: Duration) -> Duration {
        self.parsed(name, default, units::parse_duration)
    }

    pub fn u64(&mut self, name: &str, default: u64) -> u64 {
        self.parsed(name, default, |t| {
            t.parse::<u64>()
                .map_err(|_| "expected a whole number".to_owned())
        })
    }

    /// A size ([`units::parse_size`]).
    pub fn size(&mut self, name: &str, default: u64) -> u64 {
        self.parsed(name, default, units::parse_size)
    }

    /// A listen address ([`units::parse_listen`]).
    pub fn listen(&mut self, name: &str, default: &str) -> String {
        self.parsed(name, default.to_owned(), units::parse_listen)
    }

    /// An optional listen address ([`units::parse_listen`]); unset or empty is `None`.
    pub fn listen_opt(&mut self, name: &str) -> Option<String> {
        self.parsed(name, None, |t| units::parse_listen(t).map(Some))
    }

    pub fn list(&mut self, name: &str, default: &[&str]) -> Vec<String> {
        match self.raw(name) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(text) => units::split_list(text),
        }
    }

    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

/// Every variable name a configuration struct reads, for the README table test.
pub fn documented_variables() -> Vec<&'static str> {
    let mut all = Vec::new();
    all.extend_from_slice(general::VARIABLES);
    all.extend_from_slice(ingress::VARIABLES);
    all.extend_from_slice(storage::VARIABLES);
    all.extend_from_slice(bus::VARIABLES);
    all.extend_from_slice(tracker::VARIABLES);
    all.extend_from_slice(validator::VARIABLES);
    all.extend_from_slice(pipeline::VARIABLES);
    all.extend_from_slice(clowder::VARIABLES);
    all
}

/// The variables one part of intake reads (`ingress`, `validator`, `tracker`, `pipeline`, `serve`),
/// general ones first; empty for an unknown part. Shown in each part's `--help`.
pub fn component_variables(component: &str) -> Vec<&'static str> {
    let parts: &[&[&str]] = match component {
        "ingress" => &[ingress::VARIABLES, storage::VARIABLES, bus::VARIABLES],
        "validator" => &[validator::VARIABLES, bus::VARIABLES],
        "tracker" => &[tracker::VARIABLES, bus::VARIABLES],
        "pipeline" => &[
            pipeline::VARIABLES,
            storage::VARIABLES,
            bus::VARIABLES,
            &["INGRESS_PUBLIC_URL"],
        ],
        "serve" => &[
            ingress::VARIABLES,
            storage::VARIABLES,
            bus::VARIABLES,
            tracker::VARIABLES,
            validator::VARIABLES,
            pipeline::VARIABLES,
        ],
        _ => return Vec::new(),
    };
    let mut all: Vec<&'static str> = general::VARIABLES.to_vec();
    all.extend_from_slice(clowder::VARIABLES);
    for part in parts {
        for name in *part {
            if !all.contains(name) {
                all.push(name);
            }
        }
    }
    all
}
