//! Translates librdkafka errors into [`BusError`]s.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::BusError;

/// Whether `code` says the topic (or its partition) does not exist.
pub(crate) fn is_unknown_topic(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::UnknownTopicId
    )
}

/// Whether `code` says no broker could be reached.
fn is_unreachable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
    )
}

/// The librdkafka error code behind `error`, admin operations included (rdkafka reports none for
/// those).
fn code_of(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    match error {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

/// Whether a failed publish means the producer itself is unusable: librdkafka raised a fatal error,
/// or the broker no longer accepts the producer's id (a broker that lost its producer state, e.g.
/// on a restart, answers `UnknownProducerId` or `ProducerFenced` to every later message). Only a
/// new producer, with a new id, recovers from these.
pub(crate) fn producer_identity_lost(
    error: &KafkaError,
    fatal: Option<(RDKafkaErrorCode, String)>,
) -> bool {
    fatal.is_some()
        || matches!(
            code_of(error),
            Some(
                RDKafkaErrorCode::Fatal
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::InvalidProducerIdMapping
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
            )
        )
}

/// A failed publish to `topic`.
pub(crate) fn publish_error(topic: &str, error: &KafkaError, timeout: Duration) -> BusError {
    match code_of(error) {
        Some(
            RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut,
        ) => timeout_error(topic, timeout),
        Some(code) if is_unknown_topic(code) => BusError::UnknownTopic(topic.to_owned()),
        Some(code) if is_unreachable(code) => {
            BusError::unavailable_from(format!("publishing to {topic:?}"), error.clone())
        }
        _ => BusError::backend_from(format!("publishing to {topic:?}"), error.clone()),
    }
}

/// The publish to `topic` was not acknowledged in time.
pub(crate) fn timeout_error(topic: &str, timeout: Duration) -> BusError {
    BusError::Timeout {
        topic: topic.to_owned(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Any other failed operation; `what` says which, for the log line.
pub(crate) fn other_error(what: &str, error: &KafkaError) -> BusError {
    match code_of(error) {
        Some(code) if is_unreachable(code) || code == RDKafkaErrorCode::OperationTimedOut => {
            BusError::unavailable_from(what, error.clone())
        }
        _ => BusError::backend_from(what, error.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_failures_map_to_the_seams_errors() {
        let t = Duration::from_millis(1500);
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(
            matches!(publish_error("a", &timed_out, t), BusError::Timeout { topic, timeout_ms: 1500 } if topic == "a")
        );
        let unknown = KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert!(
            matches!(publish_error("a", &unknown, t), BusError::UnknownTopic(topic) if topic == "a")
        );
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert!(matches!(
            publish_error("a", &down, t),
            BusError::Unavailable { .. }
        ));
        let too_big = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(
            publish_error("a", &too_big, t),
            BusError::Backend { .. }
        ));
    }

    #[test]
    fn a_refused_producer_id_or_a_fatal_error_means_a_new_producer_is_needed() {
        for code in [
            RDKafkaErrorCode::UnknownProducerId,
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
        ] {
            assert!(
                producer_identity_lost(&KafkaError::MessageProduction(code), None),
                "{code}"
            );
        }
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert!(!producer_identity_lost(&down, None));
        let fatal = Some((
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            "fatal".to_owned(),
        ));
        assert!(producer_identity_lost(&down, fatal));
    }

    #[test]
    fn an_unanswered_admin_operation_means_the_bus_is_unavailable() {
        let admin = KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut);
        assert!(matches!(
            other_error("creating topics", &admin),
            BusError::Unavailable { .. }
        ));
        let refused = KafkaError::AdminOp(RDKafkaErrorCode::PolicyViolation);
        assert!(matches!(
            other_error("creating topics", &refused),
            BusError::Backend { .. }
        ));
    }
}
