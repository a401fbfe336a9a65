//! The `localdisk` driver: one folder per bucket under `STORAGE_DIR`, a JSON sidecar per object, and
//! HMAC-signed `/download` URLs that ingress serves (storage.md).

mod group_sync;
mod layout;
mod spool;
mod write;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::time::Duration;

use async_trait::async_trait;
use intake_core::config::StorageConfig;
use intake_core::RequestId;
use tokio_util::io::ReaderStream;

pub use layout::check_one_filesystem;
use layout::Layout;

use crate::signing::UrlSigner;
use crate::{same_or_conflict, Bucket, ByteStream, Object, ObjectMeta, PayloadStore, StorageError};

/// Read buffer for streaming a payload back.
const READ_CHUNK: usize = 64 * 1024;

/// Payloads on the local file system. All buckets must share one file system (copies are hard links).
#[derive(Debug)]
pub struct LocalDiskStore {
    layout: Layout,
    signer: UrlSigner,
    public_url: String,
    url_expiry: Duration,
}

impl LocalDiskStore {
    /// Prepares `config.dir` as storage.md's start-up table says: creates missing bucket folders when
    /// `config.create_buckets` (otherwise [`StorageError::BucketMissing`]), empties `.tmp/`, removes
    /// orphan sidecars and checks that the buckets share one file system. Download URLs are signed
    /// with `signer` and start with `public_url` (`INGRESS_PUBLIC_URL`).
    pub async fn open(
        config: &StorageConfig,
        signer: UrlSigner,
        public_url: &str,
    ) -> Result<Self, StorageError> {
        let layout = Layout::new(&config.dir, &config.buckets);
        let prepared = layout.clone();
        let create = config.create_buckets;
        tokio::task::spawn_blocking(move || prepared.prepare(create))
            .await
            .map_err(|e| StorageError::backend("preparing the storage folders", e))??;
        Ok(Self {
            layout,
            signer,
            public_url: public_url.to_owned(),
            url_expiry: config.url_expiry,
        })
    }

    fn not_found(&self, bucket: Bucket, key: &str) -> StorageError {
        StorageError::NotFound {
            bucket: self.layout.name(bucket).to_owned(),
            key: key.to_owned(),
        }
    }

    /// Reads the sidecar of an object whose data file was just seen. A missing sidecar while the data
    /// file is gone too means a concurrent delete: `NotFound`.
    async fn read_meta(&self, bucket: Bucket, key: &str) -> Result<ObjectMeta, StorageError> {
        let path = self.layout.sidecar(bucket, key);
        match tokio::fs::read(&path).await {
            Ok(json) => {
                let table: BTreeMap<String, String> =
                    serde_json::from_slice(&json).map_err(|e| {
                        StorageError::io(
                            format!("reading {}", path.display()),
                            std::io::Error::new(ErrorKind::InvalidData, e),
                        )
                    })?;
                Ok(ObjectMeta::from_map(&table))
            }
            Err(e)
                if e.kind() == ErrorKind::NotFound
                    && !write::exists(&self.layout.data(bucket, key)).await? =>
            {
                Err(self.not_found(bucket, key))
            }
            Err(e) => Err(StorageError::io(format!("reading {}", path.display()), e)),
        }
    }
}

#[async_trait]
impl PayloadStore for LocalDiskStore {
    fn bucket_name(&self, bucket: Bucket) -> &str {
        self.layout.name(bucket)
    }

    async fn put_new(
        &self,
        bucket: Bucket,
        key: &RequestId,
        body: ByteStream,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta, StorageError> {
        write::put_new(&self.layout, bucket, key.as_str(), body, meta).await
    }

    async fn head(&self, bucket: Bucket, key: &RequestId) -> Result<ObjectMeta, StorageError> {
        if !write::exists(&self.layout.data(bucket, key.as_str())).await? {
            return Err(self.not_found(bucket, key.as_str()));
        }
        self.read_meta(bucket, key.as_str()).await
    }

    async fn get(&self, bucket: Bucket, key: &RequestId) -> Result<Object, StorageError> {
        let path = self.layout.data(bucket, key.as_str());
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(self.not_found(bucket, key.as_str()))
            }
            Err(e) => return Err(StorageError::io(format!("opening {}", path.display()), e)),
        };
        // The open file keeps its bytes even if the object is deleted while it streams.
        let meta = self.read_meta(bucket, key.as_str()).await?;
        Ok(Object {
            meta,
            body: Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)),
        })
    }

    async fn copy(&self, src: Bucket, dst: Bucket, key: &RequestId) -> Result<(), StorageError> {
        let source = match self.head(src, key).await {
            Ok(meta) => Some(meta),
            Err(StorageError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let existing = match self.head(dst, key).await {
            Ok(meta) => Some(meta),
            Err(StorageError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        match (source, existing) {
            // A move that already finished, being repeated.
            (None, Some(_)) => Ok(()),
            (None, None) => Err(self.not_found(src, key.as_str())),
            (Some(source), Some(existing)) => {
                same_or_conflict(self.bucket_name(dst), key, &existing, &source)
            }
            (Some(source), None) => {
                match write::link_copy(&self.layout, src, dst, key.as_str()).await {
                    // A concurrent copy of the same key got there first: compare with what it wrote.
                    Err(StorageError::AlreadyExists { .. }) => {
                        let existing = self.head(dst, key).await?;
                        same_or_conflict(self.bucket_name(dst), key, &existing, &source)
                    }
                    other => other,
                }
            }
        }
    }

    async fn delete(&self, bucket: Bucket, key: &RequestId) -> Result<(), StorageError> {
        // Data file first: it is the commit point, so the object is gone as soon as it is.
        for path in [
            self.layout.data(bucket, key.as_str()),
            self.layout.sidecar(bucket, key.as_str()),
        ] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(format!("removing {}", path.display()), e)),
            }
        }
        write::sync_dir(&self.layout, bucket).await
    }

    async fn url(&self, bucket: Bucket, key: &RequestId) -> Result<String, StorageError> {
        if bucket == Bucket::Reject {
            return Err(StorageError::NoUrlForReject);
        }
        let lifetime = i64::try_from(self.url_expiry.as_secs()).unwrap_or(i64::MAX);
        let expires = chrono::Utc::now().timestamp().saturating_add(lifetime);
        Ok(self.signer.url(
            &self.public_url,
            self.layout.name(bucket),
            key.as_str(),
            expires,
        ))
    }

    async fn check(&self) -> Result<(), StorageError> {
        for bucket in Bucket::ALL {
            let dir = self.layout.dir(bucket);
            match tokio::fs::metadata(&dir).await {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(StorageError::io(
                        format!("checking {}", dir.display()),
                        std::io::Error::new(ErrorKind::NotADirectory, "not a directory"),
                    ))
                }
                Err(e) => return Err(StorageError::io(format!("checking {}", dir.display()), e)),
            }
        }
        Ok(())
    }
}
