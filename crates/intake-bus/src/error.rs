//! What can go wrong on the bus.

use std::sync::Arc;

/// The failure underneath a [`BusError`] (a librdkafka or database error), kept for
/// [`std::error::Error::source`]. Shared, so one failure of the embedded bus's writer reaches every
/// publisher that waited on it.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A bus failure. `Display` names the cause too (log lines print errors with `%`, which shows only
/// the top error); [`std::error::Error::source`] is the cause itself, so a caller can downcast it to
/// the librdkafka or sqlx error.
#[derive(Debug, Clone)]
pub enum BusError {
    Timeout {
        topic: String,
        timeout_ms: u64,
    },
    UnknownTopic(String),
    /// The broker or the embedded bus's database cannot be reached or is busy: try again later.
    Unavailable {
        context: String,
        source: Option<Cause>,
    },
    Closed,
    /// A setting is wrong: retrying with the same settings cannot succeed.
    Config {
        context: String,
        source: Option<Cause>,
    },
    /// The backend failed in a way not known to be passing (retried, but logged loudly).
    Backend {
        context: String,
        source: Option<Cause>,
    },
    /// A commit for a partition this consumer no longer owns (reassigned since delivery): retrying
    /// cannot succeed, and nothing is lost, since its next owner receives the message again.
    NotOwned(String),
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Timeout { topic, timeout_ms } => write!(
                f,
                "publishing to {topic:?} was not acknowledged within {timeout_ms} ms"
            ),
            BusError::UnknownTopic(topic) => write!(f, "topic {topic:?} does not exist"),
            BusError::Unavailable { context, source } => {
                write!(f, "the bus is unavailable: {}", with_cause(context, source))
            }
            BusError::Closed => f.write_str("the consumer was closed"),
            BusError::Config { context, source } => {
                write!(f, "bus configuration: {}", with_cause(context, source))
            }
            BusError::Backend { context, source } => {
                write!(f, "bus backend: {}", with_cause(context, source))
            }
            BusError::NotOwned(what) => write!(f, "not owned: {what}"),
        }
    }
}

impl std::error::Error for BusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BusError::Unavailable { source, .. }
            | BusError::Config { source, .. }
            | BusError::Backend { source, .. } => source
                .as_deref()
                .map(|cause| cause as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

/// What a caller does about a [`BusError`]: the one distinction retries are driven by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retrying later may succeed (an outage, a timeout, a busy database).
    Transient,
    /// The partition went to another member: drop the commit, the new owner delivers again.
    NotOwned,
    /// Retrying cannot succeed (configuration, an unknown topic, a closed consumer).
    Permanent,
}

impl BusError {
    /// [`BusError::Unavailable`] without an underlying error.
    pub fn unavailable(context: impl Into<String>) -> Self {
        BusError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// [`BusError::Unavailable`] caused by `source`.
    pub fn unavailable_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BusError::Unavailable {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// [`BusError::Config`] without an underlying error.
    pub fn config(context: impl Into<String>) -> Self {
        BusError::Config {
            context: context.into(),
            source: None,
        }
    }

    /// [`BusError::Config`] caused by `source`.
    pub fn config_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BusError::Config {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// [`BusError::Backend`] without an underlying error.
    pub fn backend(context: impl Into<String>) -> Self {
        BusError::Backend {
            context: context.into(),
            source: None,
        }
    }

    /// [`BusError::Backend`] caused by `source`.
    pub fn backend_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BusError::Backend {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// Whether to retry, drop or give up.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BusError::Timeout { .. } | BusError::Unavailable { .. } | BusError::Backend { .. } => {
                ErrorKind::Transient
            }
            BusError::NotOwned(_) => ErrorKind::NotOwned,
            BusError::UnknownTopic(_) | BusError::Closed | BusError::Config { .. } => {
                ErrorKind::Permanent
            }
        }
    }

    /// Whether retrying later may succeed: [`ErrorKind::Transient`].
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }
}

/// `context`, then the cause's own message when there is one: log lines print errors with `%`,
/// which shows only the top error, and the cause is the part that says what the broker answered.
fn with_cause(context: &str, source: &Option<Cause>) -> String {
    match source {
        Some(cause) => format!("{context}: {cause}"),
        None => context.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn the_cause_is_kept_as_the_source_and_named_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = BusError::unavailable_from("connecting to the broker", io);
        assert_eq!(
            e.to_string(),
            "the bus is unavailable: connecting to the broker: refused"
        );
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), "refused");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the cause itself, not a wrapper");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(BusError::config("KAFKA_BROKERS is empty")
            .source()
            .is_none());
    }

    #[test]
    fn kinds_drive_what_a_caller_does() {
        assert_eq!(BusError::unavailable("x").kind(), ErrorKind::Transient);
        assert_eq!(BusError::backend("x").kind(), ErrorKind::Transient);
        let timeout = BusError::Timeout {
            topic: "t".into(),
            timeout_ms: 1,
        };
        assert_eq!(timeout.kind(), ErrorKind::Transient);
        assert_eq!(BusError::NotOwned("p".into()).kind(), ErrorKind::NotOwned);
        assert!(!BusError::NotOwned("p".into()).is_transient());
        assert_eq!(BusError::config("x").kind(), ErrorKind::Permanent);
        assert_eq!(
            BusError::UnknownTopic("t".into()).kind(),
            ErrorKind::Permanent
        );
        assert_eq!(BusError::Closed.kind(), ErrorKind::Permanent);
    }

    #[test]
    fn a_copy_shares_the_cause() {
        let io = std::io::Error::other("disk");
        let e = BusError::backend_from("writing", io);
        let copy = e.clone();
        assert_eq!(copy.to_string(), e.to_string());
        assert!(copy.source().is_some());
    }
}
