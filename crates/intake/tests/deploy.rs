//! deploy/ stays in step with the binary: the compose file, the Kubernetes manifests and the
//! ClowdApp template parse, set only variables the configuration reads, and fit the parts they run;
//! the dashboard and alert rules name only metrics the parts export (promtool from the harness).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[path = "deploy/clowdapp.rs"]
mod clowdapp;
use crate::common;
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

/// The instructions of the Dockerfile's last stage (the image that runs), continuation lines joined.
fn final_stage() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let lines: Vec<String> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    lines[last_from..].to_vec()
}

#[test]
fn the_image_runs_as_a_non_root_user_owning_its_data_dir() {
    let stage = final_stage();
    let users: Vec<&String> = stage.iter().filter(|l| l.starts_with("USER ")).collect();
    let user = users.last().expect("the image sets USER");
    let uid = user["USER ".len()..].split(':').next().unwrap().trim();
    assert_eq!(uid, "10001", "{user}");
    let run = stage
        .iter()
        .filter(|l| l.starts_with("RUN "))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(run.contains("--uid 10001"), "the user exists: {run}");
    assert!(
        run.contains("chown 10001:10001 /data"),
        "it owns /data: {run}"
    );
    assert!(stage
        .iter()
        .any(|l| l.starts_with("ENV ") && l.contains("INTAKE_DATA_DIR=/data")));
    // The compose file mounts intake's volume where the image keeps its data, and Kafka's where
    // Kafka writes.
    let compose = std::fs::read_to_string(deploy_dir().join("docker-compose.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&compose).unwrap();
    let services = &docs[0]["services"];
    assert_eq!(
        services["intake"]["environment"]["INTAKE_DATA_DIR"].as_str(),
        Some("/data")
    );
    assert_eq!(
        services["intake"]["volumes"][0].as_str(),
        Some("intake-data:/data")
    );
    let kafka_dir = services["kafka"]["environment"]["KAFKA_LOG_DIRS"]
        .as_str()
        .expect("KAFKA_LOG_DIRS is set");
    assert_eq!(
        services["kafka"]["volumes"][0].as_str(),
        Some(format!("kafka-data:{kafka_dir}").as_str())
    );
}

#[test]
fn the_image_bakes_in_commit_and_date_and_strips_the_binary() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    for needed in [
        "ARG GIT_COMMIT",
        "ARG BUILD_DATE",
        "GIT_COMMIT=${GIT_COMMIT}",
        "BUILD_DATE=${BUILD_DATE}",
        "CARGO_PROFILE_RELEASE_STRIP=symbols",
    ] {
        assert!(text.contains(needed), "Dockerfile lacks {needed}");
    }
    // The names the binary reads them under.
    let version =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/version.rs")).unwrap();
    assert!(
        version.contains("option_env!(\"GIT_COMMIT\")")
            && version.contains("option_env!(\"BUILD_DATE\")")
    );
}
