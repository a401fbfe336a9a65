//! HMAC-signed, expiring `/download` URLs for the localdisk driver (storage.md, "Download URLs").

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies download URLs with one key. Several ingress instances must share the key.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// A signer with a random key; URLs it issues die with the process.
    pub fn random() -> Self {
        let key: [u8; 32] = rand::random();
        Self::new(&key)
    }

    /// `hex(HMAC-SHA256(key, "<bucket>\n<request_id>\n<expires>"))`.
    pub fn signature(&self, bucket: &str, request_id: &str, expires: i64) -> String {
        hex::encode(
            self.mac(bucket, request_id, expires)
                .finalize()
                .into_bytes(),
        )
    }

    fn mac(&self, bucket: &str, request_id: &str, expires: i64) -> HmacSha256 {
        #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{bucket}\n{request_id}\n{expires}").as_bytes());
        mac
    }

    /// Whether `signature` (hex) signs this bucket, id and expiry; compared in constant time.
    pub fn verify(&self, bucket: &str, request_id: &str, expires: i64, signature: &str) -> bool {
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        let expected = self
            .mac(bucket, request_id, expires)
            .finalize()
            .into_bytes();
        expected.as_slice().ct_eq(&given).into()
    }

    /// The full URL: `<base>/download/<id>?expires=<unix>&signature=<hex>`.
    pub fn url(&self, base: &str, bucket: &str, request_id: &str, expires: i64) -> String {
        format!(
            "{}/download/{request_id}?expires={expires}&signature={}",
            base.trim_end_matches('/'),
            self.signature(bucket, request_id, expires)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_its_own_bucket_and_expiry() {
        let s = UrlSigner::new(b"k");
        let sig = s.signature("q", "abc", 100);
        assert!(s.verify("q", "abc", 100, &sig));
        assert!(!s.verify("p", "abc", 100, &sig));
        assert!(!s.verify("q", "abc", 101, &sig));
        assert!(!s.verify("q", "abd", 100, &sig));
        assert!(!s.verify("q", "abc", 100, "zz"));
        assert!(!UrlSigner::new(b"other").verify("q", "abc", 100, &sig));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "b\nid\n1") computed independently (Python hmac).
        let s = UrlSigner::new(b"key");
        assert_eq!(
            s.signature("b", "id", 1),
            "717e16acb8570b8a1e5116c96e2ffed865a5b23ac2d74884f6812a6c552331a8"
        );
        assert!(s
            .url("http://h:8080/", "b", "id", 1)
            .starts_with("http://h:8080/download/id?expires=1&signature="));
    }
}
