//! Logging set-up from `LOG_LEVEL` and `LOG_FORMAT`.

use intake_core::config::{GeneralConfig, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(general: &GeneralConfig) {
    // Quiet the chattiest dependencies unless asked for through RUST_LOG.
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},sqlx=warn,hyper=warn,aws_config=warn,aws_smithy_runtime=warn,rdkafka=warn",
            general.log_level
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match general.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
