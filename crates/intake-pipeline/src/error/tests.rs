use std::error::Error as _;

use intake_bus::BusError;
use intake_rules::declarative::LoadError;

use super::*;

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
