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
}

impl StorageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
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
                | StorageError::Backend { .. }
                | StorageError::BucketMissing { .. }
        )
    }
}
