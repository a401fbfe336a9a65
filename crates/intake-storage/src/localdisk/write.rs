//! Create-only writes on localdisk: stream into `.tmp/`, fsync, then `link()` the sidecar and then the
//! data file to their final names. `link()` refuses an existing name, which makes writes create-only;
//! the data file is the commit point.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::layout::{Layout, SIDECAR_SUFFIX};
use crate::stream::digesting;
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

/// Streams `body` into `bucket` under `key`, create-only, and returns the stored metadata.
pub(super) async fn put_new(
    layout: &Layout,
    bucket: Bucket,
    key: &str,
    body: ByteStream,
    mut meta: ObjectMeta,
) -> Result<ObjectMeta, StorageError> {
    let final_data = layout.data(bucket, key);
    if exists(&final_data).await? {
        return Err(already_exists(layout, bucket, key));
    }
    let tmp = TmpFiles::new(&layout.tmp(bucket), key);
    let (mut body, digest) = digesting(body);
    let mut file = tokio::fs::File::create_new(&tmp.data)
        .await
        .map_err(|e| StorageError::io(format!("creating {}", tmp.data.display()), e))?;
    let write_err = |e| StorageError::io(format!("writing {}", tmp.data.display()), e);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StorageError::Body)?;
        file.write_all(&chunk).await.map_err(write_err)?;
    }
    file.flush().await.map_err(write_err)?;
    file.sync_all().await.map_err(write_err)?;
    drop(file);
    let (size, sha256) = digest.finish();
    meta.size = size;
    meta.sha256 = sha256;
    write_sidecar(&tmp.sidecar, &meta.to_map()).await?;
    commit(layout, bucket, key, &tmp.sidecar, &tmp.data).await?;
    Ok(meta)
}

/// Copies `key` from `src` to `dst` as a hard link plus a copy of the sidecar, create-only in `dst`.
/// `meta` is the source's metadata, read by the caller.
pub(super) async fn link_copy(
    layout: &Layout,
    src: Bucket,
    dst: Bucket,
    key: &str,
    meta: &ObjectMeta,
) -> Result<(), StorageError> {
    let tmp = TmpFiles::new(&layout.tmp(dst), key);
    write_sidecar(&tmp.sidecar, &meta.to_map()).await?;
    commit(layout, dst, key, &tmp.sidecar, &layout.data(src, key)).await
}

/// Links the sidecar, then the data file (the commit point), then makes the names durable.
async fn commit(
    layout: &Layout,
    bucket: Bucket,
    key: &str,
    sidecar: &Path,
    data: &Path,
) -> Result<(), StorageError> {
    let final_sidecar = layout.sidecar(bucket, key);
    let final_data = layout.data(bucket, key);
    match tokio::fs::hard_link(sidecar, &final_sidecar).await {
        Ok(()) => {}
        // Either the object exists or another write of the same key is between its two links.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(already_exists(layout, bucket, key))
        }
        Err(e) => {
            return Err(StorageError::io(
                format!("linking {}", final_sidecar.display()),
                e,
            ))
        }
    }
    if let Err(e) = tokio::fs::hard_link(data, &final_data).await {
        // The sidecar linked above is ours: take it back so that nothing half-written stays.
        let _ = tokio::fs::remove_file(&final_sidecar).await;
        return Err(match e.kind() {
            ErrorKind::AlreadyExists => already_exists(layout, bucket, key),
            ErrorKind::NotFound => StorageError::NotFound {
                bucket: layout.name(bucket).to_owned(),
                key: key.to_owned(),
            },
            _ => StorageError::io(format!("linking {}", final_data.display()), e),
        });
    }
    sync_dir(layout.dir(bucket)).await
}

async fn write_sidecar(path: &Path, table: &BTreeMap<String, String>) -> Result<(), StorageError> {
    let err = |e| StorageError::io(format!("writing {}", path.display()), e);
    let json = serde_json::to_vec_pretty(table).map_err(|e| err(std::io::Error::other(e)))?;
    let mut file = tokio::fs::File::create_new(path).await.map_err(err)?;
    file.write_all(&json).await.map_err(err)?;
    file.flush().await.map_err(err)?;
    file.sync_all().await.map_err(err)
}

/// Makes the new directory entries durable.
pub(super) async fn sync_dir(dir: PathBuf) -> Result<(), StorageError> {
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| (dir, e))
    })
    .await
    .map_err(|e| StorageError::backend("syncing a bucket folder", e))?
    .map_err(|(dir, e)| StorageError::io(format!("syncing {}", dir.display()), e))
}

pub(super) async fn exists(path: &Path) -> Result<bool, StorageError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))
}

fn already_exists(layout: &Layout, bucket: Bucket, key: &str) -> StorageError {
    StorageError::AlreadyExists {
        bucket: layout.name(bucket).to_owned(),
        key: key.to_owned(),
    }
}
