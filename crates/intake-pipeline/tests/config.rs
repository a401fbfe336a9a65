//! Configuration loading (spec pipeline.md §3): the shipped examples load and check, the declared
//! type wins over the text, unknown keys are reported with their path and a hint.

use std::path::Path;
use std::time::Duration;

use intake_core::config::EnvMap;
use intake_pipeline::config::{DownloaderKind, EngineKind, KeyKind, OnMissing, WatcherConfig};
use intake_pipeline::{check, default_config_yaml, load_config, load_config_str, Format};

fn env(pairs: &[(&str, &str)]) -> EnvMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples-config")
}

#[test]
fn shipped_examples_load_and_their_graphs_build() {
    for name in ["pipeline.yaml", "insights.yaml", "serve-default.yaml"] {
        let config = load_config(&examples().join(name), &env(&[]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let graph = check(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            graph.contains("rule     intake_ocp.cluster_update.report"),
            "{name}: {graph}"
        );
    }
    let full = load_config(&examples().join("pipeline.yaml"), &env(&[])).unwrap();
    assert_eq!(full.consumer.topics, ["platform.upload.announce"]);
    assert_eq!(full.consumer.group_id, "ccx_data_pipeline_app");
    assert_eq!(full.consumer.workers, 8);
    assert_eq!(full.consumer.kafka["session.timeout.ms"], "20000");
    assert_eq!(full.consumer.brokers, None);
    assert_eq!(full.downloader.max_archive_size, 100 << 20);
    assert_eq!(full.engine.extract.max_unpacked_size, 1 << 30);
    assert_eq!(
        full.dead_letter.topic,
        "ccx.data.pipeline.dead.letter.queue"
    );
    assert_eq!(full.publisher.key, KeyKind::ClusterId);
    assert_eq!(
        full.watchers[0],
        WatcherConfig::ClusterId {
            on_missing: OnMissing::DeadLetter
        }
    );
    assert!(check(&full)
        .unwrap()
        .contains("rule     site_ocp.operator_upgrade_blocked.report"));
    // The external example names a runner this machine does not have: start-up refuses it.
    let external = load_config(&examples().join("external.yaml"), &env(&[])).unwrap();
    assert_eq!(external.engine.kind, EngineKind::External);
    assert!(check(&external)
        .unwrap_err()
        .to_string()
        .contains("/opt/insights-runner/bin/run"));
}

#[test]
fn serve_default_matches_the_spec() {
    let c = load_config_str(
        default_config_yaml(),
        Path::new("."),
        &env(&[("S3_PERM", "perm")]),
    )
    .unwrap();
    assert_eq!(c.consumer.topics, ["platform.upload.available"]);
    assert!(c.consumer.services.is_empty());
    assert_eq!(c.consumer.group_id, "intake-pipeline");
    assert_eq!(c.downloader.kind, DownloaderKind::Storage);
    assert_eq!(c.downloader.bucket, "perm");
    assert_eq!(c.publisher.format, Format::Ccx);
    assert_eq!(c.publisher.topic, "ccx.ocp.results");
    assert_eq!(c.dead_letter.topic, "intake.pipeline.dlq");
    assert_eq!(
        c.watchers[0],
        WatcherConfig::ClusterId {
            on_missing: OnMissing::Skip
        }
    );
    assert_eq!(
        c.watchers[1],
        WatcherConfig::PayloadStatus {
            topic: "platform.payload-status".into(),
            service_name: "intake-pipeline".into()
        }
    );
}

#[test]
fn declared_type_wins_and_empty_means_absent() {
    let yaml = "service:\n  consumer:\n    group_id: ${GROUP:000123}\n    topics: ${TOPICS:a,b}\n    workers: ${W:}\n    max_record_age: ${AGE:0}\n  publisher:\n    format: insights\n    topic: 000123\n";
    let c = load_config_str(yaml, Path::new("."), &env(&[])).unwrap();
    assert_eq!(c.consumer.group_id, "000123");
    assert_eq!(c.publisher.topic, "000123");
    assert_eq!(c.consumer.topics, ["a", "b"]);
    assert_eq!(c.consumer.max_record_age, Duration::ZERO);
    assert_eq!(
        c.consumer.workers,
        std::thread::available_parallelism().unwrap().get()
    );
    assert_eq!(c.publisher.key, KeyKind::RequestId);
    let c = load_config_str(
        yaml,
        Path::new("."),
        &env(&[
            ("GROUP", "g"),
            ("W", "3"),
            ("EXTRA_PACKAGES", "x/a.yaml, y/b.yaml"),
        ]),
    )
    .unwrap();
    assert_eq!(c.consumer.group_id, "g");
    assert_eq!(c.consumer.workers, 3);
    assert_eq!(
        c.consumer.max_in_flight, 64,
        "I/O concurrency is not tied to workers"
    );
    assert_eq!(c.plugins.packages, ["intake_ocp", "x/a.yaml", "y/b.yaml"]);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let yaml = "plugins:\n  pakages: [x]\nservice:\n  downloader:\n    max_archve_size: 1MiB\n    retries: three\n  consumer:\n    group_id: ${NOPE}\n    kafka: {group.id: x}\n  publisher:\n    format: ccx\n  watchers:\n    - {kind: cluster_id, on_missing: continue}\n  logging:\n    version: 1\n";
    let errs = load_config_str(yaml, Path::new("."), &env(&[])).unwrap_err();
    let text = errs.to_string();
    assert!(
        text.contains("plugins.pakages: unknown key (did you mean packages?)"),
        "{text}"
    );
    assert!(
        text.contains(
            "service.downloader.max_archve_size: unknown key (did you mean max_archive_size?)"
        ),
        "{text}"
    );
    assert!(errs.mentions("service.downloader.retries"), "{text}");
    assert!(
        text.contains("service.consumer.group_id: environment variable NOPE is not set"),
        "{text}"
    );
    assert!(errs.mentions("service.consumer.kafka.group.id"), "{text}");
    assert!(errs.mentions("service.watchers"), "{text}");
    assert!(text.contains("dictConfig"), "{text}");
}

#[test]
fn errors_name_the_file_the_line_and_the_full_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.yaml");
    let yaml = "service:\n  engine:\n    extract:\n      max_files: lots\n      max_dept: 3\n  consumer:\n    kafka: [a]\n    max_in_flight: ${INFLIGHT}\n  watchers:\n    - {kind: prometheus, listen: nowhere}\n    - {kind: cluster_id, topic: t}\n    - {kind: nope}\n  logging: {level: loud}\n";
    std::fs::write(&file, yaml).unwrap();
    let errs = load_config(&file, &env(&[("INFLIGHT", "-3")])).unwrap_err();
    let text = errs.to_string();
    let f = file.display();
    for expected in [
        format!("{f}:4: service.engine.extract.max_files: invalid type: string \"lots\", expected u64"),
        format!("{f}:5: service.engine.extract.max_dept: unknown key (did you mean max_depth?)"),
        format!("{f}:7: service.consumer.kafka: invalid type: sequence, expected a map"),
        format!("{f}:8: service.consumer.max_in_flight: invalid value: integer `-3`, expected usize"),
        format!("{f}:10: service.watchers[0].listen: "),
        format!("{f}:11: service.watchers[1].topic: unknown key for a cluster_id watcher"),
        format!("{f}:12: service.watchers[2].kind: unknown variant `nope`, expected one of `cluster_id`, `prometheus`, `payload_status`"),
        format!("{f}:13: service.logging.level: expected error, warn, info, debug or trace"),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing from:\n{text}");
    }
    assert_eq!(errs.issues.len(), 8, "{text}");
}

#[test]
fn a_rule_file_that_does_not_load_keeps_the_yaml_or_io_problem_as_its_source() {
    use intake_pipeline::PipelineError;
    use intake_rules::declarative::LoadError;
    use std::error::Error as _;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules/dir.yaml")).unwrap();
    std::fs::write(dir.path().join("rules/bad.yaml"), "set: [x\n").unwrap();
    let rules_error = |package: &str| {
        let yaml = format!("plugins:\n  packages: [{package}]\n");
        let config = load_config_str(&yaml, dir.path(), &env(&[])).unwrap();
        let e = check(&config).unwrap_err();
        assert!(matches!(e, PipelineError::Rules { .. }), "{e:?}");
        assert_eq!(e.exit_code(), 2);
        e
    };

    let e = rules_error("rules/bad.yaml");
    let load = e.source().and_then(|s| s.downcast_ref::<LoadError>());
    let load = load.unwrap_or_else(|| panic!("a LoadError under {e:?}"));
    assert_eq!(e.to_string(), format!("rule set: {load}"));
    assert!(load.file.ends_with("rules/bad.yaml"), "{load}");
    let yaml = load.source().expect("the YAML problem");
    assert!(yaml.is::<intake_rules::yaml::YamlError>(), "{yaml:?}");

    let e = rules_error("rules/dir.yaml");
    let load = e
        .source()
        .and_then(|s| s.downcast_ref::<LoadError>())
        .unwrap();
    assert!(load.message.starts_with("cannot read: "), "{load}");
    let io = load
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>());
    assert!(io.is_some(), "the I/O error under {load:?}");
}
