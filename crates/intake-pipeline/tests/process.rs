//! `process_file` (the rule author's tool) with the rules engine and with the external engine.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use intake_core::config::EnvMap;
use intake_pipeline::{process_file, OutputFormat, PipelineError};
use serde_json::Value;

fn write_archive(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("archive.tar.gz");
    std::fs::write(&path, common::cluster_archive(0)).unwrap();
    path
}

#[tokio::test]
async fn rules_engine_report_and_ccx_output() {
    let dir = tempfile::tempdir().unwrap();
    let archive = write_archive(dir.path());
    let yaml = format!("plugins:\n  packages: [intake_ocp, {}]\n", common::SITE_OCP);
    let config = intake_pipeline::load_config_str(&yaml, dir.path(), &EnvMap::new()).unwrap();
    let report = process_file(&config, &archive, "54321", OutputFormat::Report)
        .await
        .unwrap();
    assert_eq!(
        report["reports"][0]["rule_id"],
        "cluster_update|CLUSTER_UPDATE_FAILING"
    );
    assert_eq!(report["pass"].as_array().unwrap().len(), 2);
    let ccx = process_file(&config, &archive, "54321", OutputFormat::Ccx)
        .await
        .unwrap();
    assert_eq!(ccx["OrgID"], 54321);
    assert_eq!(ccx["ClusterName"], "c25da893-5ba1-4229-9432-c8ec9334c4a0");
    assert_eq!(ccx["Version"], 1);
    assert!(ccx.get("AccountNumber").is_none());
}

fn external_config(dir: &Path, script: &str, timeout: &str) -> intake_pipeline::PipelineConfig {
    let path = dir.join("runner.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = format!(
        "plugins:\n  packages: [some_python_rules]\nservice:\n  engine:\n    kind: external\n    command: [{}]\n    timeout: {timeout}\n    env: {{MARK: from-config}}\n",
        path.display()
    );
    intake_pipeline::load_config_str(&yaml, dir, &EnvMap::new()).unwrap()
}

fn stage_reason(e: PipelineError) -> (&'static str, &'static str, String) {
    match e {
        PipelineError::Process(s) => (s.stage.as_str(), s.reason, s.detail),
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn external_engine_gets_json_and_returns_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let archive = write_archive(dir.path());
    let script = "cat > \"$PWD/input.json\"; cp \"$PWD/input.json\" \"$(dirname \"$0\")/seen.json\"; printf '{\"reports\": [], \"version\": 2, \"mark\": \"%s\"}' \"$MARK\"";
    let config = external_config(dir.path(), script, "10s");
    let ccx = process_file(&config, &archive, "54321", OutputFormat::Ccx)
        .await
        .unwrap();
    assert_eq!(ccx["Version"], 2);
    assert_eq!(ccx["Report"]["mark"], "from-config");
    assert_eq!(ccx["Report"]["skips"], serde_json::json!([]));
    let seen: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("seen.json")).unwrap()).unwrap();
    assert_eq!(seen["protocol"], 1);
    assert_eq!(seen["org_id"], "54321");
    assert_eq!(seen["cluster_id"], "c25da893-5ba1-4229-9432-c8ec9334c4a0");
    assert_eq!(seen["plugins"]["packages"][0], "some_python_rules");
    let extracted = seen["extracted_path"].as_str().unwrap();
    assert!(extracted.ends_with("extracted"), "{extracted}");
}

#[tokio::test]
async fn external_engine_may_write_megabytes_to_stderr_before_its_report() {
    // A pipe holds ~64 KiB: an engine that logs more than that before printing its report must
    // not wait on us until the timeout.
    let dir = tempfile::tempdir().unwrap();
    let archive = write_archive(dir.path());
    let script =
        "cat >/dev/null; head -c 3000000 /dev/zero | tr '\\0' x >&2; echo '{\"reports\": []}'";
    let config = external_config(dir.path(), script, "20s");
    let started = std::time::Instant::now();
    let report = process_file(&config, &archive, "1", OutputFormat::Report)
        .await
        .unwrap();
    assert_eq!(report["reports"], serde_json::json!([]));
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[tokio::test]
async fn external_engine_failures_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let archive = write_archive(dir.path());
    let cases = [
        ("echo boom >&2; exit 3", "1s", "external_failed"),
        ("echo not json", "5s", "bad_engine_output"),
        ("echo '{\"no\": \"reports\"}'", "5s", "bad_engine_output"),
        ("sleep 30", "1s", "external_timeout"),
    ];
    for (script, timeout, reason) in cases {
        let config = external_config(dir.path(), script, timeout);
        let (stage, got, detail) = stage_reason(
            process_file(&config, &archive, "1", OutputFormat::Report)
                .await
                .unwrap_err(),
        );
        assert_eq!((stage, got), ("rules", reason), "{script}: {detail}");
        if reason == "external_failed" {
            assert!(detail.contains("boom"), "{detail}");
        }
    }
}

#[tokio::test]
async fn an_archive_that_cannot_be_read_keeps_the_archive_error_as_its_source() {
    use std::error::Error as _;

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tar.gz");
    std::fs::write(&junk, b"not an archive at all").unwrap();
    let config = intake_pipeline::load_config_str("{}", dir.path(), &EnvMap::new()).unwrap();
    let e = process_file(&config, &junk, "1", OutputFormat::Report)
        .await
        .unwrap_err();
    let PipelineError::Process(stage) = &e else {
        panic!("unexpected {e}");
    };
    assert_eq!(
        (stage.stage.as_str(), stage.reason),
        ("extract", "unsupported_format")
    );
    let archive = stage
        .source()
        .and_then(|s| s.downcast_ref::<intake_archive::ArchiveError>())
        .unwrap_or_else(|| panic!("an ArchiveError under {stage:?}"));
    assert_eq!(
        archive.to_string(),
        stage.detail,
        "the detail is the archive error's text"
    );
}
