//! deploy/ stays in step with the binary: the compose file, the Kubernetes manifests and the
//! ClowdApp template parse, set only variables the configuration reads, and fit the parts they run;
//! the dashboard and alert rules name only metrics the parts export (promtool from the harness).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[path = "deploy/clowdapp.rs"]
mod clowdapp;
mod common;
#[path = "deploy/kubernetes.rs"]
mod kubernetes;
#[path = "deploy/monitoring.rs"]
mod monitoring;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every `.yaml` file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The variables intake reads: the configuration's, plus `PIPELINE_CONFIG` (a flag's variable).
fn known_variables() -> BTreeSet<&'static str> {
    let mut known: BTreeSet<&str> = intake_core::config::documented_variables()
        .into_iter()
        .collect();
    known.insert("PIPELINE_CONFIG");
    known
}
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
