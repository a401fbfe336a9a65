//! Reading a peer's JSON answer (the tracker's, or this ingress's own through its public URL) with
//! a cap: whatever answers, ingress never holds a body of unbounded size.

/// The most of a peer's answer ingress reads; a longer answer is refused, not truncated.
pub const MAX_PEER_ANSWER: usize = 4 << 20;

/// Why a peer's answer was not read.
#[derive(Debug, thiserror::Error)]
pub enum PeerAnswerError {
    #[error("reading the answer failed: {0}")]
    Read(#[from] reqwest::Error),
    #[error("the answer is longer than {MAX_PEER_ANSWER} bytes")]
    TooLong,
    #[error("the answer is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// The JSON body of `answer`, read to the end unless it passes [`MAX_PEER_ANSWER`].
pub async fn json(mut answer: reqwest::Response) -> Result<serde_json::Value, PeerAnswerError> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        if body.len() + chunk.len() > MAX_PEER_ANSWER {
            return Err(PeerAnswerError::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(serde_json::from_slice(&body)?)
}
