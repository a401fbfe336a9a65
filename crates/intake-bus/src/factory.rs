//! The factory: the driver named by the configuration, opened once at start-up.

use std::sync::Arc;

use intake_core::config::{BusConfig, BusDriver};

use crate::embedded::{EmbeddedBus, EmbeddedOptions};
use crate::{Bus, BusError};

/// Opens the configured bus: `embedded` in `config.data_dir` (created if missing), or `kafka`.
pub async fn open(config: &BusConfig) -> Result<Arc<dyn Bus>, BusError> {
    match config.driver {
        BusDriver::Embedded => {
            let options = EmbeddedOptions {
                publish_timeout: config.publish_timeout,
                retention: config.retention,
                lease_expiry: config.lease_expiry,
                default_partitions: config.partitions,
                ..EmbeddedOptions::default()
            };
            Ok(Arc::new(
                EmbeddedBus::open(&config.data_dir, options).await?,
            ))
        }
        BusDriver::Kafka => Ok(Arc::new(crate::kafka::KafkaBus::new(config)?)),
    }
}
