//! Golden test: a generated cluster-archive tree through `intake_ocp` and the shipped
//! `site_ocp.yaml` gives exactly the report of spec pipeline.md §9 (times aside).

use std::path::Path;
use std::time::{Duration, Instant};

use intake_rules::{declarative, ocp, ComponentConfig, Graph, Registry, Selection};
use serde_json::{json, Value};

const SITE_OCP: &str = include_str!("../../intake-pipeline/examples-config/rules/site_ocp.yaml");
const CLUSTER: &str = "C25DA893-5BA1-4229-9432-C8EC9334C4A0";

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn operator(name: &str, degraded: &str, available: &str, upgradeable: &str) -> String {
    json!({"metadata": {"name": name}, "status": {"conditions": [
        {"type": "Degraded", "status": degraded, "reason": "AsExpected"},
        {"type": "Available", "status": available, "reason": "AsExpected"},
        {"type": "Upgradeable", "status": upgradeable, "reason": "AsExpected"}]}})
    .to_string()
}

fn cluster_tree(root: &Path) {
    write(root, "config/id", &format!("{CLUSTER}\n"));
    write(
        root,
        "config/version.json",
        &json!({"spec": {"channel": "stable-4.14"}, "status": {"desired": {"version": "4.14.3"}, "conditions": [
            {"type": "Available", "status": "True"},
            {"type": "Failing", "status": "True", "reason": "ClusterOperatorDegraded",
             "message": "Cluster operator etcd is degraded"}]}})
        .to_string(),
    );
    write(
        root,
        "config/clusteroperator/etcd.json",
        &operator("etcd", "False", "True", "True"),
    );
    write(
        root,
        "config/clusteroperator/dns.json",
        &operator("dns", "False", "True", "True"),
    );
}

fn graph(selection: &Selection) -> Graph {
    let mut reg = Registry::new();
    ocp::register(&mut reg).unwrap();
    declarative::load_str("rules/site_ocp.yaml", SITE_OCP)
        .unwrap()
        .register(&mut reg)
        .unwrap();
    Graph::build(reg, selection).unwrap()
}

fn evaluate(graph: &Graph, root: &Path) -> Value {
    let mut report = graph
        .evaluate(root, Instant::now() + Duration::from_secs(10))
        .unwrap()
        .report;
    let meta = report["analysis_metadata"].as_object_mut().unwrap();
    for k in ["start", "finish"] {
        let t = meta[k].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 27, "{t}");
        meta.insert(k.into(), json!("T"));
    }
    report
}

fn site_hash() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(SITE_OCP.as_bytes()))[..12].to_owned()
}

#[test]
fn cluster_archive_gives_the_spec_report() {
    let dir = tempfile::tempdir().unwrap();
    cluster_tree(dir.path());
    let report = evaluate(&graph(&Selection::default()), dir.path());
    let expected = json!({
        "system": {"metadata": {"cluster_id": "c25da893-5ba1-4229-9432-c8ec9334c4a0", "version": "4.14.3", "channel": "stable-4.14"}, "hostname": null},
        "reports": [{"rule_id": "cluster_update|CLUSTER_UPDATE_FAILING", "component": "intake_ocp.cluster_update.report", "type": "rule",
            "key": "CLUSTER_UPDATE_FAILING", "details": {"type": "rule", "error_key": "CLUSTER_UPDATE_FAILING", "current_version": "4.14.3",
            "reason": "ClusterOperatorDegraded", "message": "Cluster operator etcd is degraded"}, "tags": [], "links": {}}],
        "fingerprints": [],
        "skips": [{"rule_fqdn": "site_ocp.cloud_platform.report", "reason": "MISSING_REQUIREMENTS",
            "details": "All: ['site_ocp.parsers.infrastructure'] Any: ", "type": "skip"}],
        "info": [{"info_id": "version_info|CLUSTER_VERSION_INFO", "component": "intake_ocp.version_info.report", "type": "info",
            "key": "CLUSTER_VERSION_INFO", "details": {"type": "info", "info_key": "CLUSTER_VERSION_INFO", "version": "4.14.3"}, "tags": [], "links": {}}],
        "pass": [{"pass_id": "operator_status|OPERATORS_DEGRADED", "component": "intake_ocp.operator_status.report", "type": "pass",
            "key": "OPERATORS_DEGRADED", "details": {"type": "pass", "pass_key": "OPERATORS_DEGRADED"}, "tags": [], "links": {}},
            {"pass_id": "operator_upgrade_blocked|OPERATOR_UPGRADE_BLOCKED", "component": "site_ocp.operator_upgrade_blocked.report", "type": "pass",
            "key": "OPERATOR_UPGRADE_BLOCKED", "details": {"type": "pass", "pass_key": "OPERATOR_UPGRADE_BLOCKED"}, "tags": ["operators", "upgrade"],
            "links": {"kcs": ["https://access.redhat.com/solutions/0000000"]}}],
        "analysis_metadata": {"start": "T", "finish": "T",
            "execution_context": "intake.context.InsightsOperatorContext", "plugin_sets": {
                "intake": {"version": intake_rules::VERSION, "commit": intake_rules::COMMIT},
                "intake_ocp": {"version": intake_rules::VERSION, "commit": intake_rules::COMMIT},
                "site_ocp": {"version": "2024.05.1", "commit": site_hash()}}}
    });
    assert_eq!(report, expected);
    // Key order is part of the shape: compare the serialisations too.
    assert_eq!(report.to_string(), expected.to_string());
}

#[test]
fn degraded_and_blocked_operators_fail() {
    let dir = tempfile::tempdir().unwrap();
    cluster_tree(dir.path());
    write(
        dir.path(),
        "config/clusteroperator/etcd.json",
        &operator("etcd", "True", "True", "False"),
    );
    write(
        dir.path(),
        "config/clusteroperator/auth.json",
        &operator("auth", "False", "False", "False"),
    );
    write(
        dir.path(),
        "config/infrastructure.json",
        r#"{"status": {"platform": "AWS"}}"#,
    );
    let report = evaluate(&graph(&Selection::default()), dir.path());
    let reports = report["reports"].as_array().unwrap();
    let ops = reports
        .iter()
        .find(|r| r["key"] == "OPERATORS_DEGRADED")
        .unwrap();
    assert_eq!(
        ops["details"]["operators"],
        json!([{"name": "auth", "degraded": false, "available": false, "reason": "AsExpected"},
               {"name": "etcd", "degraded": true, "available": true, "reason": "AsExpected"}])
    );
    let blocked = reports
        .iter()
        .find(|r| r["key"] == "OPERATOR_UPGRADE_BLOCKED")
        .unwrap();
    assert_eq!(
        blocked["details"],
        json!({"type": "rule", "error_key": "OPERATOR_UPGRADE_BLOCKED", "operators": ["auth", "etcd"], "count": 2})
    );
    assert_eq!(
        report["info"][1]["details"],
        json!({"type": "info", "info_key": "CLOUD_PLATFORM_INFO", "platform": "AWS"})
    );
    assert_eq!(report["system"]["metadata"]["platform"], "AWS");
    assert_eq!(report["skips"], json!([]));
}

#[test]
fn configs_disable_components_and_remove_results() {
    let dir = tempfile::tempdir().unwrap();
    cluster_tree(dir.path());
    let selection = Selection {
        default_component_enabled: true,
        configs: vec![
            ComponentConfig {
                name: "intake_ocp.operator_status".into(),
                enabled: Some(false),
                ..Default::default()
            },
            ComponentConfig {
                name: "version_info|".into(),
                enabled: Some(false),
                ..Default::default()
            },
            ComponentConfig {
                name: "intake_ocp.cluster_update".into(),
                tags: Some(vec!["b".into(), "a".into(), "a".into()]),
                ..Default::default()
            },
        ],
        target_components: vec![],
    };
    let report = evaluate(&graph(&selection), dir.path());
    let components: Vec<&str> = report["pass"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["component"].as_str().unwrap())
        .collect();
    assert_eq!(components, ["site_ocp.operator_upgrade_blocked.report"]);
    assert_eq!(report["info"], json!([]));
    assert_eq!(report["reports"][0]["tags"], json!(["a", "b"]));
}

#[test]
fn empty_tree_skips_every_rule_with_its_missing_requirements() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "etc/hostname", "web01\n");
    let report = evaluate(
        &graph(&Selection {
            target_components: vec!["intake_ocp.".into()],
            ..Selection::default()
        }),
        dir.path(),
    );
    let skips: Vec<(&str, &str)> = report["skips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["rule_fqdn"].as_str().unwrap(),
                s["details"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        skips,
        [
            (
                "intake_ocp.cluster_metadata.report",
                "All: ['intake_ocp.parsers.cluster_id'] Any: "
            ),
            (
                "intake_ocp.cluster_update.report",
                "All: ['intake_ocp.parsers.cluster_version'] Any: "
            ),
            (
                "intake_ocp.operator_status.report",
                "All: ['intake_ocp.parsers.cluster_operators'] Any: "
            ),
            (
                "intake_ocp.version_info.report",
                "All: ['intake_ocp.parsers.cluster_version'] Any: "
            ),
        ]
    );
    assert_eq!(
        report["analysis_metadata"]["execution_context"],
        "insights.core.context.HostArchiveContext"
    );
    assert_eq!(
        report["analysis_metadata"]["plugin_sets"]
            .as_object()
            .unwrap()
            .len(),
        3
    );
}

/// The same files held in memory (what the pipeline keeps of a small archive) give the report
/// the extracted tree gives.
#[test]
fn the_same_files_in_memory_give_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    cluster_tree(dir.path());
    write(dir.path(), "config/clusteroperator/bad.json", "{not json");
    let mut memory = intake_rules::MemoryFiles::default();
    for rel in intake_rules::specs::list_files(dir.path()) {
        let content = std::fs::read(dir.path().join(&rel)).unwrap();
        let mut parent = rel.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            memory.dirs.insert(p.to_owned());
            parent = p;
        }
        memory.files.insert(rel, content);
    }
    let graph = graph(&Selection::default());
    let on_disk = evaluate(&graph, dir.path());
    let mut in_memory = graph
        .evaluate_source(
            intake_rules::FileSource::Memory(&memory),
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap()
        .report;
    let meta = in_memory["analysis_metadata"].as_object_mut().unwrap();
    for k in ["start", "finish"] {
        meta.insert(k.into(), json!("T"));
    }
    assert_eq!(in_memory, on_disk);
    assert!(!on_disk["reports"].as_array().unwrap().is_empty());
}
