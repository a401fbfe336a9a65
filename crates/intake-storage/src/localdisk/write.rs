//! Create-only writes on localdisk: stream into `.tmp/`, fsync, then `link()` the sidecar and then the
//! data file to their final names. `link()` refuses an existing name, which makes writes create-only;
//! the data file is the commit point.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::layout::{Layout, SIDECAR_SUFFIX};
use super::spool::Spool;
use crate::{Bucket, ByteStream, ObjectMeta, StorageError};

/// Files under `.tmp/` that belong to one write. They are removed when this is dropped, including
/// when the writing future is cancelled (a client that goes away); whatever was linked to a final
/// name stays under that name.
struct TmpFiles {
    data: PathBuf,
    sidecar: PathBuf,
}

impl TmpFiles {
    fn new(tmp_dir: &Path, key: &str) -> Self {
        let nonce = hex::encode(rand::random::<[u8; 8]>());
        Self {
            data: tmp_dir.join(format!("{key}.{nonce}")),
            sidecar: tmp_dir.join(format!("{key}.{nonce}{SIDECAR_SUFFIX}")),
        }
    }
}

impl Drop for TmpFiles {
    fn drop(&mut self) {
        // Unlinking two names is quick enough to do inline, and Drop cannot await.
        let _ = std::fs::remove_file(&self.data);
        let _ = std::fs::remove_file(&self.sidecar);
    }
}

/// Bodies up to this size are gathered in memory and written in one trip to the blocking pool;
/// larger ones are streamed to disk as they arrive.
const INLINE_MAX: usize = 256 * 1024;

/// Streams `body` into `bucket` under `key`, create-only, and returns the stored metadata.
pub(super) async fn put_new(
    layout: &Arc<Layout>,
    bucket: Bucket,
    key: &str,
    mut body: ByteStream,
    mut meta: ObjectMeta,
) -> Result<ObjectMeta, StorageError> {
    let mut head = Vec::new();
    let mut buffered = 0;
    let ended = loop {
        match body.next().await {
            None => break true,
            Some(chunk) => {
                let chunk = chunk.map_err(StorageError::Body)?;
                buffered += chunk.len();
                head.push(chunk);
                if buffered > INLINE_MAX {
                    break false;
                }
            }
        }
    };
    let tmp = TmpFiles::new(&layout.tmp(bucket), key);
    if ended {
        meta.size = buffered as u64;
        meta.sha256 = if buffered <= HASH_INLINE_MAX {
            digest(&head)
        } else {
            let chunks = head.clone();
            tokio::task::spawn_blocking(move || digest(&chunks))
                .await
                .map_err(|e| StorageError::backend("hashing a payload", e))?
        };
        let sidecar = sidecar_json(&meta.to_map())?;
        write_small(layout, bucket, key, tmp, head, sidecar).await?;
        return Ok(meta);
    }
    // A large body: refuse an existing key before streaming the rest of it.
    if exists(&layout.data(bucket, key)).await? {
        return Err(already_exists(layout, bucket, key));
    }
    let write_err = |e| StorageError::io(format!("writing {}", tmp.data.display()), e);
    let mut spool = Spool::create(&tmp.data).await.map_err(write_err)?;
    for chunk in head {
        spool.write(chunk).await.map_err(write_err)?;
    }
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StorageError::Body)?;
        spool.write(chunk).await.map_err(write_err)?;
    }
    let spooled = spool.finish().await.map_err(write_err)?;
    meta.size = spooled.size;
    meta.sha256 = spooled.sha256;
    let sidecar = sidecar_json(&meta.to_map())?;
    // The data file's fsync and the sidecar's write and fsync run at the same time.
    let file = spooled.file;
    let sync_data = async {
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(std::io::Error::other)
            .and_then(|synced| synced)
            .map_err(write_err)
    };
    let (synced, written) = tokio::join!(sync_data, write_sidecar(&tmp.sidecar, &sidecar));
    synced?;
    written?;
    commit(layout, bucket, key, &tmp.sidecar, &tmp.data).await?;
    Ok(meta)
}

/// Bodies gathered in memory up to this size are hashed on the async worker (tens of
/// microseconds); larger ones on the blocking pool.
const HASH_INLINE_MAX: usize = 32 * 1024;

/// The hex SHA-256 of `chunks`.
fn digest(chunks: &[bytes::Bytes]) -> String {
    let mut hasher = Sha256::new();
    for chunk in chunks {
        hasher.update(chunk);
    }
    hex::encode(hasher.finalize())
}

/// Writes a small body's data file and sidecar in `.tmp/`, fsyncs both, links them to their final
/// names and makes the names durable, all in one trip to the blocking pool: each trip is a hand-off
/// to another thread and back, and at one upload at a time those hand-offs, not the disk, were most
/// of an upload's time (four trips before: the two files on a thread each, the links, the folder's
/// fsync). The folder's fsync is shared with concurrent writes ([`GroupSync::sync_blocking`]). The
/// `.tmp/` names go when the trip ends, also when the caller stopped waiting for it.
///
/// [`GroupSync::sync_blocking`]: super::group_sync::GroupSync::sync_blocking
async fn write_small(
    layout: &Arc<Layout>,
    bucket: Bucket,
    key: &str,
    tmp: TmpFiles,
    chunks: Vec<bytes::Bytes>,
    sidecar: Vec<u8>,
) -> Result<(), StorageError> {
    let layout = layout.clone();
    let key = key.to_owned();
    blocking("writing a payload", move || {
        let final_data = layout.data(bucket, &key);
        if final_data
            .try_exists()
            .map_err(|e| StorageError::io(format!("reading {}", final_data.display()), e))?
        {
            return Err(already_exists(&layout, bucket, &key));
        }
        let data = create_written(&tmp.data, &chunks)?;
        let meta = create_written(&tmp.sidecar, &[bytes::Bytes::from(sidecar)])?;
        synced(&tmp.data, &data)?;
        synced(&tmp.sidecar, &meta)?;
        link_pair(&layout, bucket, &key, &tmp.sidecar, &tmp.data)?;
        let dir = layout.dir(bucket);
        layout
            .group_sync(bucket)
            .sync_blocking(&dir)
            .map_err(|e| StorageError::io(format!("syncing {}", dir.display()), e))?;
        drop(tmp);
        Ok(())
    })
    .await
}

/// Creates `path` (create-only) with `parts`, not yet synced.
fn create_written(path: &Path, parts: &[bytes::Bytes]) -> Result<std::fs::File, StorageError> {
    use std::io::Write;
    let err = |e| StorageError::io(format!("writing {}", path.display()), e);
    let mut file = std::fs::File::create_new(path).map_err(err)?;
    for part in parts {
        file.write_all(part).map_err(err)?;
    }
    Ok(file)
}

/// Fsyncs `file`, written at `path`.
fn synced(path: &Path, file: &std::fs::File) -> Result<(), StorageError> {
    file.sync_all()
        .map_err(|e| StorageError::io(format!("writing {}", path.display()), e))
}

/// A failed `link()` to a final name, as the seam's error.
fn link_error(
    layout: &Layout,
    bucket: Bucket,
    key: &str,
    target: &Path,
    e: std::io::Error,
) -> StorageError {
    match e.kind() {
        ErrorKind::AlreadyExists => already_exists(layout, bucket, key),
        ErrorKind::NotFound => StorageError::NotFound {
            bucket: layout.name(bucket).to_owned(),
            key: key.to_owned(),
        },
        _ => StorageError::io(format!("linking {}", target.display()), e),
    }
}

/// Copies `key` from `src` to `dst`, create-only in `dst`, as hard links to the source's data file
/// and sidecar: the copy keeps the metadata by sharing it, and makes no new file (nothing to write or
/// fsync but the folder). Sidecars are never rewritten, so sharing one is safe. Blocking; the caller
/// makes the names durable with [`sync_dir`].
pub(super) fn link_copy_blocking(
    layout: &Layout,
    src: Bucket,
    dst: Bucket,
    key: &str,
) -> Result<(), StorageError> {
    link_pair(
        layout,
        dst,
        key,
        &layout.sidecar(src, key),
        &layout.data(src, key),
    )
}

/// Links the sidecar, then the data file (the commit point), in one trip to the blocking pool,
/// then makes the names durable.
async fn commit(
    layout: &Arc<Layout>,
    bucket: Bucket,
    key: &str,
    sidecar: &Path,
    data: &Path,
) -> Result<(), StorageError> {
    let (owned, key_owned) = (layout.clone(), key.to_owned());
    let (sidecar, data) = (sidecar.to_owned(), data.to_owned());
    blocking("linking a payload", move || {
        link_pair(&owned, bucket, &key_owned, &sidecar, &data)
    })
    .await?;
    sync_dir(layout, bucket).await
}

/// Links `sidecar` and then `data` (the commit point) to `key`'s names in `bucket`. Blocking.
fn link_pair(
    layout: &Layout,
    bucket: Bucket,
    key: &str,
    sidecar: &Path,
    data: &Path,
) -> Result<(), StorageError> {
    let final_sidecar = layout.sidecar(bucket, key);
    let final_data = layout.data(bucket, key);
    if let Err(e) = std::fs::hard_link(sidecar, &final_sidecar) {
        // Either the object exists or another write of the same key is between its two links.
        return Err(link_error(layout, bucket, key, &final_sidecar, e));
    }
    if let Err(e) = std::fs::hard_link(data, &final_data) {
        // The sidecar linked above is ours: take it back so that nothing half-written stays.
        let _ = std::fs::remove_file(&final_sidecar);
        return Err(link_error(layout, bucket, key, &final_data, e));
    }
    Ok(())
}

/// Runs `work`, a sequence of file-system calls, on the blocking pool in one trip (each trip is a
/// hand-off to another thread and back).
pub(super) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::backend(what, e))?
}

/// The sidecar's bytes: the metadata table as a JSON object.
fn sidecar_json(table: &BTreeMap<String, String>) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec_pretty(table)
        .map_err(|e| StorageError::backend("encoding a sidecar", std::io::Error::other(e)))
}

async fn write_sidecar(path: &Path, json: &[u8]) -> Result<(), StorageError> {
    let err = |e| StorageError::io(format!("writing {}", path.display()), e);
    let mut file = tokio::fs::File::create_new(path).await.map_err(err)?;
    file.write_all(json).await.map_err(err)?;
    file.flush().await.map_err(err)?;
    file.sync_all().await.map_err(err)
}

/// Makes the bucket folder's new or removed entries durable (one fsync shared with concurrent
/// callers).
pub(super) async fn sync_dir(layout: &Layout, bucket: Bucket) -> Result<(), StorageError> {
    let dir = layout.dir(bucket);
    layout
        .group_sync(bucket)
        .sync(&dir)
        .await
        .map_err(|e| StorageError::io(format!("syncing {}", dir.display()), e))
}

pub(super) async fn exists(path: &Path) -> Result<bool, StorageError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))
}

pub(super) fn already_exists(layout: &Layout, bucket: Bucket, key: &str) -> StorageError {
    StorageError::AlreadyExists {
        bucket: layout.name(bucket).to_owned(),
        key: key.to_owned(),
    }
}
