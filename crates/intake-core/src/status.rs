//! Payload status values and the statuses ingress emits.

/// Statuses that end a service's time on a payload.
pub const TERMINAL: [&str; 3] = ["success", "error", "rejected"];

pub const RECEIVED: &str = "received";
pub const PROCESSING: &str = "processing";
pub const SUCCESS: &str = "success";
pub const REJECTED: &str = "rejected";
pub const ERROR: &str = "error";

/// Whether `status` ends a service's time on a payload.
pub fn is_terminal(status: &str) -> bool {
    TERMINAL.contains(&status)
}
