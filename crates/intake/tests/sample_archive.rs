//! Black-box: README's sample archive (scripts/sample-ocp-archive.sh) goes through
//! `intake pipeline process` on the built-in configuration and hits a starter rule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::process::Command;

#[test]
fn sample_archive_hits_the_cluster_update_rule() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("ocp.tar.gz");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/sample-ocp-archive.sh"
    );
    let made = Command::new("bash")
        .arg(script)
        .arg(&archive)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["pipeline", "process"])
        .arg(&archive)
        .current_dir(dir.path())
        .env("LOG_LEVEL", "warn")
        .env_remove("PIPELINE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["system"]["metadata"]["cluster_id"],
        "c25da893-5ba1-4229-9432-c8ec9334c4a0"
    );
    assert_eq!(
        report["reports"][0]["rule_id"],
        "cluster_update|CLUSTER_UPDATE_FAILING"
    );
}
