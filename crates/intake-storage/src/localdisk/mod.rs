//! The `localdisk` driver: one folder per bucket under `STORAGE_DIR`, a JSON sidecar per object, and
//! HMAC-signed `/download` URLs that ingress serves (storage.md).

mod group_sync;
mod layout;
mod spool;
mod write;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
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
    layout: Arc<Layout>,
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
            layout: Arc::new(layout),
            signer,
            public_url: public_url.to_owned(),
            url_expiry: config.url_expiry,
        })
    }

    /// Runs `work` with the layout on the blocking pool, in one trip.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Layout) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let layout = self.layout.clone();
        write::blocking(what, move || work(&layout)).await
    }
}

fn not_found(layout: &Layout, bucket: Bucket, key: &str) -> StorageError {
    StorageError::NotFound {
        bucket: layout.name(bucket).to_owned(),
        key: key.to_owned(),
    }
}

/// An object's metadata, `None` when there is no such object. Blocking.
fn head_blocking(
    layout: &Layout,
    bucket: Bucket,
    key: &str,
) -> Result<Option<ObjectMeta>, StorageError> {
    let data = layout.data(bucket, key);
    if !exists_blocking(&data)? {
        return Ok(None);
    }
    read_meta(layout, bucket, key, &data)
}

/// Reads the sidecar of an object whose data file (`data`) was just seen. A missing sidecar while
/// the data file is gone too means a concurrent delete: `None`. Blocking.
fn read_meta(
    layout: &Layout,
    bucket: Bucket,
    key: &str,
    data: &Path,
) -> Result<Option<ObjectMeta>, StorageError> {
    let path = layout.sidecar(bucket, key);
    match std::fs::read(&path) {
        Ok(json) => {
            let table: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|e| {
                StorageError::io(
                    format!("reading {}", path.display()),
                    std::io::Error::new(ErrorKind::InvalidData, e),
                )
            })?;
            Ok(Some(ObjectMeta::from_map(&table)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound && !exists_blocking(data)? => Ok(None),
        Err(e) => Err(StorageError::io(format!("reading {}", path.display()), e)),
    }
}

fn exists_blocking(path: &Path) -> Result<bool, StorageError> {
    path.try_exists()
        .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))
}

/// Objects up to this size are read whole in the trip that opens them; larger ones stream, one
/// trip to the blocking pool per chunk.
const READ_WHOLE_MAX: u64 = 256 * 1024;

/// An opened object's body.
enum Opened {
    Read(bytes::Bytes),
    Large(std::fs::File),
}

/// Reads `file` whole when it is small. Blocking.
fn read_small(mut file: std::fs::File) -> std::io::Result<Opened> {
    use std::io::Read;
    let len = file.metadata()?.len();
    if len > READ_WHOLE_MAX {
        return Ok(Opened::Large(file));
    }
    // Data files are never rewritten, so the length read above is the length to come.
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes)?;
    Ok(Opened::Read(bytes.into()))
}

/// What a copy found and did, decided in one trip to the blocking pool.
enum Copied {
    /// The names were linked; the folder is not synced yet.
    Linked,
    /// A move that already finished, being repeated.
    Repeated,
    /// The destination holds an object already: its metadata, and the source's.
    Existing(Box<(ObjectMeta, ObjectMeta)>),
}

fn copy_blocking(
    layout: &Layout,
    src: Bucket,
    dst: Bucket,
    key: &str,
) -> Result<Copied, StorageError> {
    let source = head_blocking(layout, src, key)?;
    let existing = head_blocking(layout, dst, key)?;
    match (source, existing) {
        (None, Some(_)) => Ok(Copied::Repeated),
        (None, None) => Err(not_found(layout, src, key)),
        (Some(source), Some(existing)) => Ok(Copied::Existing(Box::new((existing, source)))),
        (Some(source), None) => match write::link_copy_blocking(layout, src, dst, key) {
            Ok(()) => Ok(Copied::Linked),
            // A concurrent copy of the same key got there first: compare with what it wrote.
            Err(StorageError::AlreadyExists { .. }) => {
                let existing =
                    head_blocking(layout, dst, key)?.ok_or_else(|| not_found(layout, dst, key))?;
                Ok(Copied::Existing(Box::new((existing, source))))
            }
            Err(e) => Err(e),
        },
    }
}

/// Removes the data file (the commit point, so the object is gone as soon as it is) and then the
/// sidecar; missing ones are fine. Blocking.
fn delete_blocking(layout: &Layout, bucket: Bucket, key: &str) -> Result<(), StorageError> {
    for path in [layout.data(bucket, key), layout.sidecar(bucket, key)] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
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
        let owned = key.as_str().to_owned();
        self.blocking("reading a payload's metadata", move |layout| {
            head_blocking(layout, bucket, &owned)?.ok_or_else(|| not_found(layout, bucket, &owned))
        })
        .await
    }

    async fn get(&self, bucket: Bucket, key: &RequestId) -> Result<Object, StorageError> {
        let owned = key.as_str().to_owned();
        let (opened, meta) = self
            .blocking("opening a payload", move |layout| {
                let path = layout.data(bucket, &owned);
                let file = match std::fs::File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Err(not_found(layout, bucket, &owned))
                    }
                    Err(e) => {
                        return Err(StorageError::io(format!("opening {}", path.display()), e))
                    }
                };
                // The open file keeps its bytes even if the object is deleted while it streams.
                let meta = read_meta(layout, bucket, &owned, &path)?
                    .ok_or_else(|| not_found(layout, bucket, &owned))?;
                let opened = read_small(file)
                    .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))?;
                Ok((opened, meta))
            })
            .await?;
        let body: ByteStream = match opened {
            Opened::Read(bytes) => Box::pin(futures::stream::once(async { Ok(bytes) })),
            Opened::Large(file) => Box::pin(ReaderStream::with_capacity(
                tokio::fs::File::from_std(file),
                READ_CHUNK,
            )),
        };
        Ok(Object { meta, body })
    }

    async fn copy(&self, src: Bucket, dst: Bucket, key: &RequestId) -> Result<(), StorageError> {
        let owned = key.as_str().to_owned();
        let copied = self
            .blocking("copying a payload", move |layout| {
                copy_blocking(layout, src, dst, &owned)
            })
            .await?;
        match copied {
            Copied::Linked => write::sync_dir(&self.layout, dst).await,
            Copied::Repeated => Ok(()),
            Copied::Existing(found) => {
                let (existing, source) = *found;
                same_or_conflict(self.bucket_name(dst), key, &existing, &source)
            }
        }
    }

    async fn delete(&self, bucket: Bucket, key: &RequestId) -> Result<(), StorageError> {
        let owned = key.as_str().to_owned();
        self.blocking("removing a payload", move |layout| {
            delete_blocking(layout, bucket, &owned)
        })
        .await?;
        write::sync_dir(&self.layout, bucket).await
    }

    async fn locate(&self, key: &RequestId) -> Result<Vec<Bucket>, StorageError> {
        let owned = key.as_str().to_owned();
        self.blocking("locating a payload", move |layout| {
            let mut found = Vec::new();
            for bucket in Bucket::ALL {
                if head_blocking(layout, bucket, &owned)?.is_some() {
                    found.push(bucket);
                }
            }
            Ok(found)
        })
        .await
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
