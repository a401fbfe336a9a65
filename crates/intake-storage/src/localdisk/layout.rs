//! Where localdisk keeps things (storage.md, "localdisk layout") and the start-up work on that
//! layout: bucket folders, emptying `.tmp/`, removing orphan sidecars, the one-file-system check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use intake_core::config::BucketNames;

use super::group_sync::GroupSync;
use crate::{Bucket, StorageError};

/// Writes in progress live here, inside each bucket folder.
pub(crate) const TMP_DIR: &str = ".tmp";
/// A sidecar is `<key>.meta.json`; keys contain no `.`, so it never collides with a key.
pub(crate) const SIDECAR_SUFFIX: &str = ".meta.json";

/// Paths of the three bucket folders under `STORAGE_DIR`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
    names: BucketNames,
    /// Folder fsyncs, shared by concurrent changes to the same bucket.
    syncs: [Arc<GroupSync>; 3],
}

impl Layout {
    pub(crate) fn new(root: &Path, names: &BucketNames) -> Self {
        Self {
            root: root.to_path_buf(),
            names: names.clone(),
            syncs: Default::default(),
        }
    }

    pub(crate) fn group_sync(&self, bucket: Bucket) -> Arc<GroupSync> {
        let i = match bucket {
            Bucket::Quarantine => 0,
            Bucket::Perm => 1,
            Bucket::Reject => 2,
        };
        self.syncs[i].clone()
    }

    pub(crate) fn name(&self, bucket: Bucket) -> &str {
        match bucket {
            Bucket::Quarantine => &self.names.quarantine,
            Bucket::Perm => &self.names.perm,
            Bucket::Reject => &self.names.reject,
        }
    }

    pub(crate) fn dir(&self, bucket: Bucket) -> PathBuf {
        self.root.join(self.name(bucket))
    }

    pub(crate) fn data(&self, bucket: Bucket, key: &str) -> PathBuf {
        self.dir(bucket).join(key)
    }

    pub(crate) fn sidecar(&self, bucket: Bucket, key: &str) -> PathBuf {
        self.dir(bucket).join(format!("{key}{SIDECAR_SUFFIX}"))
    }

    pub(crate) fn tmp(&self, bucket: Bucket) -> PathBuf {
        self.dir(bucket).join(TMP_DIR)
    }

    /// Start-up: makes sure every bucket folder exists (creating it when `create` is set), empties
    /// `.tmp/`, removes sidecars without a data file and checks that all buckets share one file
    /// system. Blocking; run it on the blocking pool.
    pub(crate) fn prepare(&self, create: bool) -> Result<(), StorageError> {
        let mut devices = Vec::with_capacity(Bucket::ALL.len());
        for bucket in Bucket::ALL {
            let dir = self.dir(bucket);
            if !dir.is_dir() {
                if !create {
                    return Err(StorageError::BucketMissing {
                        bucket: self.name(bucket).to_owned(),
                        var: bucket.env_var(),
                        endpoint: self.root.display().to_string(),
                    });
                }
                std::fs::create_dir_all(&dir)
                    .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
                tracing::info!(bucket = self.name(bucket), path = %dir.display(), "created bucket folder");
            }
            empty_tmp(&self.tmp(bucket))?;
            remove_orphan_sidecars(&dir)?;
            devices.push((dir.clone(), device_of(&dir)?));
        }
        check_one_filesystem(&devices)
    }
}

/// Removes `.tmp/` with whatever an interrupted write left there, and creates it empty.
fn empty_tmp(tmp: &Path) -> Result<(), StorageError> {
    match std::fs::remove_dir_all(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io(format!("emptying {}", tmp.display()), e)),
    }
    std::fs::create_dir(tmp).map_err(|e| StorageError::io(format!("creating {}", tmp.display()), e))
}

/// An object exists exactly when its data file does; a sidecar without one is left by a write that
/// stopped between its two links, and is removed.
fn remove_orphan_sidecars(dir: &Path) -> Result<(), StorageError> {
    let context = || format!("listing {}", dir.display());
    for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io(context(), e))? {
        let entry = entry.map_err(|e| StorageError::io(context(), e))?;
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(|n| n.strip_suffix(SIDECAR_SUFFIX)) else {
            continue;
        };
        if key.is_empty() || dir.join(key).exists() {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), "removed a metadata sidecar without a data file")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn device_of(dir: &Path) -> Result<u64, StorageError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .map(|m| m.dev())
        .map_err(|e| StorageError::io(format!("reading {}", dir.display()), e))
}

#[cfg(not(unix))]
fn device_of(_dir: &Path) -> Result<u64, StorageError> {
    // Hard links fail across volumes with an error of their own; there is no cheap device id here.
    Ok(0)
}

/// Copies are hard links, so every bucket folder must be on the file system of the first; the error
/// names both paths.
pub fn check_one_filesystem(dirs: &[(PathBuf, u64)]) -> Result<(), StorageError> {
    let Some((first, first_dev)) = dirs.first() else {
        return Ok(());
    };
    match dirs.iter().find(|(_, dev)| dev != first_dev) {
        None => Ok(()),
        Some((other, _)) => Err(StorageError::Config(format!(
            "localdisk buckets must share one file system (copies are hard links): {} and {} are on \
             different file systems",
            first.display(),
            other.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_filesystem_passes_and_two_name_both_paths() {
        let a = PathBuf::from("/data/storage/q");
        let b = PathBuf::from("/mnt/other/p");
        assert!(check_one_filesystem(&[(a.clone(), 7), (a.clone(), 7)]).is_ok());
        assert!(check_one_filesystem(&[]).is_ok());
        let err = check_one_filesystem(&[(a, 7), (PathBuf::from("/data/storage/x"), 7), (b, 9)])
            .expect_err("different devices")
            .to_string();
        assert!(
            err.contains("/data/storage/q") && err.contains("/mnt/other/p"),
            "{err}"
        );
    }

    #[test]
    fn missing_bucket_without_create_names_bucket_variable_and_path() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(root.path(), &BucketNames::default());
        let err = layout
            .prepare(false)
            .expect_err("missing bucket")
            .to_string();
        assert!(err.contains("\"insights-upload-quarantine\""), "{err}");
        assert!(err.contains("S3_QUARANTINE"), "{err}");
        assert!(err.contains(&root.path().display().to_string()), "{err}");
        assert!(err.contains("STORAGE_CREATE_BUCKETS=true"), "{err}");
    }

    #[test]
    fn start_up_empties_tmp_and_removes_orphan_sidecars() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(root.path(), &BucketNames::default());
        layout.prepare(true).expect("creates");
        let q = layout.dir(Bucket::Quarantine);
        std::fs::write(layout.tmp(Bucket::Quarantine).join("abc.123"), b"partial").expect("write");
        std::fs::write(layout.sidecar(Bucket::Quarantine, "orphan"), b"{}").expect("write");
        std::fs::write(layout.data(Bucket::Quarantine, "kept"), b"x").expect("write");
        std::fs::write(layout.sidecar(Bucket::Quarantine, "kept"), b"{}").expect("write");
        layout.prepare(false).expect("existing buckets");
        assert_eq!(
            std::fs::read_dir(layout.tmp(Bucket::Quarantine))
                .expect("tmp")
                .count(),
            0
        );
        assert!(!layout.sidecar(Bucket::Quarantine, "orphan").exists());
        assert!(layout.sidecar(Bucket::Quarantine, "kept").exists());
        assert!(q.join("kept").exists());
    }
}
