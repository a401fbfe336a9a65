//! Topic administration: creating topics (idempotently) and listing them through cluster metadata.
//! Metadata calls block in librdkafka, so they run on the blocking pool.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer;

use super::errors::other_error;
use crate::{BusError, TopicSpec};

/// Creates the topics that do not exist yet, then waits (up to `timeout`) until the cluster's
/// metadata lists all of them, so a publish right after this returns finds its topic.
pub(crate) async fn create_topics(
    admin: &AdminClient<super::log::LogContext>,
    producer: &super::producer::Client,
    topics: &[TopicSpec],
    timeout: Duration,
) -> Result<(), BusError> {
    if topics.is_empty() {
        return Ok(());
    }
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(i32::from(t.replication)),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = tokio::time::timeout(timeout, admin.create_topics(&new_topics, &options))
        .await
        .map_err(|_| {
            BusError::unavailable(format!("creating topics: no answer within {timeout:?}"))
        })?
        .map_err(|e| other_error("creating topics", &e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((name, code)) => {
                return Err(BusError::backend(format!(
                    "creating topic {name:?}: {code}"
                )))
            }
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let listed = list_topics(producer, timeout).await?;
        let missing: Vec<&str> = topics
            .iter()
            .map(|t| t.name.as_str())
            .filter(|name| !listed.iter().any(|l| l == name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BusError::unavailable(format!(
                "created topics {missing:?} are not in the metadata after {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every topic in the cluster's metadata, sorted; internal topics (`__…`) are left out.
pub(crate) async fn list_topics(
    producer: &super::producer::Client,
    timeout: Duration,
) -> Result<Vec<String>, BusError> {
    let producer = producer.clone();
    let metadata =
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
            .await
            .map_err(|e| BusError::backend_from("metadata task", e))?
            .map_err(|e| other_error("fetching metadata", &e))?;
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
        .map(|t| t.name().to_owned())
        .collect();
    names.sort();
    Ok(names)
}
