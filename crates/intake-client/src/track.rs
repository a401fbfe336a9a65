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
    /// The payload's round trip ended: ingress's `success` or `rejected`, or an `error` from any
    /// part.
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
    // Every status of the payload, not only the newest: a validator's `success` comes before
    // ingress has moved the payload, and later parts' statuses may hide ingress's.
    let mut url = crate::route(
        &req.url,
        &format!("{}{}", crate::TRACK_PATH, req.request_id),
    )?;
    url.set_query(Some("verbosity=2"));
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
                let (newest, settled) = judge(&body);
                tracing::debug!(status = %newest.status, service = %newest.service, "tracked");
                if let Some(settled) = settled {
                    return Ok(WaitOutcome::Terminal(settled));
                }
                last = Some(newest);
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

/// The service whose statuses end a payload's upload round trip: it applies the verdict.
const INGRESS: &str = "ingress";

/// The newest status of a `/track` answer, and the one that ends the wait if there is one: an
/// `error` from any part, or ingress's `success` or `rejected` (the payload is in perm or the
/// rejected bucket). A verbose answer lists every status under `data`, newest first; a short one is
/// the newest status alone.
fn judge(body: &Value) -> (Tracked, Option<Tracked>) {
    let rows: Vec<&Value> = match body.get("data").and_then(Value::as_array) {
        Some(rows) => rows.iter().collect(),
        None => vec![body],
    };
    let tracked = |row: &Value| {
        let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        Tracked {
            status: text("status"),
            status_msg: text("status_msg"),
            service: text("service"),
            body: row.clone(),
        }
    };
    let all: Vec<Tracked> = rows.into_iter().map(tracked).collect();
    let settled = all
        .iter()
        .find(|t| {
            t.status == intake_core::status::ERROR
                || (t.service == INGRESS && intake_core::status::is_terminal(&t.status))
        })
        .cloned();
    let newest = all.into_iter().next().unwrap_or(Tracked {
        status: String::new(),
        status_msg: String::new(),
        service: String::new(),
        body: body.clone(),
    });
    (newest, settled)
}
