//! What can go wrong on the bus.

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("publishing to {topic:?} was not acknowledged within {timeout_ms} ms")]
    Timeout { topic: String, timeout_ms: u64 },
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    #[error("the consumer was closed")]
    Closed,
    #[error("bus configuration: {0}")]
    Config(String),
    #[error("bus backend: {0}")]
    Backend(String),
    /// A commit for a partition this consumer no longer owns (reassigned since delivery): retrying
    /// cannot succeed, and nothing is lost, since its next owner receives the message again.
    #[error("not owned: {0}")]
    NotOwned(String),
}

impl BusError {
    /// Whether retrying later may succeed (as opposed to a configuration mistake).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BusError::Timeout { .. } | BusError::Unavailable(_) | BusError::Backend(_)
        )
    }
}
