//! Stream adapters every driver shares: counting bytes and hashing them on the way through.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::ByteStream;

/// Size and SHA-256 of what went through a [`digesting`] stream, readable once it has ended.
#[derive(Clone, Default)]
pub struct Digest256 {
    inner: Arc<Mutex<(u64, Sha256)>>,
}

impl Digest256 {
    /// Bytes seen so far and the lowercase hex SHA-256 of them.
    pub fn finish(&self) -> (u64, String) {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (guard.0, hex::encode(guard.1.clone().finalize()))
    }
}

/// Wraps `body` so that every chunk is counted and hashed into the returned [`Digest256`].
pub fn digesting(body: ByteStream) -> (ByteStream, Digest256) {
    let digest = Digest256::default();
    let d = digest.clone();
    let stream = body.map(move |chunk: Result<Bytes, std::io::Error>| {
        if let Ok(bytes) = &chunk {
            let mut g = d.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.0 += bytes.len() as u64;
            g.1.update(bytes);
        }
        chunk
    });
    (Box::pin(stream), digest)
}
