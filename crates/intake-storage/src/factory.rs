//! Choosing and opening the driver named by `STORAGE_DRIVER`, once, at start-up.

use std::sync::Arc;

use intake_core::config::{StorageConfig, StorageDriver};
use tracing::Instrument;

use crate::download::DownloadVerifier;
use crate::localdisk::LocalDiskStore;
use crate::s3::S3Store;
use crate::signing::UrlSigner;
use crate::{PayloadStore, StorageError};

/// The opened store, and for localdisk the checker of the `/download` URLs it issues (ingress
/// serves that route only when `downloads` is set).
#[derive(Clone)]
pub struct Storage {
    pub store: Arc<dyn PayloadStore>,
    pub downloads: Option<DownloadVerifier>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field(
                "quarantine",
                &self.store.bucket_name(crate::Bucket::Quarantine),
            )
            .field("downloads", &self.downloads.is_some())
            .finish()
    }
}

/// Opens the configured driver, applying storage.md's start-up rules. `public_url` is
/// `INGRESS_PUBLIC_URL`, the base of localdisk download URLs. Without `STORAGE_URL_SIGNING_KEY`
/// localdisk signs with the key kept in the data directory (generated at the first start), so that
/// links survive restarts.
#[allow(
    clippy::disallowed_methods,
    reason = "the bucket retry holds only a Weak reference to the store and a named span: it ends when the store is dropped or the bucket exists"
)]
pub async fn open(config: &StorageConfig, public_url: &str) -> Result<Storage, StorageError> {
    match config.driver {
        StorageDriver::LocalDisk => {
            let signer = match &config.signing_key {
                Some(key) => UrlSigner::new(key.as_bytes()),
                None => {
                    let path = config.signing_key_file.clone();
                    let kept = tokio::task::spawn_blocking(move || {
                        crate::signing_key::load_or_create(&path)
                    })
                    .await
                    .map_err(|e| StorageError::Config(format!("reading the signing key: {e}")))??;
                    if kept.created {
                        tracing::info!(
                            path = %kept.path.display(),
                            "STORAGE_URL_SIGNING_KEY is not set: generated a download-URL key and kept it; \
                             several instances must share one key (set the variable)"
                        );
                    } else {
                        tracing::debug!(path = %kept.path.display(), "download URLs signed with the kept key");
                    }
                    UrlSigner::new(kept.key.as_bytes())
                }
            };
            let store = LocalDiskStore::open(config, signer.clone(), public_url).await?;
            tracing::info!(dir = %config.dir.display(), "storage: localdisk");
            Ok(Storage {
                store: Arc::new(store),
                downloads: Some(DownloadVerifier::new(signer, &config.buckets)),
            })
        }
        StorageDriver::S3 => {
            let store = Arc::new(S3Store::open(config).await?);
            if !store.buckets_ready() {
                // storage.md: an unreachable endpoint is retried with backoff; readiness stays 503
                // meanwhile.
                let retry = S3Store::retry_until_ready(Arc::downgrade(&store));
                tokio::spawn(retry.instrument(tracing::info_span!("storage_bucket_retry")));
            }
            tracing::info!(endpoint = ?config.s3.endpoint, "storage: s3");
            Ok(Storage {
                store,
                downloads: None,
            })
        }
    }
}
