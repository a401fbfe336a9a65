//! Whether `INGRESS_PUBLIC_URL` reaches this ingress (README, "Configuration"): the download links
//! in announces start with it, so a URL that leads elsewhere (another instance, nothing at all)
//! makes every validator's download fail. At start-up ingress asks `<public URL>/download/_probe`
//! for the random nonce this process answers with there; until the answer carries it, `/readyz`
//! says 503 with a check naming the variable, and a WARN line says the same.
//!
//! `_` is outside the request-id pattern, so the probe path can never be a payload's.

use std::sync::RwLock;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// The route answering the probe, under the same `/download/` prefix as the links, so that a proxy
/// routing downloads to ingress routes the probe too.
pub const PATH: &str = "/download/_probe";

/// Longest wait between two probes while the URL does not reach this ingress.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// No probe runs (no listener, or no links of ours to check): `/readyz` shows nothing.
    Idle,
    Pending,
    Reached,
    Failed(String),
}

/// This process's nonce and what the last probe found.
#[derive(Debug)]
pub struct SelfProbe {
    nonce: String,
    outcome: RwLock<Outcome>,
}

impl Default for SelfProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl SelfProbe {
    pub fn new() -> Self {
        Self {
            nonce: intake_core::RequestId::generate().as_str().to_owned(),
            outcome: RwLock::new(Outcome::Idle),
        }
    }

    fn set(&self, outcome: Outcome) {
        if let Ok(mut o) = self.outcome.write() {
            *o = outcome;
        }
    }

    fn get(&self) -> Outcome {
        self.outcome
            .read()
            .map(|o| o.clone())
            .unwrap_or(Outcome::Idle)
    }

    /// The `/readyz` check: `None` while no probe runs, else ok or the problem naming
    /// `INGRESS_PUBLIC_URL`.
    pub fn check(&self) -> Option<Result<(), String>> {
        match self.get() {
            Outcome::Idle => None,
            Outcome::Reached => Some(Ok(())),
            Outcome::Pending => Some(Err(
                "INGRESS_PUBLIC_URL: not yet checked to reach this ingress".to_owned(),
            )),
            Outcome::Failed(problem) => Some(Err(problem)),
        }
    }
}

/// `GET /download/_probe`: this process's nonce.
pub async fn answer(State(state): State<AppState>) -> Response {
    Json(json!({"nonce": state.probe.nonce})).into_response()
}

/// Probes the public URL until it reaches this ingress or `cancel` fires. Only with the localdisk
/// driver: with S3 the links point at the store, not at ingress.
pub async fn run(state: AppState, cancel: CancellationToken) {
    if state.downloads.is_none() {
        return;
    }
    state.probe.set(Outcome::Pending);
    let url = format!("{}{PATH}", state.config.public_url);
    let mut backoff = Duration::from_millis(500);
    let mut last_warned: Option<String> = None;
    loop {
        match probe_once(&state, &url).await {
            Ok(()) => {
                state.probe.set(Outcome::Reached);
                if last_warned.is_some() {
                    tracing::info!(url = %state.config.public_url, "INGRESS_PUBLIC_URL now reaches this ingress");
                } else {
                    tracing::debug!(url = %state.config.public_url, "INGRESS_PUBLIC_URL reaches this ingress");
                }
                return;
            }
            Err(problem) => {
                let origin = if state.config.public_url_set {
                    "set"
                } else {
                    "unset, so following INGRESS_LISTEN"
                };
                let text = format!(
                    "INGRESS_PUBLIC_URL ({origin}) is {}, which does not reach this ingress: {problem}; \
                     validators could not download the payloads it announces",
                    state.config.public_url
                );
                if last_warned.as_deref() != Some(text.as_str()) {
                    tracing::warn!(variable = "INGRESS_PUBLIC_URL", "{text}");
                    last_warned = Some(text.clone());
                }
                state.probe.set(Outcome::Failed(text));
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn probe_once(state: &AppState, url: &str) -> Result<(), String> {
    let answer = state
        .http
        .get(url)
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url} could not be fetched ({})", describe(&e)))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let body = crate::peer_answer::json(answer)
        .await
        .map_err(|_| format!("{url} answered something other than this ingress"))?;
    if body["nonce"].as_str() == Some(state.probe.nonce.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "{url} is answered by another server (its nonce is not this process's)"
        ))
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.to_string()
    }
}
