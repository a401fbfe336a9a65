//! The one retry policy of the consumers: exponential backoff from 100 ms doubling to 5 s, jittered,
//! without a limit on attempts (a consumer waits out an outage; it does not give up), and a pause
//! that ends at once when the cancel signal fires.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use crate::{Bus, BusError, Consumer, Delivery, OutgoingMessage, Subscription};

/// First pause after a failure.
pub const FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two attempts.
pub const LONGEST: Duration = Duration::from_secs(5);

/// The policy's builder: [`FIRST`] doubling to [`LONGEST`], jittered, attempts unlimited.
pub fn policy() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(FIRST)
        .with_max_delay(LONGEST)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// Successive pauses of one run of failures; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    delays: ExponentialBackoff,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            delays: policy().build(),
        }
    }
}

impl Backoff {
    /// The pause before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(LONGEST)
    }

    /// Starts over from [`FIRST`] (after a success).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Waits the next pause; false if `cancel` fired first (then it returns at once).
    pub async fn pause(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        pause(delay, cancel).await
    }
}

/// Waits `delay`; false if `cancel` fired first (then it returns at once).
pub async fn pause(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Publishes `message`, retrying every refusal (an outage, an unacknowledged produce) until the bus
/// acknowledges it. `Err` (the last refusal) only when `cancel` fires first: the caller then leaves
/// its message uncommitted, to be delivered again.
pub async fn publish(
    bus: &dyn Bus,
    message: OutgoingMessage,
    cancel: &CancellationToken,
) -> Result<Delivery, BusError> {
    let mut backoff = Backoff::default();
    loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return Err(BusError::unavailable("cancelled while publishing")),
            attempt = bus.publish(message.clone()) => attempt,
        };
        match attempt {
            Ok(delivery) => return Ok(delivery),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(topic = %message.topic, error = %e, retry_in = ?delay, "publish refused; retrying");
                if !pause(delay, cancel).await {
                    return Err(e);
                }
            }
        }
    }
}

/// Subscribes, retrying while the bus is unavailable (a broker not up yet). `Ok(None)` when `cancel`
/// fires first; an error that retrying cannot fix (configuration) is returned.
pub async fn subscribe(
    bus: &dyn Bus,
    subscription: &Subscription,
    cancel: &CancellationToken,
) -> Result<Option<Box<dyn Consumer>>, BusError> {
    let mut backoff = Backoff::default();
    loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            attempt = bus.subscribe(subscription.clone()) => attempt,
        };
        match attempt {
            Ok(consumer) => return Ok(Some(consumer)),
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!(group = %subscription.group, topics = ?subscription.topics, error = %e, retry_in = ?delay, "cannot subscribe yet; retrying");
                if !pause(delay, cancel).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_longest_and_stay_there() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        // Jitter adds up to one more pause on top of the base one.
        assert!(delays[0] >= FIRST && delays[0] <= 2 * FIRST, "{delays:?}");
        assert!(
            delays[19] >= LONGEST && delays[19] <= 2 * LONGEST,
            "{delays:?}"
        );
        backoff.reset();
        assert!(backoff.next_delay() <= 2 * FIRST);
    }

    #[tokio::test]
    async fn a_cancelled_pause_returns_at_once() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let started = std::time::Instant::now();
        assert!(!pause(Duration::from_secs(60), &cancel).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
