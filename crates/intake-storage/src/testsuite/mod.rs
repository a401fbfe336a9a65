//! The contract test suite every [`PayloadStore`] driver passes (feature `testsuite`): one test per
//! promise of storage.md's operations table. A driver's test file invokes
//! [`payload_store_contract_tests!`](crate::payload_store_contract_tests) with an expression that
//! makes a store bound to fresh, empty buckets, and gets one `#[tokio::test]` per promise.
//!
//! ```ignore
//! async fn make_store() -> intake_storage::Storage { /* fresh buckets */ }
//! intake_storage::payload_store_contract_tests!(make_store());
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code behind the testsuite feature: a broken promise fails the test"
)]

pub mod cases;
mod fixtures;

use std::sync::Arc;

pub use fixtures::{failing_body, pattern_body, pattern_sha256, small_body, Digest};

use crate::download::{parse_download_url, DownloadVerifier};
use crate::{PayloadStore, Storage};

/// What a case runs against: the store, and for drivers whose URLs ingress serves (localdisk) the
/// verifier that stands in for the `/download` route.
pub struct Subject {
    pub store: Arc<dyn PayloadStore>,
    pub downloads: Option<DownloadVerifier>,
}

impl From<Arc<dyn PayloadStore>> for Subject {
    fn from(store: Arc<dyn PayloadStore>) -> Self {
        Self {
            store,
            downloads: None,
        }
    }
}

impl From<Storage> for Subject {
    fn from(storage: Storage) -> Self {
        Self {
            store: storage.store,
            downloads: storage.downloads,
        }
    }
}

impl Subject {
    /// Fetches a URL the store issued and digests the bytes. Localdisk URLs are checked with the
    /// verifier and read from the bucket it names (ingress serves them over HTTP); others are fetched
    /// with a plain HTTP GET, which must answer 200.
    pub async fn download(&self, url: &str) -> Digest {
        match &self.downloads {
            Some(verifier) => {
                let (id, expires, signature) = parse_download_url(url).expect("a /download URL");
                let bucket = verifier
                    .verify(&id, &expires, &signature)
                    .expect("the signature is accepted");
                let key = intake_core::RequestId::parse(&id).expect("a request id");
                let object = crate::download::open_linked(self.store.as_ref(), bucket, &key)
                    .await
                    .expect("the signed object exists");
                Digest::of(object.body).await
            }
            None => {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(60))
                    .build()
                    .expect("http client");
                let response = client.get(url).send().await.expect("GET the URL");
                assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {url}");
                let stream =
                    futures::TryStreamExt::map_err(response.bytes_stream(), std::io::Error::other);
                Digest::of(Box::pin(stream)).await
            }
        }
    }
}

/// Expands to one `#[tokio::test]` per promise of the storage seam. `$make` is an expression giving
/// a future of something that converts into a [`Subject`] (`Arc<dyn PayloadStore>` or
/// [`Storage`]), bound to fresh, empty buckets; it is evaluated once per test. The invoking crate
/// needs `tokio` (with `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! payload_store_contract_tests {
    ($make:expr) => {
        $crate::payload_store_contract_tests!(@cases $make;
            put_new_is_create_only,
            put_new_records_size_and_sha256,
            put_new_of_an_empty_body,
            metadata_round_trips,
            failed_body_leaves_nothing,
            failed_multipart_body_leaves_nothing,
            large_body_streams_and_round_trips,
            get_streams_the_bytes_back,
            missing_key_is_not_found,
            copy_keeps_metadata,
            a_copy_outlives_its_source,
            copy_is_idempotent,
            copy_conflicts_on_a_different_sha256,
            copy_of_a_missing_key_is_not_found,
            delete_is_idempotent,
            locate_lists_buckets_in_order,
            a_quarantine_link_follows_its_payload_after_retire,
            url_is_refused_for_reject,
            url_downloads_the_same_bytes,
            links_pass_the_default_allow_list,
            concurrent_put_new_lets_exactly_one_win,
            check_passes,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = $crate::testsuite::Subject::from($make.await);
                $crate::testsuite::cases::$case(subject).await;
            }
        )*
    };
}
