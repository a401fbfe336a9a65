//! What can stop the tracker.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database refused the tracker (rejected credentials, no such database): a configuration
    /// error naming the variable and where it points, never the password.
    #[error("{variable}: PostgreSQL at {target}: {problem}")]
    Database {
        variable: &'static str,
        target: String,
        problem: String,
    },
    #[error("bus: {0}")]
    Bus(#[from] intake_bus::BusError),
    /// Status ingestion stopped on its own (a handler panic, a bus failure retrying cannot fix).
    #[error(transparent)]
    Ingest(#[from] intake_bus::runtime::RuntimeError),
    /// Its source (the reason) follows in the error chain.
    #[error("{variable}: cannot listen on {address}")]
    Listen {
        variable: &'static str,
        address: String,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("bad mock parameters: {0}")]
    Mock(String),
}
