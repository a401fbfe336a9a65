//! librdkafka's own log lines, routed to `tracing` at most [`LINES_PER_SECOND`] a second per client:
//! while a broker is down librdkafka repeats the same connection error many times a second, which
//! would bury everything else. Lines over the limit are counted, and the count is said once the
//! second is over.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

/// Most librdkafka lines logged per client per second.
pub const LINES_PER_SECOND: u32 = 5;

const WINDOW: Duration = Duration::from_secs(1);

/// Lets through at most `limit` lines per second and counts the rest.
#[derive(Debug)]
pub struct LogLimiter {
    limit: u32,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            state: Mutex::new(Window {
                started: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line seen at `now` may be logged, and how many were suppressed in the window
    /// that has just ended (to be said first), if any.
    pub fn admit(&self, now: Instant) -> (bool, Option<u64>) {
        let mut w = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ended = None;
        if now.duration_since(w.started) >= WINDOW {
            if w.suppressed > 0 {
                ended = Some(w.suppressed);
            }
            *w = Window {
                started: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < self.limit {
            w.logged += 1;
            (true, ended)
        } else {
            w.suppressed += 1;
            (false, ended)
        }
    }
}

/// The context of the producer and admin clients: librdkafka's lines through a [`LogLimiter`].
pub struct LogContext {
    /// `producer` or `admin`, in each line.
    client: &'static str,
    limiter: LogLimiter,
}

impl LogContext {
    pub fn new(client: &'static str) -> Self {
        Self {
            client,
            limiter: LogLimiter::new(LINES_PER_SECOND),
        }
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        route_line(&self.limiter, self.client, "", level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        route_error(&self.limiter, self.client, "", &error, reason);
    }
}

/// Says how many lines the window that just ended held back; whether this line may go out.
fn admit(limiter: &LogLimiter, client: &str, group: &str) -> bool {
    let (admitted, suppressed) = limiter.admit(Instant::now());
    if let Some(n) = suppressed {
        tracing::warn!(
            client,
            group,
            suppressed = n,
            "librdkafka: {n} more lines in the last second not shown"
        );
    }
    admitted
}

/// One librdkafka log line of `client` (`group`: the consumer group, empty for other clients),
/// at its own level, if `limiter` lets it through.
pub(crate) fn route_line(
    limiter: &LogLimiter,
    client: &str,
    group: &str,
    level: RDKafkaLogLevel,
    facility: &str,
    message: &str,
) {
    if !admit(limiter, client, group) {
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(client, group, facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(client, group, facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(client, group, facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(client, group, facility, "librdkafka: {message}"),
    }
}

/// A client-level error librdkafka reports (it recovers from these on its own), if `limiter` lets
/// it through.
pub(crate) fn route_error(
    limiter: &LogLimiter,
    client: &str,
    group: &str,
    error: &impl std::fmt::Display,
    reason: &str,
) {
    if admit(limiter, client, group) {
        tracing::warn!(client, group, %error, "kafka {client}: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_per_second_and_the_rest_counted() {
        let limiter = LogLimiter::new(3);
        let start = Instant::now();
        let admitted = (0..25)
            .filter(|i| limiter.admit(start + Duration::from_millis(*i)).0)
            .count();
        assert_eq!(admitted, 3);
        // The next second: the 22 suppressed are reported, and lines pass again.
        assert_eq!(
            limiter.admit(start + Duration::from_millis(1_100)),
            (true, Some(22))
        );
        assert_eq!(
            limiter.admit(start + Duration::from_millis(1_200)),
            (true, None)
        );
    }
}
