//! Following a payload through `GET /api/ingress/v1/track/<request_id>` until a terminal status.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{describe, ClientError, ServerRefusal};

/// The last status `/track` gave, as the spec's five keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub status: String,
    pub status_msg: String,
    pub service: String,
    /// The whole answer, as sent.
    pub body: Value,
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitOutcome {
    /// A terminal status (`success`, `rejected` or `error`) was reached.
    Terminal(Tracked),
    /// The time ran out; the last status seen, if any.
    TimedOut(Option<Tracked>),
}

/// How to follow a payload.
#[derive(Debug, Clone)]
pub struct TrackRequest {
    pub url: url::Url,
    pub request_id: String,
    pub identity: Option<String>,
    pub timeout: Duration,
    pub interval: Duration,
}

/// Polls `/track` until a terminal status or the timeout. A 404 (not tracked yet), a 502 (tracker
/// unreachable) and transport errors are waited out; other 4xx answers end the wait with an error.
pub async fn wait(
    client: &reqwest::Client,
    req: &TrackRequest,
) -> Result<WaitOutcome, ClientError> {
    let url = crate::route(
        &req.url,
        &format!("{}{}", crate::TRACK_PATH, req.request_id),
    )?;
    let deadline = Instant::now() + req.timeout;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut call = client
            .get(url.clone())
            .timeout(left.max(Duration::from_millis(100)));
        if let Some(identity) = &req.identity {
            call = call.header(intake_core::identity::HEADER, identity);
        }
        match call.send().await {
            Ok(answer) if answer.status().is_success() => {
                let body = crate::answer::capped_body(answer).await.map_err(|e| {
                    ClientError::BadAnswer(format!("/track answer: {}", describe(&e)))
                })?;
                let body: Value = serde_json::from_slice(&body)
                    .map_err(|e| ClientError::BadAnswer(format!("/track answer: {e}")))?;
                let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let tracked = Tracked {
                    status: text("status"),
                    status_msg: text("status_msg"),
                    service: text("service"),
                    body: body.clone(),
                };
                tracing::debug!(status = %tracked.status, service = %tracked.service, "tracked");
                if intake_core::status::is_terminal(&tracked.status) {
                    return Ok(WaitOutcome::Terminal(tracked));
                }
                last = Some(tracked);
            }
            Ok(answer) if matches!(answer.status().as_u16(), 404 | 502..=504) => {
                tracing::debug!(status = answer.status().as_u16(), "not tracked yet");
            }
            Ok(answer) => {
                let status = answer.status();
                let body = crate::answer::capped_body(answer).await.unwrap_or_default();
                return Err(ClientError::Refused(ServerRefusal::from_body(
                    status, &body,
                )));
            }
            Err(e) => tracing::debug!(error = %describe(&e), "track call failed; trying again"),
        }
        if Instant::now() + req.interval > deadline {
            return Ok(WaitOutcome::TimedOut(last));
        }
        tokio::time::sleep(req.interval).await;
    }
}
