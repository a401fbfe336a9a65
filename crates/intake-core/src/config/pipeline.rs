//! Settings of `intake pipeline` as a process (the pipeline itself is configured in YAML).

use super::{ConfigError, EnvMap, EnvReader};

pub(super) const VARIABLES: &[&str] = &["PIPELINE_LISTEN"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineServiceConfig {
    /// `PIPELINE_LISTEN`: where `intake pipeline` serves `/livez`, `/readyz` and `/metrics`;
    /// default none (the YAML's `prometheus` watcher, or ingress's `/metrics` in `intake serve`).
    pub listen: Option<String>,
}

impl PipelineServiceConfig {
    pub fn from_env(env: &EnvMap) -> Result<Self, ConfigError> {
        let mut r = EnvReader::new(env);
        let listen = r.listen_opt("PIPELINE_LISTEN");
        r.finish(Self { listen })
    }
}
