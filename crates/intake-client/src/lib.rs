//! # intake-client
//!
//! The client side of intake, spoken over HTTP exactly as a customer's machine or a benchmark would:
//!
//! - [`upload`]: one file streamed as `multipart/form-data` to `POST /api/ingress/v1/upload`, never
//!   read whole into memory, retried on 503 and connection errors (honouring `Retry-After`), with an
//!   id chosen up front so a retry after a lost 202 is recognised by its 409;
//! - [`track`]: following `GET /api/ingress/v1/track/<request_id>` until a terminal status;
//! - [`load`]: a load generator that keeps the client cheap (bodies built once and shared, one
//!   connection per worker) so that the numbers measure the server.
//!
//! The multipart framing is written by hand in [`multipart`] because both callers need it as shared
//! [`bytes::Bytes`] around a body they supply (a file stream, or a reused payload).

pub mod answer;
pub mod error;
pub mod load;
pub mod multipart;
pub mod retry;
pub mod size;
pub mod track;
pub mod upload;

pub use error::{ClientError, ServerRefusal};
pub use url::Url;

/// The path of the upload route under the canonical prefix.
pub const UPLOAD_PATH: &str = "api/ingress/v1/upload";

/// The path of the track route under the canonical prefix (the request id follows).
pub const TRACK_PATH: &str = "api/ingress/v1/track/";

/// Where `intake serve` listens by default (`INGRESS_LISTEN` defaults to `0.0.0.0:8080`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Joins a route onto a base URL, keeping any path prefix the base has (a gateway mount point).
pub fn route(base: &url::Url, path: &str) -> Result<url::Url, ClientError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path).map_err(|e| ClientError::BadUrl {
        url: base.to_string(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_keep_the_base_path() {
        let base = url::Url::parse("http://h:1/gateway").unwrap();
        assert_eq!(
            route(&base, UPLOAD_PATH).unwrap().as_str(),
            "http://h:1/gateway/api/ingress/v1/upload"
        );
        let base = url::Url::parse("http://h:1").unwrap();
        assert_eq!(
            route(&base, TRACK_PATH).unwrap().as_str(),
            "http://h:1/api/ingress/v1/track/"
        );
    }

    #[test]
    fn default_url_uses_the_default_ingress_port() {
        let config =
            intake_core::config::IngressConfig::from_env(&intake_core::config::EnvMap::default())
                .unwrap();
        let port = config.listen.rsplit(':').next().unwrap();
        assert!(DEFAULT_URL.ends_with(&format!(":{port}")), "{config:?}");
    }
}
