//! deploy/grafana/intake.json and deploy/prometheus/alerts.yaml name only metrics the binary
//! exports: the four parts run as separate processes on one embedded bus, payloads (and messages
//! no part can use) go through, and the union of their `/metrics` holds every name the dashboard
//! and the rules query. The rules also pass promtool's check and their unit tests.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use intake_bus::OutgoingMessage;
use intake_core::config::{BusConfig, EnvMap};
use intake_testkit::poll;

use super::common::process::free_port;
use super::common::upload;
use super::deploy_dir;

/// Metric names as intake exports them: every family starts with one of these.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let pattern =
        regex::Regex::new(r"\b(?:ingress|intake|payload_tracker|ccx|process)_[a-z0-9_]+\b")
            .unwrap();
    pattern
        .find_iter(expr)
        .map(|m| m.as_str().to_owned())
        .collect()
}

fn dashboard_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy_dir().join("grafana/intake.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut names = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        titles.push(panel["title"].as_str().unwrap_or_default().to_owned());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL target");
            let found = metric_names(expr);
            assert!(!found.is_empty(), "{expr} names no intake metric");
            names.extend(found);
        }
    }
    for row in ["Ingress", "Validator", "Tracker", "Rules pipeline"] {
        assert!(titles.iter().any(|t| t == row), "no {row} row");
    }
    names
}

fn alert_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy_dir().join("prometheus/alerts.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let mut names = BTreeSet::new();
    for group in docs[0]["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr");
            let found = metric_names(expr);
            assert!(!found.is_empty(), "{expr} names no intake metric");
            names.extend(found);
        }
    }
    names
}

/// The sample names of a Prometheus text exposition (`foo_bucket`, `foo_count`… for histograms).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn text(client: &reqwest::Client, url: &str) -> Option<String> {
    let answer = client.get(url).send().await.ok()?;
    if answer.status() != 200 {
        return None;
    }
    answer.text().await.ok()
}

fn sample_ocp_archive(dir: &Path) -> Vec<u8> {
    let path = dir.join("ocp.tar.gz");
    let made = Command::new("bash")
        .arg(deploy_dir().join("../scripts/sample-ocp-archive.sh"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_alerts_name_only_metrics_the_parts_export() {
    let wanted: BTreeSet<String> = dashboard_names().union(&alert_names()).cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let [ingress_port, tracker_port, validator_port, pipeline_port] = [(); 4].map(|_| free_port());
    let ingress = format!("http://127.0.0.1:{ingress_port}");
    let tracker = format!("http://127.0.0.1:{tracker_port}");
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let _parts = [
        crate::common::process::embedded(
            dir.path(),
            &["ingress"],
            &[
                ("INGRESS_LISTEN", listen(ingress_port)),
                ("INGRESS_PUBLIC_URL", ingress.clone()),
            ],
        ),
        crate::common::process::embedded(
            dir.path(),
            &["validator", "--services", "testareno"],
            &[("VALIDATOR_LISTEN", listen(validator_port))],
        ),
        crate::common::process::embedded(
            dir.path(),
            &["tracker"],
            &[
                ("TRACKER_LISTEN", listen(tracker_port)),
                ("TRACKER_LOCAL_MODE", "false".to_owned()),
            ],
        ),
        crate::common::process::embedded(
            dir.path(),
            &["pipeline"],
            &[
                ("PIPELINE_LISTEN", listen(pipeline_port)),
                ("INGRESS_PUBLIC_URL", ingress.clone()),
            ],
        ),
    ];
    let metrics: Vec<String> = [ingress_port, tracker_port, validator_port, pipeline_port]
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/metrics"))
        .collect();
    for base in [&ingress, &tracker]
        .into_iter()
        .cloned()
        .chain([validator_port, pipeline_port].map(|p| format!("http://127.0.0.1:{p}")))
    {
        let url = format!("{base}/readyz");
        poll::until_true(Duration::from_secs(60), &format!("{url} 200"), || async {
            text(&client, &url).await.is_some()
        })
        .await;
    }

    // A plain archive and a cluster archive, validated and (the second) judged by the rules.
    let ocp = sample_ocp_archive(dir.path());
    let ids = [
        "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
        "2c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
    ];
    for (id, archive) in ids.iter().zip([upload::archive("plain"), ocp]) {
        let answer = upload::post(&client, &ingress, id, archive).await.unwrap();
        assert_eq!(answer.status(), 202);
    }
    // Messages no part can use: each part's dead-letter path.
    let bus_config = BusConfig::from_env(&EnvMap::new(), &dir.path().join("data")).unwrap();
    let bus = intake_bus::open(&bus_config).await.unwrap();
    for topic in [
        &bus_config.topics.validation,
        &bus_config.topics.payload_status,
        &bus_config.topics.available,
    ] {
        bus.publish(OutgoingMessage::new(
            bus_config.topic(topic),
            &b"not json"[..],
        ))
        .await
        .unwrap();
    }

    // The names seen at the last scrape, kept so that a timeout can say which are missing.
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let all_exported = poll::until_true(
        Duration::from_secs(3600),
        "every metric the dashboard and the alerts name to be exported",
        || async {
            // The tracker's API answers are counted too.
            for id in ids {
                super::common::serve::statuses(&client, &tracker, id).await;
            }
            let mut scraped = BTreeSet::new();
            for url in &metrics {
                if let Some(body) = text(&client, url).await {
                    scraped.extend(exported(&body));
                }
            }
            let done = wanted.is_subset(&scraped);
            *seen.lock().unwrap() = scraped;
            done
        },
    );
    let _ = tokio::time::timeout(Duration::from_secs(90), all_exported).await;
    let seen = seen.into_inner().unwrap();
    let missing: Vec<_> = wanted.difference(&seen).collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}");

    // Every part's /metrics has the process's own metrics (CPU, memory, file descriptors).
    for url in &metrics {
        let body = text(&client, url).await.unwrap();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert_eq!(
                body.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{url}: {name}"
            );
        }
    }
}

/// promtool from the harness (scripts/servers/promtool.sh): missing fails, never skips.
fn promtool() -> String {
    std::env::var("INTAKE_TEST_PROMTOOL").expect(
        "INTAKE_TEST_PROMTOOL unset: run under scripts/with-servers.sh, which installs promtool",
    )
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = deploy_dir().join("prometheus");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts.test.yaml"],
    ] {
        let out = Command::new(promtool())
            .args(args)
            .current_dir(&rules)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
