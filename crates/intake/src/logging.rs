//! Logging set-up from `LOG_LEVEL` and `LOG_FORMAT`. JSON lines carry `app` (the part running) and
//! `host` as top-level fields, as log aggregators expect.

use std::fmt;

use intake_core::config::{GeneralConfig, LogFormat};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `app` names the part in JSON lines (`intake-ingress`, …).
pub fn init(general: &GeneralConfig, app: &str) {
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
        LogFormat::Json => {
            let format = WithSource {
                inner: tracing_subscriber::fmt::format().json(),
                fields: source_fields(app, &hostname()),
            };
            builder.json().event_format(format).init()
        }
        LogFormat::Text => builder.init(),
    }
}

/// `"app":…,"host":…,` to open every JSON line with.
fn source_fields(app: &str, host: &str) -> String {
    let quote = |v: &str| serde_json::Value::from(v).to_string();
    format!("\"app\":{},\"host\":{},", quote(app), quote(host))
}

/// The machine's name: the kernel's (a pod's name on Kubernetes), else `HOSTNAME`, else "unknown".
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The JSON event format with `fields` added at the front of each object.
struct WithSource<F> {
    inner: F,
    fields: String,
}

impl<S, N, F> FormatEvent<S, N> for WithSource<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                writer.write_char('{')?;
                writer.write_str(&self.fields)?;
                writer.write_str(rest)
            }
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_fields_are_json_strings() {
        let line = format!(
            "{{{}\"x\":1}}",
            source_fields("intake-ingress", "pod \"7\"")
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["app"], "intake-ingress");
        assert_eq!(v["host"], "pod \"7\"");
    }
}
