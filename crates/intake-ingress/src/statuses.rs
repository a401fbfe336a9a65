//! Payload-status messages ingress emits (messages.md, "Statuses ingress emits"). Fire-and-forget: a
//! failed publish is logged and counted and never blocks an upload or a verdict. Background sends
//! are tracked, and shutdown waits for them ([`StatusPublisher::drain`]), so a status promised by a
//! 202 is not lost to a SIGTERM.

use std::sync::Arc;

use intake_bus::{Bus, OutgoingMessage};
use intake_core::messages::PayloadStatus;
use prometheus::IntCounter;
use tokio_util::task::TaskTracker;

/// The reporting service name in every status ingress sends.
pub const SERVICE: &str = "ingress";

#[derive(Clone)]
pub struct StatusPublisher {
    bus: Arc<dyn Bus>,
    topic: String,
    failures: IntCounter,
    /// Every background send, for [`Self::drain`].
    tasks: TaskTracker,
}

/// The tenant and id a status is about.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub request_id: String,
    pub org_id: String,
    pub account: String,
}

impl Subject {
    /// A payload known only by its id (its tenant unknown).
    pub fn of(request_id: String) -> Self {
        Self {
            request_id,
            ..Self::default()
        }
    }
}

impl StatusPublisher {
    pub fn new(bus: Arc<dyn Bus>, topic: String, failures: IntCounter) -> Self {
        Self {
            bus,
            topic,
            failures,
            tasks: TaskTracker::new(),
        }
    }

    /// Builds a status for `subject` (org_id always, account when known).
    pub fn status(subject: &Subject, status: &str, msg: String, date: String) -> PayloadStatus {
        PayloadStatus {
            service: SERVICE.to_owned(),
            account: (!subject.account.is_empty()).then(|| subject.account.clone()),
            org_id: Some(subject.org_id.clone()),
            request_id: subject.request_id.clone(),
            status: status.to_owned(),
            status_msg: Some(msg),
            date,
            ..Default::default()
        }
    }

    /// Publishes and waits for the hand-off; a failure is logged and counted, never returned.
    pub async fn send(&self, status: PayloadStatus) {
        let value = match serde_json::to_vec(&status) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "could not encode a status");
                self.failures.inc();
                return;
            }
        };
        let message =
            OutgoingMessage::new(self.topic.clone(), value).key(status.request_id.clone());
        if let Err(e) = self.bus.publish(message).await {
            tracing::warn!(request_id = %status.request_id, status = %status.status, error = %e, "status not published");
            self.failures.inc();
        }
    }

    /// Sends one status in the background; the handle ends when the bus took it (or refused).
    pub fn send_later(&self, status: PayloadStatus) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        self.tasks.spawn(async move { this.send(status).await })
    }

    /// Sends statuses in order in the background.
    pub fn spawn(&self, statuses: Vec<PayloadStatus>) {
        let this = self.clone();
        self.tasks.spawn(async move {
            for s in statuses {
                this.send(s).await;
            }
        });
    }

    /// At shutdown: waits up to `limit` for the background sends (each bounded by the bus's
    /// publish timeout). Sends started later are still tracked.
    pub async fn drain(&self, limit: std::time::Duration) {
        self.tasks.close();
        let pending = self.tasks.len();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.tasks.len(),
                "statuses still unsent when the shutdown grace ran out"
            );
        } else if pending > 0 {
            tracing::debug!(pending, "background statuses sent before stopping");
        }
        self.tasks.reopen();
    }
}
