//! deploy/docker-compose.yml stays in step with the configuration: it parses, and every variable it
//! gives the intake service is one the configuration reads (a misspelt name would be ignored).

use std::collections::BTreeSet;

#[test]
fn compose_file_sets_only_variables_the_config_reads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/docker-compose.yml"
    ))
    .unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let services = &docs[0]["services"];
    for name in ["kafka", "minio", "postgres", "intake"] {
        assert!(!services[name].is_badvalue(), "service {name} missing");
    }
    let intake = &services["intake"];
    assert_eq!(intake["command"][0].as_str(), Some("serve"));
    let env = intake["environment"].as_hash().expect("a map of variables");
    let set: BTreeSet<&str> = env.keys().filter_map(|k| k.as_str()).collect();
    let read: BTreeSet<&str> = intake_core::config::documented_variables()
        .into_iter()
        .collect();
    let unknown: Vec<_> = set.difference(&read).collect();
    assert!(
        unknown.is_empty(),
        "variables no configuration reads: {unknown:?}"
    );
    for needed in [
        "KAFKA_BROKERS",
        "S3_ENDPOINT_URL",
        "TRACKER_DATABASE_URL",
        "BUS_CREATE_TOPICS",
        "STORAGE_CREATE_BUCKETS",
    ] {
        assert!(set.contains(needed), "{needed} not set for intake");
    }
}
