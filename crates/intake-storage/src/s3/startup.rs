//! Bucket checks at start-up and on readiness (storage.md, "Start-up"): a missing bucket is created
//! or named in an error, rejected credentials name the endpoint and the access key id, and an
//! unreachable endpoint is reported as such so that the store opens anyway.

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use super::errors;
use super::S3Store;
use crate::{Bucket, StorageError};

/// Why the buckets could not be confirmed.
pub(super) enum BucketsNotReady {
    /// The endpoint did not answer (or answered 5xx): start anyway, readiness stays 503.
    Unreachable(StorageError),
    /// A verdict that stops start-up: a missing bucket, rejected credentials.
    Fatal(StorageError),
}

/// Makes sure all three buckets exist, creating the missing ones when `STORAGE_CREATE_BUCKETS`.
pub(super) async fn ensure_buckets(store: &S3Store) -> Result<(), BucketsNotReady> {
    for bucket in Bucket::ALL {
        let name = store.name(bucket);
        let err = match store.client.head_bucket().bucket(name).send().await {
            Ok(_) => continue,
            Err(e) => e,
        };
        match errors::status(&err) {
            Some(404) if store.create_buckets => create_bucket(store, bucket).await?,
            Some(404) => {
                return Err(BucketsNotReady::Fatal(StorageError::BucketMissing {
                    bucket: name.to_owned(),
                    var: bucket.env_var(),
                    endpoint: store.endpoint.clone(),
                }))
            }
            Some(401 | 403) => {
                return Err(BucketsNotReady::Fatal(
                    store.credentials_rejected(name, &err),
                ))
            }
            Some(status) if status < 500 => {
                return Err(BucketsNotReady::Fatal(errors::backend(
                    format!("head bucket {name:?}"),
                    err,
                )))
            }
            _ => {
                return Err(BucketsNotReady::Unreachable(errors::backend(
                    format!("head bucket {name:?}"),
                    err,
                )))
            }
        }
    }
    Ok(())
}

async fn create_bucket(store: &S3Store, bucket: Bucket) -> Result<(), BucketsNotReady> {
    let name = store.name(bucket);
    let mut call = store.client.create_bucket().bucket(name);
    let region = store
        .client
        .config()
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_default();
    // us-east-1 is the one region that must not be named as a location constraint.
    if !region.is_empty() && region != "us-east-1" {
        let location = CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(region.as_str()))
            .build();
        call = call.create_bucket_configuration(location);
    }
    match call.send().await {
        Ok(_) => {
            tracing::info!(bucket = name, variable = bucket.env_var(), endpoint = %store.endpoint, "created bucket");
            Ok(())
        }
        // Another instance starting at the same time created it.
        Err(e) if matches!(errors::code(&e), Some("BucketAlreadyOwnedByYou")) => Ok(()),
        Err(e) if matches!(errors::status(&e), Some(401 | 403)) => {
            Err(BucketsNotReady::Fatal(store.credentials_rejected(name, &e)))
        }
        Err(e) if errors::unreachable(&e) || errors::status(&e).is_some_and(|s| s >= 500) => Err(
            BucketsNotReady::Unreachable(errors::backend(format!("create bucket {name:?}"), e)),
        ),
        Err(e) => Err(BucketsNotReady::Fatal(errors::backend(
            format!("create bucket {name:?}"),
            e,
        ))),
    }
}
