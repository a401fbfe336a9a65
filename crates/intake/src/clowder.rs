//! `ACG_CONFIG`: when it names Clowder's app-config file, the file's coordinates fill in the
//! variables the environment leaves unset (intake_core::config::clowder), before any part reads
//! its configuration. An unreadable or invalid file is a configuration error (exit 2).

use std::collections::BTreeMap;

use intake_core::config::clowder::{self, AppConfig, Layout, ACG_CONFIG};
use intake_core::config::{ConfigError, EnvMap};

/// The environment with the app-config's variables merged in, and its requested → real topic
/// names; `env` unchanged and no names without `ACG_CONFIG`.
pub fn apply(
    env: EnvMap,
    layout: Layout,
) -> Result<(EnvMap, BTreeMap<String, String>), ConfigError> {
    let Some(path) = env
        .get(ACG_CONFIG)
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
    else {
        return Ok((env, BTreeMap::new()));
    };
    // A few KiB written by the operator; read whole, like any configuration file.
    let text = std::fs::read_to_string(&path).map_err(|e| clowder::unreadable(&path, &e))?;
    let app = AppConfig::parse(&path, &text)?;
    Ok((clowder::overlay(&env, &app, layout), app.topic_names()))
}
