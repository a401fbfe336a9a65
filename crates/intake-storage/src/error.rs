//! What can go wrong in object storage.

/// A storage failure, with the context a log line needs (never credentials).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {key:?} already exists in bucket {bucket:?}")]
    AlreadyExists { bucket: String, key: String },
    #[error("object {key:?} not found in bucket {bucket:?}")]
    NotFound { bucket: String, key: String },
    #[error("object {key:?} in bucket {bucket:?} differs from the copy source (sha256 {existing} vs {incoming})")]
    Conflict {
        bucket: String,
        key: String,
        existing: String,
        incoming: String,
    },
    #[error("the request body failed: {0}")]
    Body(#[source] std::io::Error),
    #[error("no download URLs are issued for the reject bucket")]
    NoUrlForReject,
    #[error("bucket {bucket:?} ({var}) does not exist at {endpoint}; create it or set STORAGE_CREATE_BUCKETS=true")]
    BucketMissing {
        bucket: String,
        var: &'static str,
        endpoint: String,
    },
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("storage I/O on {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage backend on {context}: {message}")]
    Backend { context: String, message: String },
    /// The disk (or the quota) under the store is full: nothing more can be written until space
    /// returns.
    #[error("storage full on {context}: {source}")]
    NoSpace {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// An I/O failure; a full disk or an exhausted quota becomes [`StorageError::NoSpace`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        match source.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                StorageError::NoSpace { context, source }
            }
            _ => StorageError::Io { context, source },
        }
    }

    /// Whether this failure is the store running out of space.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::NoSpace { .. })
    }

    pub fn backend(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        StorageError::Backend {
            context: context.into(),
            message: message.to_string(),
        }
    }

    /// Whether this failure is the store being unavailable (as opposed to a verdict about the data).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::Io { .. }
                | StorageError::NoSpace { .. }
                | StorageError::Backend { .. }
                | StorageError::BucketMissing { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_is_told_apart_from_other_io_failures() {
        let full = StorageError::io("writing x", std::io::Error::from_raw_os_error(28));
        assert!(full.is_no_space(), "{full:?}");
        assert!(full.is_unavailable());
        let quota = StorageError::io("writing x", std::io::Error::from_raw_os_error(122));
        assert!(quota.is_no_space(), "{quota:?}");
        let denied = StorageError::io("writing x", std::io::Error::from_raw_os_error(13));
        assert!(!denied.is_no_space(), "{denied:?}");
        assert!(denied.is_unavailable());
    }
}
