//! `ACG_CONFIG`: when it names Clowder's app-config file, the file's coordinates fill in the
//! variables the environment leaves unset (intake_core::config::clowder), before any part reads
//! its configuration. The CA certificates the file holds are written to files under the temporary
//! directory for librdkafka and sqlx, which take paths. An unreadable or invalid file, or a
//! certificate that cannot be written, is a configuration error (exit 2).

use std::collections::BTreeMap;

use intake_core::config::clowder::{self, AppConfig, CaFiles, Layout, ACG_CONFIG};
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
    let set = |name: &str| env.get(name).is_some_and(|v| !v.trim().is_empty());
    let ca = CaFiles {
        kafka: match app.kafka_ca() {
            Some(pem) if !set("KAFKA_SSL_CA_LOCATION") => Some(write_ca("kafka", pem)?),
            _ => None,
        },
        database: match app.database_ca() {
            Some(pem) if !set("TRACKER_DATABASE_URL") => Some(write_ca("database", pem)?),
            _ => None,
        },
    };
    Ok((clowder::overlay(&env, &app, layout, &ca), app.topic_names()))
}

/// Writes a CA certificate to `<temp dir>/intake-acg-<pid>-<what>-ca.pem` and returns its path.
fn write_ca(what: &str, pem: &str) -> Result<String, ConfigError> {
    let path =
        std::env::temp_dir().join(format!("intake-acg-{}-{what}-ca.pem", std::process::id()));
    let shown = path.display().to_string();
    std::fs::write(&path, pem).map_err(|e| clowder::unwritable(&shown, &e))?;
    Ok(shown)
}
