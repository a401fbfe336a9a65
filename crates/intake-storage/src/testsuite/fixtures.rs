//! Bodies generated on the fly for the contract suite, and a digest of what a stream yields, so that
//! large payloads never sit in memory.

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use crate::ByteStream;

/// Chunk size of generated bodies.
const CHUNK: usize = 64 * 1024;

/// Size and lowercase hex SHA-256 of a stream's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    pub sha256: String,
}

impl Digest {
    /// Reads `body` to its end, panicking on an error.
    pub async fn of(mut body: ByteStream) -> Self {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("the body streams without error");
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Self {
            size,
            sha256: hex::encode(hasher.finalize()),
        }
    }
}

/// The `i`-th chunk of the pattern `seed`: pseudo-random bytes (xorshift), different per seed.
fn pattern_chunk(seed: u64, index: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn pattern_chunks(len: u64, seed: u64) -> impl Iterator<Item = Bytes> {
    let chunk = CHUNK as u64;
    (0..len.div_ceil(chunk)).map(move |i| {
        let this = (len - i * chunk).min(chunk);
        pattern_chunk(seed, i, usize::try_from(this).unwrap_or(CHUNK))
    })
}

/// `len` pseudo-random bytes, generated as they are read.
pub fn pattern_body(len: u64, seed: u64) -> ByteStream {
    Box::pin(futures::stream::iter(pattern_chunks(len, seed).map(Ok)))
}

/// The SHA-256 of [`pattern_body`]`(len, seed)`.
pub fn pattern_sha256(len: u64, seed: u64) -> String {
    let mut hasher = Sha256::new();
    for chunk in pattern_chunks(len, seed) {
        hasher.update(&chunk);
    }
    hex::encode(hasher.finalize())
}

/// A body of the given bytes, in a few chunks.
pub fn small_body(bytes: &'static [u8]) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        bytes.chunks(7).map(|c| Ok(Bytes::from_static(c))).collect();
    Box::pin(futures::stream::iter(chunks))
}

/// `good` pattern bytes, then an I/O error (a client going away, a size limit).
pub fn failing_body(good: u64) -> ByteStream {
    let fail = futures::stream::once(async {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "client went away",
        ))
    });
    Box::pin(pattern_body(good, 99).chain(fail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pattern_digest_matches_and_seeds_differ() {
        let d = Digest::of(pattern_body(CHUNK as u64 * 2 + 5, 1)).await;
        assert_eq!(d.size, CHUNK as u64 * 2 + 5);
        assert_eq!(d.sha256, pattern_sha256(CHUNK as u64 * 2 + 5, 1));
        assert_ne!(pattern_sha256(100, 1), pattern_sha256(100, 2));
    }
}
