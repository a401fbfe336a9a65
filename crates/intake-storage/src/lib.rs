//! The object-storage seam. [`PayloadStore`] is the one trait; drivers are [`localdisk`] (a folder
//! per bucket) and [`s3`] (any S3-compatible store), chosen once at start-up by [`open`]. Localdisk
//! download URLs are checked by [`DownloadVerifier`] (ingress serves `/download`). [`faults`] wraps
//! any driver to inject failures in tests. Every driver passes the contract suite in `testsuite`
//! (feature `testsuite`).

pub mod download;
pub mod error;
mod factory;
pub mod faults;
pub mod links;
pub mod localdisk;
pub mod meta;
pub mod s3;
pub mod signing;
pub mod signing_key;
pub mod stream;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use download::{DownloadDenied, DownloadVerifier};
pub use error::StorageError;
pub use factory::{open, Storage};
pub use meta::ObjectMeta;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use intake_core::RequestId;

/// A body in flight: chunks, or an I/O error that aborts the write (ingress uses a custom error kind
/// to say "over the size limit" or "client went away").
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// The three buckets, by role. Names come from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Quarantine,
    Perm,
    Reject,
}

impl Bucket {
    pub const ALL: [Bucket; 3] = [Bucket::Quarantine, Bucket::Perm, Bucket::Reject];

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Quarantine => "quarantine",
            Bucket::Perm => "perm",
            Bucket::Reject => "reject",
        }
    }

    /// The variable that names this bucket.
    pub fn env_var(self) -> &'static str {
        match self {
            Bucket::Quarantine => "S3_QUARANTINE",
            Bucket::Perm => "S3_PERM",
            Bucket::Reject => "S3_REJECT",
        }
    }
}

/// What [`PayloadStore::sweep_retired`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Retired quarantine copies deleted.
    pub deleted: usize,
    /// When to sweep again; `None` when the driver never keeps retired copies.
    pub again_in: Option<std::time::Duration>,
}

/// A stored object's body with its metadata.
pub struct Object {
    pub meta: ObjectMeta,
    pub body: ByteStream,
}

/// Object storage for payloads, as spec/storage.md defines its operations.
///
/// Keys are request ids (flat, no `/` or `.`). Every method is safe to call concurrently.
#[async_trait]
pub trait PayloadStore: Send + Sync + 'static {
    /// The configured name of `bucket`.
    fn bucket_name(&self, bucket: Bucket) -> &str;

    /// Stores a new object, **create-only**: fails with [`StorageError::AlreadyExists`] if the key
    /// exists. Streams with bounded memory. Counts the bytes and the SHA-256 while streaming and
    /// records them as `size` and `sha256` in the metadata before returning (the `size`/`sha256` of
    /// `meta` are ignored). If `body` yields an error, or anything else fails, nothing is left visible
    /// and the body's error is returned as [`StorageError::Body`]. Returns the stored metadata.
    async fn put_new(
        &self,
        bucket: Bucket,
        key: &RequestId,
        body: ByteStream,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta, StorageError>;

    /// The object's metadata; [`StorageError::NotFound`] when absent.
    async fn head(&self, bucket: Bucket, key: &RequestId) -> Result<ObjectMeta, StorageError>;

    /// The object's metadata and a stream of its bytes; [`StorageError::NotFound`] when absent.
    async fn get(&self, bucket: Bucket, key: &RequestId) -> Result<Object, StorageError>;

    /// Copies `key` from `src` to `dst`, keeping the metadata. Idempotent: if `dst` already holds the
    /// key with the same `sha256`, succeeds without writing; a different `sha256` gives
    /// [`StorageError::Conflict`]. [`StorageError::NotFound`] if `src` lacks the key (and `dst` too).
    async fn copy(&self, src: Bucket, dst: Bucket, key: &RequestId) -> Result<(), StorageError>;

    /// Deletes `key` from `bucket`. Idempotent: a missing key is success.
    async fn delete(&self, bucket: Bucket, key: &RequestId) -> Result<(), StorageError>;

    /// The last step of a move out of quarantine (after the copy and everything the copy owes).
    /// Links already handed out for the quarantine copy keep serving until they expire
    /// (storage.md, "a link follows its payload"): a driver whose links cannot follow the payload
    /// (`s3`) keeps the copy for `S3_QUARANTINE_RETAIN`, hidden from every other operation of this
    /// trait (`head`, `get` and `locate` answer as if it were deleted), and [`Self::sweep_retired`]
    /// deletes it afterwards; the others delete at once. Idempotent: a missing key is success.
    async fn retire(&self, key: &RequestId) -> Result<(), StorageError> {
        self.delete(Bucket::Quarantine, key).await
    }

    /// Deletes the retired quarantine copies whose time is up: how many went, and when to sweep
    /// again (`None`: this driver keeps nothing, never again). Safe to run from several processes
    /// at once.
    async fn sweep_retired(&self) -> Result<Swept, StorageError> {
        Ok(Swept::default())
    }

    /// Which buckets hold `key`, in the order quarantine, perm, reject.
    async fn locate(&self, key: &RequestId) -> Result<Vec<Bucket>, StorageError> {
        let mut found = Vec::new();
        for bucket in Bucket::ALL {
            match self.head(bucket, key).await {
                Ok(_) => found.push(bucket),
                Err(StorageError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// A download URL for `key` in `bucket`, valid for the configured expiry. Refused for the reject
    /// bucket ([`StorageError::NoUrlForReject`]). Does not check that the object exists.
    async fn url(&self, bucket: Bucket, key: &RequestId) -> Result<String, StorageError>;

    /// Every bucket exists and answers (used by `/readyz`).
    async fn check(&self) -> Result<(), StorageError>;
}

/// Same `sha256` in the destination → the copy is already done; anything else is a conflict.
pub(crate) fn same_or_conflict(
    dst_name: &str,
    key: &RequestId,
    existing: &ObjectMeta,
    source: &ObjectMeta,
) -> Result<(), StorageError> {
    if existing.sha256 == source.sha256 {
        Ok(())
    } else {
        Err(StorageError::Conflict {
            bucket: dst_name.to_owned(),
            key: key.as_str().to_owned(),
            existing: existing.sha256.clone(),
            incoming: source.sha256.clone(),
        })
    }
}
