//! The `s3` driver: any S3-compatible store (AWS, MinIO, Ceph, …) through the AWS SDK. Metadata is
//! user metadata (`x-amz-meta-<key>`), download URLs are presigned GETs (storage.md).
//!
//! Create-only has three guards, because S3-compatible stores differ: a claim on the key within this
//! process, a `HEAD` pre-check, and `If-None-Match: *` on the final write (`PutObject` or
//! `CompleteMultipartUpload`), which AWS applies atomically. Observed on s3s-fs 0.14 (the test
//! server): `If-None-Match: *` is honoured on `PutObject` and `CompleteMultipartUpload` (412), but
//! checked before the body is stored rather than atomically with it, and ignored on `CopyObject`;
//! self-copy with `MetadataDirective=REPLACE`, multipart abort and presigned GETs (expiry checked)
//! work; `ListMultipartUploads` answers 501. A store answering 501 to `If-None-Match` is remembered
//! and the pre-check becomes the only cross-process guard, as storage.md allows.

mod client;
mod errors;
mod startup;
mod upload;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::MetadataDirective;
use intake_core::config::{BucketNames, StorageConfig};
use intake_core::RequestId;
use tokio_util::io::ReaderStream;

pub use upload::PART_SIZE;

use crate::{
    same_or_conflict, Bucket, ByteStream, Object, ObjectMeta, PayloadStore, StorageError, Swept,
};

/// The user-metadata key that marks a quarantine copy as retired (its payload moved out, the copy
/// kept for the links already handed out), with the Unix time of the move.
const RETIRED_AT: &str = "retired-at";

/// When `metadata` marks a retired quarantine copy, the Unix time it was retired (0 if unreadable).
fn retired_at(metadata: Option<&HashMap<String, String>>) -> Option<i64> {
    let (_, value) = metadata?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(RETIRED_AT))?;
    Some(value.parse().unwrap_or(0))
}

/// How often retired copies are swept: an eighth of their retention, between 1 s and 10 min (each
/// sweep lists the quarantine bucket).
fn sweep_period(retain: Duration) -> Duration {
    (retain / 8).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Read buffer for streaming an object back.
const READ_CHUNK: usize = 64 * 1024;

/// Payloads in an S3-compatible store.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    names: BucketNames,
    url_expiry: Duration,
    /// `S3_QUARANTINE_RETAIN`: how long a retired quarantine copy is kept for its links.
    quarantine_retain: Duration,
    /// The endpoint as errors and logs show it.
    endpoint: String,
    /// The access key id as errors show it.
    access_key: String,
    create_buckets: bool,
    /// Set once the three buckets were confirmed (at start-up, or by a later `check`).
    buckets_ready: AtomicBool,
    /// Cleared when the store answers 501 to `If-None-Match: *`.
    conditional_writes: AtomicBool,
    /// Keys this process is writing right now. Two writes of one key from the same process are
    /// decided here, because some S3-compatible stores check `If-None-Match` before receiving the
    /// body rather than atomically with the final write.
    writing: Mutex<HashSet<(Bucket, String)>>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("endpoint", &self.endpoint)
            .field("buckets", &self.names)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Connects as storage.md's start-up table says. A missing bucket is created when
    /// `config.create_buckets`, otherwise it is [`StorageError::BucketMissing`]; rejected credentials
    /// are a [`StorageError::Config`] naming the endpoint and the access key id. An endpoint that does
    /// not answer is logged and the store opens anyway: [`PayloadStore::check`] fails (and retries the
    /// bucket checks) until it answers.
    pub async fn open(config: &StorageConfig) -> Result<Self, StorageError> {
        let client = client::build(&config.s3).await?;
        let store = Self {
            client,
            names: config.buckets.clone(),
            url_expiry: config.url_expiry,
            quarantine_retain: config.quarantine_retain,
            endpoint: client::endpoint_label(&config.s3),
            access_key: client::access_key_label(&config.s3),
            create_buckets: config.create_buckets,
            buckets_ready: AtomicBool::new(false),
            conditional_writes: AtomicBool::new(true),
            writing: Mutex::new(HashSet::new()),
        };
        match startup::ensure_buckets(&store).await {
            Ok(()) => store.buckets_ready.store(true, Ordering::Relaxed),
            Err(startup::BucketsNotReady::Fatal(e)) => return Err(e),
            Err(startup::BucketsNotReady::Unreachable(e)) => {
                tracing::warn!(endpoint = %store.endpoint, error = %e, "object store unreachable at start-up; not ready until it answers");
            }
        }
        Ok(store)
    }

    /// The SDK client, for tests and tools that need a call the seam does not offer.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Whether the three buckets were confirmed (at start-up or since).
    pub fn buckets_ready(&self) -> bool {
        self.buckets_ready.load(Ordering::Relaxed)
    }

    /// Runs the start-up bucket checks again (creating missing buckets when allowed); logs the
    /// outcome. Used by `check` and by the retry loop of an endpoint that was unreachable.
    async fn confirm_buckets(&self) -> Result<(), StorageError> {
        match startup::ensure_buckets(self).await {
            Ok(()) => {
                if !self.buckets_ready.swap(true, Ordering::Relaxed) {
                    tracing::info!(endpoint = %self.endpoint, "object store answers; buckets confirmed");
                }
                Ok(())
            }
            Err(startup::BucketsNotReady::Fatal(e) | startup::BucketsNotReady::Unreachable(e)) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "object store not ready");
                Err(e)
            }
        }
    }

    /// Retries the bucket checks with backoff (1 s doubling to 60 s) until they pass, logging each
    /// failure. Ends when they pass or when the store is dropped.
    pub(crate) async fn retry_until_ready(store: std::sync::Weak<Self>) {
        let mut delay = Duration::from_secs(1);
        loop {
            tokio::time::sleep(delay).await;
            let Some(store) = store.upgrade() else { return };
            if store.buckets_ready() || store.confirm_buckets().await.is_ok() {
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }

    fn name(&self, bucket: Bucket) -> &str {
        match bucket {
            Bucket::Quarantine => &self.names.quarantine,
            Bucket::Perm => &self.names.perm,
            Bucket::Reject => &self.names.reject,
        }
    }

    fn already_exists(&self, name: &str, key: &str) -> StorageError {
        StorageError::AlreadyExists {
            bucket: name.to_owned(),
            key: key.to_owned(),
        }
    }

    fn not_found(&self, bucket: Bucket, key: &str) -> StorageError {
        StorageError::NotFound {
            bucket: self.name(bucket).to_owned(),
            key: key.to_owned(),
        }
    }

    fn credentials_rejected<E>(
        &self,
        bucket: &str,
        err: &aws_sdk_s3::error::SdkError<E>,
    ) -> StorageError {
        StorageError::Config(format!(
            "{} refused the credentials of access key id {} on bucket {bucket:?} (HTTP {}); check \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            self.endpoint,
            self.access_key,
            errors::status(err).map_or_else(|| "?".to_owned(), |s| s.to_string()),
        ))
    }

    fn conditional_writes_unsupported(&self) {
        if self.conditional_writes.swap(false, Ordering::Relaxed) {
            tracing::warn!(endpoint = %self.endpoint, "the object store does not support If-None-Match; create-only writes rely on the existence pre-check");
        }
    }

    async fn exists(&self, bucket: Bucket, key: &str) -> Result<bool, StorageError> {
        match self
            .client
            .head_object()
            .bucket(self.name(bucket))
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if errors::is_not_found(&e) => Ok(false),
            Err(e) => Err(errors::backend("head object", e)),
        }
    }
}

/// Claims a key for one write in this process; released on drop.
struct WriteClaim<'a> {
    store: &'a S3Store,
    slot: (Bucket, String),
}

impl Drop for WriteClaim<'_> {
    fn drop(&mut self) {
        let mut writing = self.store.writing.lock().unwrap_or_else(|p| p.into_inner());
        writing.remove(&self.slot);
    }
}

fn meta_from(metadata: Option<&HashMap<String, String>>, content_type: Option<&str>) -> ObjectMeta {
    let table: BTreeMap<String, String> = metadata
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut meta = ObjectMeta::from_map(&table);
    if meta.content_type.is_empty() {
        meta.content_type = content_type.unwrap_or_default().to_owned();
    }
    meta
}

#[async_trait]
impl PayloadStore for S3Store {
    fn bucket_name(&self, bucket: Bucket) -> &str {
        self.name(bucket)
    }

    async fn put_new(
        &self,
        bucket: Bucket,
        key: &RequestId,
        body: ByteStream,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta, StorageError> {
        let slot = (bucket, key.as_str().to_owned());
        let claimed = self
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot.clone());
        if !claimed {
            return Err(self.already_exists(self.name(bucket), key.as_str()));
        }
        let _claim = WriteClaim { store: self, slot };
        if self.exists(bucket, key.as_str()).await? {
            return Err(self.already_exists(self.name(bucket), key.as_str()));
        }
        upload::put_new(self, bucket, key.as_str(), body, meta).await
    }

    async fn head(&self, bucket: Bucket, key: &RequestId) -> Result<ObjectMeta, StorageError> {
        match self
            .client
            .head_object()
            .bucket(self.name(bucket))
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) if bucket == Bucket::Quarantine && retired_at(out.metadata()).is_some() => {
                Err(self.not_found(bucket, key.as_str()))
            }
            Ok(out) => Ok(meta_from(out.metadata(), out.content_type())),
            Err(e) if errors::is_not_found(&e) => Err(self.not_found(bucket, key.as_str())),
            Err(e) => Err(errors::backend("head object", e)),
        }
    }

    async fn get(&self, bucket: Bucket, key: &RequestId) -> Result<Object, StorageError> {
        match self
            .client
            .get_object()
            .bucket(self.name(bucket))
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) if bucket == Bucket::Quarantine && retired_at(out.metadata()).is_some() => {
                Err(self.not_found(bucket, key.as_str()))
            }
            Ok(out) => {
                let meta = meta_from(out.metadata(), out.content_type());
                let body = ReaderStream::with_capacity(out.body.into_async_read(), READ_CHUNK);
                Ok(Object {
                    meta,
                    body: Box::pin(body),
                })
            }
            Err(e) if errors::is_not_found(&e) => Err(self.not_found(bucket, key.as_str())),
            Err(e) => Err(errors::backend("get object", e)),
        }
    }

    async fn copy(&self, src: Bucket, dst: Bucket, key: &RequestId) -> Result<(), StorageError> {
        match self.head(dst, key).await {
            Ok(existing) => {
                return match self.head(src, key).await {
                    Ok(source) => same_or_conflict(self.name(dst), key, &existing, &source),
                    // A move that already finished, being repeated.
                    Err(StorageError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                };
            }
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let copied = self
            .client
            .copy_object()
            .bucket(self.name(dst))
            .key(key.as_str())
            .copy_source(format!("{}/{}", self.name(src), key.as_str()))
            .if_none_match("*")
            .send()
            .await;
        match copied {
            Ok(_) => Ok(()),
            Err(e) if errors::is_not_found(&e) => Err(self.not_found(src, key.as_str())),
            // A concurrent copy got there first: compare with what it wrote.
            Err(e) if errors::is_precondition_failed(&e) => {
                let existing = self.head(dst, key).await?;
                let source = self.head(src, key).await?;
                same_or_conflict(self.name(dst), key, &existing, &source)
            }
            // A store that does not take the header on copies: the head above was the guard.
            Err(e) if errors::is_not_implemented(&e) => self
                .client
                .copy_object()
                .bucket(self.name(dst))
                .key(key.as_str())
                .copy_source(format!("{}/{}", self.name(src), key.as_str()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| errors::backend("copy object", e)),
            Err(e) => Err(errors::backend("copy object", e)),
        }
    }

    async fn delete(&self, bucket: Bucket, key: &RequestId) -> Result<(), StorageError> {
        match self
            .client
            .delete_object()
            .bucket(self.name(bucket))
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::code(&e) == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(errors::backend("delete object", e)),
        }
    }

    /// Marks the quarantine copy retired by copying it onto itself with one more metadata entry
    /// (S3 cannot change metadata in place); presigned links name only bucket and key, so they go
    /// on serving it. With no retention it is deleted.
    async fn retire(&self, key: &RequestId) -> Result<(), StorageError> {
        if self.quarantine_retain.is_zero() {
            return self.delete(Bucket::Quarantine, key).await;
        }
        let name = self.name(Bucket::Quarantine).to_owned();
        let out = match self
            .client
            .head_object()
            .bucket(&name)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if errors::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(errors::backend("head object", e)),
        };
        if retired_at(out.metadata()).is_some() {
            return Ok(());
        }
        let mut metadata = out.metadata().cloned().unwrap_or_default();
        metadata.insert(
            RETIRED_AT.to_owned(),
            chrono::Utc::now().timestamp().to_string(),
        );
        let mut replace = self
            .client
            .copy_object()
            .bucket(&name)
            .key(key.as_str())
            .copy_source(format!("{name}/{}", key.as_str()))
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(metadata));
        if let Some(content_type) = out.content_type() {
            replace = replace.content_type(content_type);
        }
        match replace.send().await {
            Ok(_) => Ok(()),
            Err(e) if errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(errors::backend("retire object (copy onto itself)", e)),
        }
    }

    /// Lists the quarantine bucket; an object last written before the retention cut-off is read
    /// and deleted if it was retired before it (a self-copy may or may not refresh `LastModified`,
    /// which is never later than the retirement either way).
    async fn sweep_retired(&self) -> Result<Swept, StorageError> {
        let name = self.name(Bucket::Quarantine).to_owned();
        let retain = i64::try_from(self.quarantine_retain.as_secs()).unwrap_or(i64::MAX);
        let cutoff = chrono::Utc::now().timestamp().saturating_sub(retain);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&name)
            .into_paginator()
            .send();
        let mut deleted = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| errors::backend("list objects", e))?;
            for object in page.contents() {
                let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                    continue;
                };
                if modified.secs() > cutoff {
                    continue;
                }
                let out = match self
                    .client
                    .head_object()
                    .bucket(&name)
                    .key(key)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) if errors::is_not_found(&e) => continue,
                    Err(e) => return Err(errors::backend("head object", e)),
                };
                if retired_at(out.metadata()).is_some_and(|at| at <= cutoff) {
                    self.client
                        .delete_object()
                        .bucket(&name)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| errors::backend("delete object", e))?;
                    deleted += 1;
                }
            }
        }
        Ok(Swept {
            deleted,
            again_in: Some(sweep_period(self.quarantine_retain)),
        })
    }

    async fn url(&self, bucket: Bucket, key: &RequestId) -> Result<String, StorageError> {
        if bucket == Bucket::Reject {
            return Err(StorageError::NoUrlForReject);
        }
        presign_get(
            &self.client,
            self.name(bucket),
            key.as_str(),
            self.url_expiry,
        )
        .await
    }

    async fn check(&self) -> Result<(), StorageError> {
        if !self.buckets_ready() {
            self.confirm_buckets().await?;
        }
        for bucket in Bucket::ALL {
            let name = self.name(bucket);
            if let Err(e) = self.client.head_bucket().bucket(name).send().await {
                return Err(match errors::status(&e) {
                    Some(404) => StorageError::BucketMissing {
                        bucket: name.to_owned(),
                        var: bucket.env_var(),
                        endpoint: self.endpoint.clone(),
                    },
                    _ => errors::backend(format!("head bucket {name:?}"), e),
                });
            }
        }
        Ok(())
    }
}

/// A presigned GET for `bucket`/`key`, valid for `expiry`, whose query starts with
/// `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=` (storage.md, "Download URLs").
async fn presign_get(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    expiry: Duration,
) -> Result<String, StorageError> {
    let presigning = PresigningConfig::expires_in(expiry)
        .map_err(|e| StorageError::Config(format!("STORAGE_URL_EXPIRY: {e}")))?;
    let request = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .customize()
        // The SDK names the operation in the query (`x-id=GetObject`) before the signature's
        // parameters; the stock CCX downloader takes only links whose query starts with
        // `X-Amz-Algorithm=…&X-Amz-Credential=`. Dropped before signing, so the signature covers
        // exactly the query that is handed out.
        .mutate_request(|request| {
            if let Some(uri) = without_x_id(request.uri()) {
                // A URI the SDK built, minus one parameter, is valid again.
                let _ = request.set_uri(uri);
            }
        })
        .presigned(presigning)
        .await
        .map_err(|e| errors::backend("presign get object", e))?;
    let url = request.uri().to_owned();
    match url.split_once('?') {
        Some((_, query)) if query.starts_with(crate::links::S3_PRESIGNED_QUERY_START) => Ok(url),
        _ => Err(StorageError::backend(
            "presign get object",
            "the presigned query does not start with X-Amz-Algorithm and X-Amz-Credential",
        )),
    }
}

/// `uri` without its `x-id` query parameter; `None` when it has none.
fn without_x_id(uri: &str) -> Option<String> {
    let (base, query) = uri.split_once('?')?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("x-id"))
        .collect();
    if kept.len() == query.split('&').filter(|p| !p.is_empty()).count() {
        return None;
    }
    Some(if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::config::S3Config;

    #[test]
    fn x_id_is_dropped_and_nothing_else() {
        assert_eq!(
            without_x_id("http://h/b/k?x-id=GetObject").as_deref(),
            Some("http://h/b/k")
        );
        assert_eq!(
            without_x_id("http://h/b/k?a=1&x-id=GetObject&b=2").as_deref(),
            Some("http://h/b/k?a=1&b=2")
        );
        assert_eq!(without_x_id("http://h/b/k?a=1"), None);
        assert_eq!(without_x_id("http://h/b/k"), None);
    }

    /// Presigning needs no network: links for AWS, path-style and virtual-host style, have the
    /// upstream query shape, and the path-style one passes the upstream pattern whole.
    #[tokio::test]
    async fn aws_links_have_the_upstream_shape() {
        let pattern = regex::Regex::new(crate::links::S3_PRESIGNED_PATTERN).expect("pattern");
        for force_path_style in [true, false] {
            let s3 = S3Config {
                endpoint: None,
                access_key_id: Some("AKIDEXAMPLE".into()),
                secret_access_key: Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
                region: "us-east-1".into(),
                force_path_style,
            };
            let client = client::build(&s3).await.expect("client");
            let key = RequestId::generate();
            let url = presign_get(
                &client,
                "insights-upload-perm-test",
                key.as_str(),
                Duration::from_secs(3600),
            )
            .await
            .expect("presign");
            let (base, query) = url.split_once('?').expect("a query");
            assert!(
                query.starts_with(crate::links::S3_PRESIGNED_QUERY_START),
                "{url}"
            );
            assert!(!query.contains("x-id"), "{url}");
            assert!(base.ends_with(&format!("/{key}")), "{url}");
            if force_path_style {
                assert!(pattern.is_match(&url), "{url}");
            } else {
                assert!(
                    base.starts_with("https://insights-upload-perm-test.s3."),
                    "{url}"
                );
            }
        }
    }
}
