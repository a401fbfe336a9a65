//! Watchers (spec pipeline.md §10): the cluster id rule, payload-status messages for the
//! tracker (fire-and-forget), and the Prometheus listener.

use std::sync::Arc;

use intake_bus::{Bus, OutgoingMessage};
use intake_core::messages::PayloadStatus;

use crate::config::{OnMissing, WatcherConfig};
use crate::error::Chain;

/// Longest `status_msg` sent.
pub const MAX_STATUS_MSG: usize = 4096;

/// A hyphenated hex UUID (any case) in canonical lowercase form.
pub fn canonical_uuid(text: &str) -> Option<String> {
    let t = text.trim();
    let ok = t.len() == 36
        && t.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    ok.then(|| t.to_ascii_lowercase())
}

/// What the per-message flow reports to the tracker.
#[derive(Debug, Clone, Default)]
pub struct StatusSubject {
    pub request_id: Option<String>,
    pub org_id: String,
    pub account: Option<String>,
    pub cluster_id: Option<String>,
}

/// Sends `platform.payload-status` messages.
pub struct StatusWatcher {
    bus: Arc<dyn Bus>,
    topic: String,
    service_name: String,
}

impl StatusWatcher {
    /// Sends one status; a failure is logged and counted, never returned.
    pub async fn send(&self, s: &StatusSubject, status: &str, msg: &str) {
        let Some(request_id) = &s.request_id else {
            return;
        };
        let body = PayloadStatus {
            service: self.service_name.clone(),
            request_id: request_id.clone(),
            status: status.to_owned(),
            status_msg: Some(msg.chars().take(MAX_STATUS_MSG).collect()),
            org_id: Some(s.org_id.clone()),
            account: s.account.clone().filter(|a| !a.is_empty()),
            system_id: s.cluster_id.clone(),
            date: intake_core::time::now_string(),
            ..PayloadStatus::default()
        };
        let value = match serde_json::to_vec(&body) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "cannot encode a payload status");
                return;
            }
        };
        let message =
            OutgoingMessage::new(self.topic.clone(), value).key(request_id.as_bytes().to_vec());
        if let Err(e) = self.bus.publish(message).await {
            tracing::warn!(error = %Chain(&e), status, "payload status not sent");
            crate::metrics::get().status_failures.inc();
        }
    }
}

/// The configured watchers.
pub struct Watchers {
    pub cluster_id: Option<OnMissing>,
    pub status: Option<StatusWatcher>,
    pub prometheus: Option<std::net::SocketAddr>,
}

impl Watchers {
    /// `topic_name` maps a configured topic to its wire name (prefix).
    pub fn new(
        configs: &[WatcherConfig],
        bus: Arc<dyn Bus>,
        topic_name: impl Fn(&str) -> String,
    ) -> Self {
        let mut w = Watchers {
            cluster_id: None,
            status: None,
            prometheus: None,
        };
        for c in configs {
            match c {
                WatcherConfig::ClusterId { on_missing } => w.cluster_id = Some(*on_missing),
                WatcherConfig::PayloadStatus {
                    topic,
                    service_name,
                } => {
                    w.status = Some(StatusWatcher {
                        bus: bus.clone(),
                        topic: topic_name(topic),
                        service_name: service_name.clone(),
                    })
                }
                WatcherConfig::Prometheus { listen } => w.prometheus = Some(*listen),
            }
        }
        w
    }

    pub async fn status(&self, s: &StatusSubject, status: &str, msg: &str) {
        if let Some(w) = &self.status {
            w.send(s, status, msg).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert_eq!(
            canonical_uuid(" C25DA893-5BA1-4229-9432-C8EC9334C4A0 ").as_deref(),
            Some("c25da893-5ba1-4229-9432-c8ec9334c4a0")
        );
        assert_eq!(canonical_uuid("c25da8935ba142299432c8ec9334c4a0"), None);
        assert_eq!(canonical_uuid("g25da893-5ba1-4229-9432-c8ec9334c4a0"), None);
    }
}
