//! The pipeline's handler on the consumer runtime (spec pipeline.md §4): the runtime owns
//! fetching, in-order commits, `max_in_flight` and the shutdown grace; `workers` bounds only the
//! CPU-bound steps (see [`crate::flow`]), so downloads and broker round trips of other messages
//! go on while the cores work.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use intake_bus::runtime::{self, Handled, Handler, Settings};
use intake_bus::{Consumer, ReceivedMessage, StartFrom, Subscription};
use tokio_util::sync::CancellationToken;

use crate::error::PipelineError;
use crate::flow::{Ended, Shared};

/// One archive message to its end; a message cancelled at shutdown stays uncommitted.
struct Pipeline(Arc<Shared>);

#[async_trait]
impl Handler for Pipeline {
    async fn handle(&self, message: ReceivedMessage, cancel: CancellationToken) -> Handled {
        let gauge = &crate::metrics::get().in_flight;
        gauge.inc();
        let ended = self.0.handle(&message, &cancel).await;
        gauge.dec();
        match ended {
            Ended::Cancelled => Handled::Abandoned,
            _ => Handled::Done,
        }
    }
}

/// Runs the pipeline on `consumer` until `cancel` fires, then drains for `grace`.
pub async fn consume(
    shared: Arc<Shared>,
    consumer: Box<dyn Consumer>,
    cancel: CancellationToken,
    grace: Duration,
) -> Result<(), PipelineError> {
    let in_flight = shared.config.consumer.max_in_flight;
    let settings = Settings {
        grace,
        lag: Some(Arc::new(|topic, partition, lag| {
            crate::metrics::get()
                .consumer_lag
                .with_label_values(&[topic, partition])
                .set(lag);
        })),
        ..Settings::new("pipeline", in_flight)
    };
    runtime::run(consumer, Arc::new(Pipeline(shared)), settings, cancel)
        .await
        .map_err(PipelineError::from)
}

/// The subscription of the consumer section (wire names).
pub fn subscription(shared: &Shared, topic: impl Fn(&str) -> String) -> Subscription {
    Subscription {
        group: shared.config.consumer.group_id.clone(),
        topics: shared
            .config
            .consumer
            .topics
            .iter()
            .map(|t| topic(t))
            .collect(),
        start: StartFrom::Earliest,
    }
}
