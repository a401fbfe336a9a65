//! Consumer lag for the gauges every consuming part shows (`*_consumer_lag{topic,partition}`).

use crate::Consumer;

/// How often a consuming part reads its lag from the bus.
pub const READ_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads `consumer`'s lag and hands `set` each held partition's topic, partition (as a label) and
/// lag. A failed read sets nothing (the gauges keep their last values) and is logged at debug.
pub async fn read(consumer: &mut dyn Consumer, mut set: impl FnMut(&str, &str, i64)) {
    match consumer.lag().await {
        Ok(partitions) => {
            for p in partitions {
                let lag = i64::try_from(p.lag()).unwrap_or(i64::MAX);
                set(&p.topic, &p.partition.to_string(), lag);
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot read the consumer lag"),
    }
}
