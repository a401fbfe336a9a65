//! Checking localdisk `/download/{id}?expires=&signature=` requests (storage.md, "Download URLs").
//!
//! Ingress serves the route; this module decides which bucket a signature grants, if any.

use intake_core::config::BucketNames;

use intake_core::RequestId;

use crate::signing::UrlSigner;
use crate::{Bucket, Object, PayloadStore, StorageError};

/// Why a download request is refused. Both answer 403 (ingress.md, "GET /download").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DownloadDenied {
    /// The signature matches a bucket, but `expires` is in the past.
    #[error("the download URL has expired")]
    Expired,
    /// `expires` or `signature` is missing or malformed, or the signature matches no bucket.
    #[error("the download URL signature is not valid")]
    BadSignature,
}

/// Resolves a signed download request to the bucket it was issued for (quarantine or perm; never
/// reject, for which no URL is issued).
#[derive(Debug, Clone)]
pub struct DownloadVerifier {
    signer: UrlSigner,
    quarantine: String,
    perm: String,
}

impl DownloadVerifier {
    /// A verifier for URLs `signer` issued for these buckets.
    pub fn new(signer: UrlSigner, buckets: &BucketNames) -> Self {
        Self {
            signer,
            quarantine: buckets.quarantine.clone(),
            perm: buckets.perm.clone(),
        }
    }

    /// Checks the query values of a `/download/{request_id}` request against the clock.
    pub fn verify(
        &self,
        request_id: &str,
        expires: &str,
        signature: &str,
    ) -> Result<Bucket, DownloadDenied> {
        self.verify_at(
            request_id,
            expires,
            signature,
            chrono::Utc::now().timestamp(),
        )
    }

    /// Like [`Self::verify`] at the given time (unix seconds). The signature is compared in
    /// constant time against quarantine and then perm; both comparisons always run, so the timing
    /// does not tell which bucket matched. A match whose `expires` is before `now` is
    /// [`DownloadDenied::Expired`].
    pub fn verify_at(
        &self,
        request_id: &str,
        expires: &str,
        signature: &str,
        now: i64,
    ) -> Result<Bucket, DownloadDenied> {
        let expires_at: i64 = match expires.parse() {
            Ok(v) if !expires.starts_with('+') => v,
            _ => return Err(DownloadDenied::BadSignature),
        };
        let in_quarantine = self
            .signer
            .verify(&self.quarantine, request_id, expires_at, signature);
        let in_perm = self
            .signer
            .verify(&self.perm, request_id, expires_at, signature);
        let bucket = if in_quarantine {
            Bucket::Quarantine
        } else if in_perm {
            Bucket::Perm
        } else {
            return Err(DownloadDenied::BadSignature);
        };
        if expires_at < now {
            return Err(DownloadDenied::Expired);
        }
        Ok(bucket)
    }
}

/// The buckets a link issued for `bucket` serves from, in order. **A link follows its payload**: a
/// quarantine link still serves the payload once the validation flow moved it to perm (copy, then
/// delete, so it is always in one of the two). A rejected payload is in neither.
pub fn serving_buckets(bucket: Bucket) -> &'static [Bucket] {
    match bucket {
        Bucket::Quarantine => &[Bucket::Quarantine, Bucket::Perm],
        Bucket::Perm => &[Bucket::Perm],
        Bucket::Reject => &[],
    }
}

/// The object a link issued for `bucket` serves, wherever it moved ([`serving_buckets`]);
/// [`StorageError::NotFound`] (naming `bucket`) when it was rejected or deleted.
pub async fn open_linked(
    store: &dyn PayloadStore,
    bucket: Bucket,
    key: &RequestId,
) -> Result<Object, StorageError> {
    for candidate in serving_buckets(bucket) {
        match store.get(*candidate, key).await {
            Err(StorageError::NotFound { .. }) => continue,
            found => return found,
        }
    }
    Err(StorageError::NotFound {
        bucket: store.bucket_name(bucket).to_owned(),
        key: key.as_str().to_owned(),
    })
}

/// The `expires` and `signature` query values of a download URL (the test suite reads URLs back).
pub fn parse_download_url(url: &str) -> Option<(String, String, String)> {
    let (path, query) = url.split_once('?')?;
    let request_id = path.rsplit_once("/download/")?.1.to_owned();
    let mut expires = None;
    let mut signature = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) => expires = Some(v.to_owned()),
            Some(("signature", v)) => signature = Some(v.to_owned()),
            _ => {}
        }
    }
    Some((request_id, expires?, signature?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> (UrlSigner, DownloadVerifier) {
        let signer = UrlSigner::new(b"test-key");
        (
            signer.clone(),
            DownloadVerifier::new(signer, &BucketNames::default()),
        )
    }

    #[test]
    fn resolves_quarantine_and_perm() {
        let (s, v) = verifier();
        let names = BucketNames::default();
        let q = s.signature(&names.quarantine, "abc", 200);
        let p = s.signature(&names.perm, "abc", 200);
        assert_eq!(v.verify_at("abc", "200", &q, 100), Ok(Bucket::Quarantine));
        assert_eq!(v.verify_at("abc", "200", &p, 100), Ok(Bucket::Perm));
        // Valid until and including the `expires` second.
        assert_eq!(v.verify_at("abc", "200", &p, 200), Ok(Bucket::Perm));
    }

    #[test]
    fn refuses_reject_wrong_id_expired_and_malformed() {
        let (s, v) = verifier();
        let names = BucketNames::default();
        let r = s.signature(&names.reject, "abc", 200);
        assert_eq!(
            v.verify_at("abc", "200", &r, 100),
            Err(DownloadDenied::BadSignature)
        );
        let q = s.signature(&names.quarantine, "abc", 200);
        assert_eq!(
            v.verify_at("abd", "200", &q, 100),
            Err(DownloadDenied::BadSignature)
        );
        assert_eq!(
            v.verify_at("abc", "201", &q, 100),
            Err(DownloadDenied::BadSignature)
        );
        assert_eq!(
            v.verify_at("abc", "200", &q, 201),
            Err(DownloadDenied::Expired)
        );
        assert_eq!(
            v.verify_at("abc", "", &q, 100),
            Err(DownloadDenied::BadSignature)
        );
        assert_eq!(
            v.verify_at("abc", "+200", &q, 100),
            Err(DownloadDenied::BadSignature)
        );
        assert_eq!(
            v.verify_at("abc", "200", "", 100),
            Err(DownloadDenied::BadSignature)
        );
        assert_eq!(
            v.verify_at("abc", "200", "xyz", 100),
            Err(DownloadDenied::BadSignature)
        );
        // An expired URL with a bad signature says "bad signature", not "expired".
        assert_eq!(
            v.verify_at("abc", "200", "00", 500),
            Err(DownloadDenied::BadSignature)
        );
    }

    #[test]
    fn parses_issued_urls() {
        let (s, _) = verifier();
        let url = s.url("http://localhost:8080", "b", "abc", 7);
        let (id, expires, sig) = parse_download_url(&url).expect("parses");
        assert_eq!((id.as_str(), expires.as_str()), ("abc", "7"));
        assert_eq!(sig, s.signature("b", "abc", 7));
    }
}
