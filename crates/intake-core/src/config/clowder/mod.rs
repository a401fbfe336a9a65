//! Clowder's app-config (`cdappconfig.json`, named by `ACG_CONFIG`): the coordinates Clowder gives a
//! ClowdApp (Kafka brokers and real topic names, the object store and real bucket names, the
//! PostgreSQL database, the ports to listen on), turned into the variables the configuration reads.
//!
//! Precedence: a variable set in the environment wins over the file, which wins over the defaults.
//! Topic and bucket variables hold *requested* names, as a ClowdApp does: the name a variable (or
//! its default) gives is looked up among the file's `requestedName`s and replaced by the real
//! `name`. Parsing only: the binary reads the file and passes its text in, and writes the CA
//! certificates the file holds (Kafka's `cacert`, the database's `rdsCa`) to files whose paths it
//! passes back in [`CaFiles`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{BadVariable, BucketNames, ConfigError, EnvMap};

pub(super) const VARIABLES: &[&str] = &["ACG_CONFIG"];

/// The variable naming the file.
pub const ACG_CONFIG: &str = "ACG_CONFIG";

/// Where intake serves Prometheus metrics; Clowder's `metricsPath` must agree.
const METRICS_PATH: &str = "/metrics";

/// How the parts share processes, which decides the listener each port goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One part per process (`intake ingress`, `tracker`, `validator`, `pipeline`): the part with
    /// an API (ingress, tracker) listens on the public port, metrics go to the metrics port.
    OnePart,
    /// `intake serve`: ingress on the public port with metrics on the metrics port, the tracker on
    /// the private port (when Clowder gives one).
    Serve,
}

/// A parsed app-config: what intake takes from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppConfig {
    #[serde(default)]
    public_port: Option<u16>,
    /// Deprecated by Clowder for `publicPort`, still written by older operators.
    #[serde(default)]
    web_port: Option<u16>,
    #[serde(default)]
    private_port: Option<u16>,
    metrics_port: u16,
    metrics_path: String,
    #[serde(default)]
    kafka: Option<Kafka>,
    #[serde(default)]
    object_store: Option<ObjectStore>,
    #[serde(default)]
    database: Option<Database>,
}

#[derive(Debug, Clone, Deserialize)]
struct Kafka {
    brokers: Vec<Broker>,
    #[serde(default)]
    topics: Vec<Named>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Broker {
    hostname: String,
    #[serde(default)]
    port: Option<u16>,
    /// PEM of the CA that signed the brokers' certificates.
    #[serde(default)]
    cacert: Option<String>,
    #[serde(default)]
    authtype: Option<String>,
    #[serde(default)]
    sasl: Option<Sasl>,
    #[serde(default)]
    security_protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sasl {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    sasl_mechanism: Option<String>,
    #[serde(default)]
    security_protocol: Option<String>,
}

/// A topic or bucket: the name the ClowdApp asked for and the one it got.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Named {
    requested_name: String,
    name: String,
    #[serde(default)]
    access_key: Option<String>,
    #[serde(default)]
    secret_key: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectStore {
    hostname: String,
    port: u16,
    tls: bool,
    #[serde(default)]
    buckets: Vec<Named>,
    #[serde(default)]
    access_key: Option<String>,
    #[serde(default)]
    secret_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Database {
    hostname: String,
    port: u16,
    name: String,
    username: String,
    password: String,
    #[serde(default)]
    ssl_mode: Option<String>,
    /// PEM of the CA that signed the database's certificate.
    #[serde(default)]
    rds_ca: Option<String>,
}

/// Where the binary wrote the CA certificates of the app-config (see [`AppConfig::kafka_ca`],
/// [`AppConfig::database_ca`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaFiles {
    /// Becomes `KAFKA_SSL_CA_LOCATION`.
    pub kafka: Option<String>,
    /// Becomes `sslrootcert` of `TRACKER_DATABASE_URL`.
    pub database: Option<String>,
}

fn bad(problem: impl Into<String>) -> ConfigError {
    ConfigError(vec![BadVariable {
        name: ACG_CONFIG.to_owned(),
        problem: problem.into(),
    }])
}

/// A failure to read the file, as a configuration error naming `ACG_CONFIG` (for the binary).
pub fn unreadable(path: &str, error: &std::io::Error) -> ConfigError {
    bad(format!("cannot read {path}: {error}"))
}

/// A failure to write one of the file's CA certificates to `path`, naming `ACG_CONFIG`.
pub fn unwritable(path: &str, error: &std::io::Error) -> ConfigError {
    bad(format!(
        "cannot write its CA certificate to {path}: {error}"
    ))
}

fn pem(text: Option<&String>) -> Option<&str> {
    text.map(|t| t.as_str()).filter(|t| !t.trim().is_empty())
}

impl AppConfig {
    /// Parses the file's text; `path` is only for the message.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text)
            .map_err(|e| bad(format!("{path} is not a Clowder app-config: {e}")))?;
        if config.metrics_path != METRICS_PATH {
            return Err(bad(format!(
                "{path}: metricsPath is {:?}, intake serves metrics at {METRICS_PATH}",
                config.metrics_path
            )));
        }
        if config.kafka.as_ref().is_some_and(|k| k.brokers.is_empty()) {
            return Err(bad(format!("{path}: kafka.brokers is empty")));
        }
        Ok(config)
    }

    /// Requested topic name → the topic's real name on the brokers.
    pub fn topic_names(&self) -> BTreeMap<String, String> {
        self.kafka
            .iter()
            .flat_map(|k| &k.topics)
            .map(|t| (t.requested_name.clone(), t.name.clone()))
            .collect()
    }

    /// The Kafka CA certificate (PEM) to write for `KAFKA_SSL_CA_LOCATION`, if the file has one.
    pub fn kafka_ca(&self) -> Option<&str> {
        pem(self.kafka.as_ref()?.brokers.first()?.cacert.as_ref())
    }

    /// The database CA certificate (PEM) to write for `sslrootcert`, if the file has one.
    pub fn database_ca(&self) -> Option<&str> {
        pem(self.database.as_ref()?.rds_ca.as_ref())
    }

    /// The variables the file provides, before precedence: name → value.
    pub fn variables(
        &self,
        env: &EnvMap,
        layout: Layout,
        ca: &CaFiles,
    ) -> BTreeMap<&'static str, String> {
        let mut vars = BTreeMap::new();
        let any = |port: u16| format!("0.0.0.0:{port}");
        let metrics = any(self.metrics_port);
        let public = self.public_port.or(self.web_port).map(any);
        match layout {
            Layout::OnePart => {
                if let Some(public) = &public {
                    vars.insert("INGRESS_LISTEN", public.clone());
                    vars.insert("TRACKER_LISTEN", public.clone());
                }
                vars.insert("INGRESS_METRICS_LISTEN", metrics.clone());
                vars.insert("TRACKER_METRICS_LISTEN", metrics.clone());
                vars.insert("VALIDATOR_LISTEN", metrics.clone());
                vars.insert("PIPELINE_LISTEN", metrics);
            }
            Layout::Serve => {
                if let Some(public) = public {
                    vars.insert("INGRESS_LISTEN", public);
                }
                if let Some(private) = self.private_port {
                    vars.insert("TRACKER_LISTEN", any(private));
                }
                vars.insert("INGRESS_METRICS_LISTEN", metrics);
            }
        }
        if let Some(kafka) = &self.kafka {
            kafka_variables(kafka, &mut vars);
            if let Some(path) = &ca.kafka {
                vars.insert("KAFKA_SSL_CA_LOCATION", path.clone());
            }
        }
        if let Some(store) = &self.object_store {
            store_variables(store, env, &mut vars);
        }
        if let Some(db) = &self.database {
            let mut url = format!(
                "postgres://{}:{}@{}:{}/{}",
                encode(&db.username),
                encode(&db.password),
                db.hostname,
                db.port,
                encode(&db.name)
            );
            let mut query = Vec::new();
            if let Some(mode) = db.ssl_mode.as_deref().filter(|m| !m.is_empty()) {
                query.push(format!("sslmode={}", encode(mode)));
            }
            if let Some(path) = &ca.database {
                query.push(format!("sslrootcert={}", encode(path)));
            }
            if !query.is_empty() {
                url.push('?');
                url.push_str(&query.join("&"));
            }
            vars.insert("TRACKER_DATABASE_URL", url);
        }
        vars
    }
}

fn kafka_variables(kafka: &Kafka, vars: &mut BTreeMap<&'static str, String>) {
    let brokers: Vec<String> = kafka
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.hostname, b.port.unwrap_or(9092)))
        .collect();
    vars.insert("KAFKA_BROKERS", brokers.join(","));
    // Clowder gives every broker the same credentials; the first one's are the cluster's.
    let first = &kafka.brokers[0];
    let sasl = first
        .sasl
        .as_ref()
        .filter(|_| first.authtype.as_deref() == Some("sasl"));
    if let Some(sasl) = sasl {
        let protocol = sasl
            .security_protocol
            .clone()
            .or_else(|| first.security_protocol.clone())
            .unwrap_or_else(|| "SASL_SSL".to_owned());
        vars.insert("KAFKA_SECURITY_PROTOCOL", protocol);
        // Clowder's own client libraries default to SCRAM-SHA-512, as its managed Kafka does.
        let mechanism = sasl
            .sasl_mechanism
            .clone()
            .unwrap_or_else(|| "SCRAM-SHA-512".to_owned());
        vars.insert("KAFKA_SASL_MECHANISM", mechanism);
        if let Some(user) = &sasl.username {
            vars.insert("KAFKA_SASL_USERNAME", user.clone());
        }
        if let Some(password) = &sasl.password {
            vars.insert("KAFKA_SASL_PASSWORD", password.clone());
        }
    } else if let Some(protocol) = &first.security_protocol {
        vars.insert("KAFKA_SECURITY_PROTOCOL", protocol.clone());
    }
}

fn store_variables(store: &ObjectStore, env: &EnvMap, vars: &mut BTreeMap<&'static str, String>) {
    let scheme = if store.tls { "https" } else { "http" };
    vars.insert(
        "S3_ENDPOINT_URL",
        format!("{scheme}://{}:{}", store.hostname, store.port),
    );
    let defaults = BucketNames::default();
    let mut ours = Vec::new();
    for (var, default) in [
        ("S3_QUARANTINE", &defaults.quarantine),
        ("S3_PERM", &defaults.perm),
        ("S3_REJECT", &defaults.reject),
    ] {
        let requested = env
            .get(var)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .unwrap_or(default);
        if let Some(bucket) = store.buckets.iter().find(|b| b.requested_name == requested) {
            vars.insert(var, bucket.name.clone());
            ours.push(bucket);
        }
    }
    // Credentials of intake's own buckets first, else the store's.
    let keys = ours
        .iter()
        .find_map(|b| Some((b.access_key.clone()?, b.secret_key.clone()?)))
        .or_else(|| Some((store.access_key.clone()?, store.secret_key.clone()?)));
    if let Some((access, secret)) = keys {
        vars.insert("AWS_ACCESS_KEY_ID", access);
        vars.insert("AWS_SECRET_ACCESS_KEY", secret);
    }
    if let Some(region) = ours.iter().find_map(|b| b.region.clone()) {
        vars.insert("AWS_REGION", region);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a URL's user, password, path).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `env` with the file's variables added where `env` leaves them unset or empty (a variable set
/// in the environment wins).
pub fn overlay(env: &EnvMap, config: &AppConfig, layout: Layout, ca: &CaFiles) -> EnvMap {
    let set = |name: &str| env.get(name).is_some_and(|v| !v.trim().is_empty());
    let mut merged = env.clone();
    for (name, value) in config.variables(env, layout, ca) {
        // The older names the configuration also reads count as set too.
        let explicit = set(name)
            || (name == "KAFKA_BROKERS" && set("KAFKAMQ"))
            || (name == "AWS_REGION" && set("AWS_DEFAULT_REGION"));
        let is_bucket = matches!(name, "S3_QUARANTINE" | "S3_PERM" | "S3_REJECT");
        // A bucket variable is a requested name: its real name replaces it.
        if !explicit || is_bucket {
            merged.insert(name.to_owned(), value);
        }
    }
    merged
}

#[cfg(test)]
mod tests;
