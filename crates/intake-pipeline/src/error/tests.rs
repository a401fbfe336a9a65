use std::error::Error as _;
use std::io;

use intake_bus::{BusError, ReceivedMessage};
use intake_rules::declarative::LoadError;

use super::*;

fn refused() -> io::Error {
    // A library error whose text holds what a dead letter must never carry.
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "refused: http://user:pw@storage.example/bucket/secret-key",
    )
}

#[test]
fn a_cause_is_the_source_and_changes_nothing_else() {
    let plain = StageError::transient(Stage::Download, "connection", "cannot connect");
    let caused = plain.clone().caused_by(refused());
    assert_eq!(caused.to_string(), "download: connection: cannot connect");
    assert_eq!(caused.to_string(), plain.to_string());
    assert_eq!(caused, plain, "equality compares what a dead letter says");
    assert!(plain.source().is_none());
    let source = caused.source().expect("the cause");
    let io = source
        .downcast_ref::<io::Error>()
        .expect("the io::Error itself");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
    // A copy shares the cause, and attempts keep it.
    let copy = caused.clone().with_attempts(3);
    let (a, b) = (caused.cause().unwrap(), copy.cause().unwrap());
    assert!(Arc::ptr_eq(a, b));
    assert_eq!(copy.attempts, 3);
}

fn message() -> ReceivedMessage {
    ReceivedMessage {
        topic: "platform.upload.available".into(),
        partition: 2,
        offset: 41,
        key: Some(b"k".to_vec()),
        headers: vec![intake_bus::Header {
            name: "request_id".into(),
            value: b"r1".to_vec(),
        }],
        value: b"{}".to_vec(),
        timestamp_ms: None,
    }
}

/// Every header but the two times, which differ between two calls.
fn headers(record: &intake_bus::OutgoingMessage) -> Vec<(String, String)> {
    record
        .headers
        .iter()
        .filter(|h| h.name != "intake-error-time" && h.name != "dlq_time")
        .map(|h| {
            (
                h.name.clone(),
                String::from_utf8_lossy(&h.value).into_owned(),
            )
        })
        .collect()
}

#[test]
fn the_dead_letter_is_the_same_with_or_without_a_cause() {
    let plain = StageError::transient(Stage::Download, "connection", "cannot connect");
    let caused = plain.clone().caused_by(refused());
    let msg = message();
    let with = crate::dead_letter::record("dlq", &msg, &caused);
    let without = crate::dead_letter::record("dlq", &msg, &plain);
    assert_eq!(headers(&with), headers(&without));
    assert_eq!((&with.key, &with.value), (&without.key, &without.value));
    let detail = headers(&without)
        .into_iter()
        .find(|(n, _)| n == "intake-error-detail")
        .map(|(_, v)| v);
    assert_eq!(detail.as_deref(), Some("cannot connect"));
    for h in &with.headers {
        let text = String::from_utf8_lossy(&h.value);
        assert!(!text.contains("secret"), "{}: {text}", h.name);
    }
}

fn load_error() -> LoadError {
    match intake_rules::declarative::load_str("rules/bad.yaml", "set: [x\n") {
        Err(e) => e,
        Ok(_) => panic!("an unclosed sequence is not YAML"),
    }
}

#[test]
fn a_rules_error_says_what_it_said_and_keeps_its_cause() {
    let load = load_error();
    let e = PipelineError::rules_from("", load.clone());
    assert_eq!(e.to_string(), format!("rule set: {load}"));
    assert_eq!(e.exit_code(), 2);
    let source = e.source().and_then(|s| s.downcast_ref::<LoadError>());
    assert_eq!(source, Some(&load));
    // The YAML problem underneath the rule file's error is reachable too.
    let yaml = source.and_then(|s| s.source());
    assert!(yaml.is_some_and(|y| y.is::<intake_rules::yaml::YamlError>()));

    let glob = glob::Pattern::new("[").unwrap_err();
    let text = glob.to_string();
    let e = PipelineError::rules_from("plugins.packages \"[\"", glob);
    assert_eq!(
        e.to_string(),
        format!("rule set: plugins.packages \"[\": {text}")
    );
    assert!(e.source().is_some_and(|s| s.is::<glob::PatternError>()));

    let e = PipelineError::rules("plugins.packages \"x\": no rule file matches");
    assert_eq!(
        e.to_string(),
        "rule set: plugins.packages \"x\": no rule file matches"
    );
    assert!(e.source().is_none());
}

#[test]
fn a_setup_error_says_what_it_said_and_keeps_its_cause() {
    let bus = BusError::config("KAFKA_BROKERS is empty");
    let e = PipelineError::setup_from("service.consumer", bus);
    assert_eq!(
        e.to_string(),
        "service.consumer: bus configuration: KAFKA_BROKERS is empty"
    );
    assert_eq!(e.exit_code(), 1);
    assert!(e.source().is_some_and(|s| s.is::<BusError>()));
    let e = PipelineError::setup("service.engine.command is empty");
    assert_eq!(e.to_string(), "service.engine.command is empty");
    assert!(e.source().is_none());
}

#[test]
fn a_chain_names_every_cause_once() {
    let stage = StageError::transient(Stage::Download, "io", "writing the archive: disk full")
        .caused_by(io::Error::other("disk full"));
    assert_eq!(
        Chain(&stage).to_string(),
        "download: io: writing the archive: disk full"
    );
    let stage = StageError::transient(Stage::Download, "connection", "cannot connect")
        .caused_by(io::Error::other("connection refused"));
    assert_eq!(
        Chain::sources(&stage).map(|c| c.to_string()).as_deref(),
        Some("connection refused")
    );
    let failed = PipelineError::Process(stage);
    assert_eq!(
        Chain(&failed).to_string(),
        "processing failed: download: connection: cannot connect: connection refused"
    );
    // intake-bus names the cause in its own message: it is not repeated.
    let bus = BusError::unavailable_from("connecting to the broker", io::Error::other("refused"));
    assert_eq!(
        Chain(&bus).to_string(),
        "the bus is unavailable: connecting to the broker: refused"
    );
    let plain = StageError::internal(Stage::Rules, "no rules graph");
    assert!(Chain::sources(&plain).is_none());
}
