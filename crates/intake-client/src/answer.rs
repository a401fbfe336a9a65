//! Reading an answer's body with a cap: intake answers with small JSON, and the client never holds
//! a body of unbounded size in memory whatever the server sends.

/// The most of an answer's body the client reads; the rest is left unread.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The first [`MAX_ANSWER_BYTES`] of `answer`'s body.
pub async fn capped_body(mut answer: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(body)
}
