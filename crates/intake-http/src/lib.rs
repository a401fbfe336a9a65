//! HTTP pieces that ingress and the tracker share, so both speak the same way: the JSON error body
//! ([`error`]), the `x-rh-identity` rules ([`identity`]), liveness/readiness ([`health`]), Prometheus
//! text ([`metrics`]), JSON 404/405 answers ([`fallback`]) and serving with graceful shutdown
//! ([`serve`]); a line and a span per request ([`access_log`]).

pub mod access_log;
pub mod conn;
pub mod error;
pub mod fallback;
pub mod health;
pub mod identity;
pub mod metrics;
pub mod serve;

pub use error::ApiError;
