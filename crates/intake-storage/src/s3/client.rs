//! Building the S3 client from [`S3Config`]: endpoint, path style, region, credentials (static keys
//! or the default AWS chain) and timeouts on every call.

use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use intake_core::config::S3Config;

use crate::StorageError;

/// Connecting must not take longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence while reading an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// One attempt of one call (an 8 MiB part on a slow link included).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The endpoint as logs and errors show it.
pub(crate) fn endpoint_label(s3: &S3Config) -> String {
    s3.endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s3.region))
}

/// The access key id as errors show it (never the secret).
pub(crate) fn access_key_label(s3: &S3Config) -> String {
    match &s3.access_key_id {
        Some(id) => id.clone(),
        None => "(from the default AWS credential chain)".to_owned(),
    }
}

pub(crate) async fn build(s3: &S3Config) -> Result<aws_sdk_s3::Client, StorageError> {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(s3.region.clone()))
        .timeout_config(timeouts);
    match (&s3.access_key_id, &s3.secret_access_key) {
        (Some(id), Some(secret)) => {
            loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "intake-config"));
        }
        (None, None) => {}
        _ => {
            return Err(StorageError::Config(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together (or both left empty for the \
                 default AWS credential chain)"
                    .into(),
            ))
        }
    }
    if let Some(endpoint) = &s3.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(s3.force_path_style)
        // Checksum trailers (aws-chunked) are not understood by every S3-compatible store; the
        // payload's own SHA-256 is what intake records.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(aws_sdk_s3::Client::from_conf(config))
}
