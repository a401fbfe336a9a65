//! Same archives, same rule results: ccx-messaging's engine and intake's pipeline judge one set of
//! Insights Operator archives, and their results are compared archive by archive.
//!
//! - ccx-messaging 4.6.0: its OCPEngine, built from tests/compat/ccx_config.yaml as its command
//!   builds it, with the Python rules package `compat_rules`, run on each archive file by
//!   `ccx_engine.py` (no Kafka: the round trips through intake's topics are the tests above).
//! - intake, `intake pipeline process` on the same files, configured twice:
//!   - **external**: intake extracts, then runs the same Python package through its `external`
//!     engine (`insights_runner.py`: ccx-messaging's OCPEngine on intake's extracted tree). This is
//!     the migration route of spec pipeline.md §3.3, and the whole report must be equal.
//!   - **declarative**: intake's own rules engine with `compat_rules.yaml`, the same rule written in
//!     intake's format (same set, rule id, key and details). Its rule results must be equal; the
//!     few places where they may not are listed below and asserted as they are.
//!
//! What is compared, per archive: every result entry (`*_id`, `component`, `type`, `key`,
//! `details` such as `version`, `tags`, `links`) in `reports`, `pass`, `info`, `fingerprints`;
//! `skips` (`rule_fqdn`, `reason`, `details`); `system` (`metadata`, `hostname`). Each archive's
//! outcome on the ccx side is also checked against what the rule should say (fail, pass or skip),
//! so that two sides agreeing on nothing cannot pass.
//!
//! Normalised, and why:
//! - `analysis_metadata.start` and `finish` are dropped: the clock times of the run.
//! - A missing `pass`, `info` or `skips` bucket counts as `[]`: insights-core's JsonFormat adds a
//!   bucket only when it holds an entry, and leaves `skips` out unless its `missing` option is on;
//!   intake's report always has every bucket (spec pipeline.md §8.1, which the aggregator needs).
//!   ccx-messaging publishes the report without `skips` (the production format); its skips are
//!   compared from the same engine run with `missing` on, and that report is checked to equal the
//!   published one in everything else.
//! - Declarative only: the name of the missing dependency in a `MISSING_REQUIREMENTS` skip's
//!   `details` is the parser, a Python class upstream (`compat_rules.cluster_version.ClusterVersion`)
//!   and a spec's parser in intake (`compat_rules.parsers.version`); the one is mapped to the
//!   other. `analysis_metadata` is not compared: spec pipeline.md §6 names the execution context of
//!   an archive with `config/id` `intake.context.InsightsOperatorContext` (insights-core says
//!   `HostArchiveContext`), and §8.1 lists intake's own rule sets under `plugin_sets`
//!   (insights-core lists itself); both are asserted as the spec says.
//!
//! Where the declarative rule differs, asserted as it does:
//! - A `config/version` the Python parser cannot read (no minor version, not a number, empty)
//!   makes the parser raise, so insights-core skips the rule as `MISSING_REQUIREMENTS`. A
//!   declarative spec's parser never rejects its text, so the rule's own expression fails and
//!   intake skips it as `RULE_FAILED` (spec pipeline.md §7.2.3), with the expression's error as
//!   its details. No result is reported on either side.
//! - An archive whose only top-level directory is `config/`: insights-core takes the directory all
//!   files share as the archive root, so `config/version` is not found and the rule is skipped;
//!   intake keeps the archive root when a wanted path matches there (spec pipeline.md §6.6) and
//!   judges the version. Insights Operator archives always have several top-level directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use intake_testkit::archives::{gzip, TarBuilder};
use serde_json::{json, Map, Value};

use super::{python, scripts};

const RULE: &str = "compat_rules.cluster_version.report";
const KEY: &str = "COMPAT_OLD_VERSION";
const PYTHON_PARSER: &str = "compat_rules.cluster_version.ClusterVersion";
const DECLARATIVE_PARSER: &str = "compat_rules.parsers.version";

/// What the rule concludes about one archive.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// `make_fail` with this version.
    Fail(&'static str),
    /// `make_pass` with this version.
    Pass(&'static str),
    /// No `config/version` where the rule looks: skipped, `MISSING_REQUIREMENTS`.
    NoFile,
    /// A `config/version` the parser cannot read: no result (see the module doc).
    Unreadable,
}

/// One archive of the comparison.
struct Case {
    name: &'static str,
    archive: Vec<u8>,
    /// ccx-messaging's verdict (and intake's with the external engine).
    verdict: Verdict,
    /// intake's declarative verdict, where the module doc says it differs.
    declarative: Option<Verdict>,
}

/// An Insights Operator archive laid out as the operator uploads one (`config/`,
/// `insights-operator/` at the top), under `top` when given, with `config/version` when given.
fn io_archive(top: &str, version: Option<&[u8]>) -> Vec<u8> {
    let at = |p: &str| format!("{top}{p}");
    let mut tar = TarBuilder::new();
    if !top.is_empty() {
        tar = tar.dir(top.trim_end_matches('/'));
    }
    tar = tar
        .dir(&at("config"))
        .file(&at("config/id"), b"0b2d7a8e-3c1f-4e5a-9d6b-7f8e9a0b1c2d")
        .dir(&at("insights-operator"))
        .file(
            &at("insights-operator/gathers.json"),
            b"{\"status_reports\": []}",
        );
    if let Some(v) = version {
        tar = tar.file(&at("config/version"), v);
    }
    gzip(&tar.finish())
}

fn cases() -> Vec<Case> {
    use Verdict::*;
    let case = |name, version: Option<&[u8]>, verdict, declarative| Case {
        name,
        archive: io_archive("", version),
        verdict,
        declarative,
    };
    vec![
        case("old", Some(b"4.10.3\n"), Fail("4.10.3"), None),
        case("new", Some(b"4.14.1\n"), Pass("4.14.1"), None),
        case("boundary", Some(b"4.12.0"), Pass("4.12.0"), None),
        case("just-below", Some(b"4.11.99\n"), Fail("4.11.99"), None),
        // 4.9 < 4.12 as numbers, though not as text.
        case("numeric-minor", Some(b"4.9.0\n"), Fail("4.9.0"), None),
        case("next-major", Some(b"5.0\n"), Pass("5.0"), None),
        // Only the first line counts, stripped of spaces and a CR.
        case(
            "padded-crlf",
            Some(b"  4.11.2 \r\n4.16.0\r\n"),
            Fail("4.11.2"),
            None,
        ),
        case("missing", None, NoFile, None),
        case("malformed", Some(b"4.x\n"), Unreadable, None),
        case("no-minor", Some(b"4\n"), Unreadable, None),
        case("empty", Some(b""), Unreadable, None),
        Case {
            name: "wrapped",
            archive: io_archive("insights-operator-20240502/", Some(b"4.10.3\n")),
            verdict: Fail("4.10.3"),
            declarative: None,
        },
        Case {
            name: "config-only",
            archive: gzip(
                &TarBuilder::new()
                    .dir("config")
                    .file("config/id", b"0b2d7a8e-3c1f-4e5a-9d6b-7f8e9a0b1c2d")
                    .file("config/version", b"4.10.3\n")
                    .finish(),
            ),
            verdict: NoFile,
            declarative: Some(Fail("4.10.3")),
        },
    ]
}

/// The rule results of a report, normalised as the module doc says: every bucket present,
/// run times dropped.
fn normalised(report: &Value) -> Value {
    let mut r = report.clone();
    let Some(obj) = r.as_object_mut() else {
        panic!("not a report: {report}");
    };
    for bucket in ["reports", "fingerprints", "skips", "info", "pass"] {
        obj.entry(bucket).or_insert_with(|| json!([]));
    }
    if let Some(Value::Object(meta)) = obj.get_mut("analysis_metadata") {
        meta.remove("start");
        meta.remove("finish");
    }
    r
}

/// The buckets a consumer reads results from, and `system`.
fn results(report: &Value) -> Value {
    let r = normalised(report);
    let keys = ["system", "reports", "fingerprints", "skips", "info", "pass"];
    Value::Object(
        keys.iter()
            .map(|k| ((*k).to_owned(), r[*k].clone()))
            .collect::<Map<_, _>>(),
    )
}

/// The results insights-core gives for `verdict` (with `skips`).
fn expected(verdict: Verdict) -> Value {
    let entry = |kind: &str, version: &str| {
        let (id, key_field) = if kind == "rule" {
            ("rule_id", "error_key")
        } else {
            ("pass_id", "pass_key")
        };
        json!({id: format!("cluster_version|{KEY}"), "component": RULE, "type": kind, "key": KEY,
            "details": {"version": version, "type": kind, key_field: KEY}, "tags": [], "links": {}})
    };
    let skip = json!({"rule_fqdn": RULE, "reason": "MISSING_REQUIREMENTS",
        "details": format!("All: ['{PYTHON_PARSER}'] Any: "), "type": "skip"});
    let (reports, pass, skips) = match verdict {
        Verdict::Fail(v) => (json!([entry("rule", v)]), json!([]), json!([])),
        Verdict::Pass(v) => (json!([]), json!([entry("pass", v)]), json!([])),
        Verdict::NoFile | Verdict::Unreadable => (json!([]), json!([]), json!([skip])),
    };
    json!({"system": {"metadata": {}, "hostname": null}, "reports": reports, "fingerprints": [],
        "skips": skips, "info": [], "pass": pass})
}

/// What ccx_engine.py printed for one archive.
struct CcxRun {
    published: Value,
    with_skips: Value,
}

/// ccx-messaging's engine, configured as in the Kafka tests, on every archive in one process.
fn ccx_engine(archives: &[PathBuf]) -> Vec<CcxRun> {
    let out = Command::new(python())
        .arg(scripts().join("ccx_engine.py"))
        .arg(scripts().join("ccx_config.yaml"))
        .args(archives)
        .env("PYTHONPATH", scripts())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "ccx_engine.py failed: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let runs: Vec<CcxRun> = stdout
        .lines()
        .zip(archives)
        .map(|(line, archive)| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("ccx_engine.py printed {line:?}: {e}"));
            assert_eq!(v["archive"], archive.display().to_string());
            for k in ["published", "with_skips"] {
                assert!(
                    v[k].get("error").is_none(),
                    "{}: {k}: {v}",
                    archive.display()
                );
            }
            CcxRun {
                published: v["published"].clone(),
                with_skips: v["with_skips"].clone(),
            }
        })
        .collect();
    assert_eq!(runs.len(), archives.len(), "{stdout}");
    runs
}

/// `intake pipeline process --config CONFIG ARCHIVE`: the report.
fn intake_process(dir: &Path, config: &Path, archive: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(["pipeline", "process", "--config"])
        .arg(config)
        .arg(archive)
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("LOG_LEVEL", "error")
        .env_remove("PIPELINE_CONFIG")
        .env_remove("EXTRA_PACKAGES")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "intake pipeline process {}: {out:?}",
        archive.display()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "intake pipeline process printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// intake's pipeline configurations: the declarative rule, and the Python package through the
/// external engine, each limited to the `compat_rules` set as ccx_config.yaml's
/// `target_components` is.
fn intake_configs(dir: &Path) -> (PathBuf, PathBuf) {
    let quoted = |p: PathBuf| serde_json::to_string(&p.display().to_string()).unwrap();
    let declarative = dir.join("declarative.yaml");
    std::fs::write(
        &declarative,
        format!(
            "plugins:\n  packages: [{}]\nservice:\n  engine:\n    target_components: [compat_rules]\n",
            quoted(scripts().join("compat_rules.yaml"))
        ),
    )
    .unwrap();
    let external = dir.join("external.yaml");
    std::fs::write(
        &external,
        format!(
            "plugins:\n  packages: [compat_rules]\nservice:\n  engine:\n    kind: external\n    \
             command: [{}, {}]\n    timeout: 60s\n    target_components: [compat_rules]\n    \
             env: {{PYTHONPATH: {}, PYTHONDONTWRITEBYTECODE: \"1\"}}\n",
            quoted(PathBuf::from(python())),
            quoted(scripts().join("insights_runner.py")),
            quoted(scripts()),
        ),
    )
    .unwrap();
    (declarative, external)
}

/// A declarative report's results with the parser's name as insights-core spells it, and the
/// details of a `RULE_FAILED` skip (the failing expression's error) left out.
fn declarative_results(report: &Value) -> Value {
    let mut r = results(report);
    if let Some(skips) = r["skips"].as_array_mut() {
        for s in skips {
            if s["reason"] == "RULE_FAILED" {
                assert!(s["details"].is_string(), "{s}");
                s["details"] = json!("<error>");
            } else if let Some(d) = s["details"].as_str() {
                s["details"] = json!(d.replace(DECLARATIVE_PARSER, PYTHON_PARSER));
            }
        }
    }
    r
}

/// What a declarative verdict looks like after [`declarative_results`].
fn expected_declarative(verdict: Verdict) -> Value {
    let mut e = expected(verdict);
    if verdict == Verdict::Unreadable {
        e["skips"] = json!([{"rule_fqdn": RULE, "reason": "RULE_FAILED", "details": "<error>",
            "type": "skip"}]);
    }
    e
}

#[test]
fn intake_pipeline_and_ccx_messaging_give_the_same_rule_results() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let archives: Vec<PathBuf> = cases
        .iter()
        .map(|c| {
            intake_testkit::archives::write(dir.path(), &format!("{}.tar.gz", c.name), &c.archive)
        })
        .collect();
    let ccx = ccx_engine(&archives);
    let (declarative, external) = intake_configs(dir.path());

    for ((case, archive), ccx) in cases.iter().zip(&archives).zip(&ccx) {
        let name = case.name;
        // ccx-messaging's verdict is the rule's, and its published report is the one with
        // skips, skips aside.
        let upstream = results(&ccx.with_skips);
        assert_eq!(upstream, expected(case.verdict), "{name}: ccx-messaging");
        let mut published = normalised(&ccx.with_skips);
        published["skips"] = json!([]);
        assert_eq!(
            normalised(&ccx.published),
            published,
            "{name}: ccx-messaging's published report is its report without skips"
        );
        assert!(
            ccx.published.get("skips").is_none(),
            "{name}: {}",
            ccx.published
        );

        // The same Python rules behind intake's external engine: the same report.
        let via_external = intake_process(dir.path(), &external, archive);
        assert_eq!(
            normalised(&via_external),
            normalised(&ccx.with_skips),
            "{name}: intake's external engine against ccx-messaging"
        );

        // intake's declarative rule: the same results, but where the module doc says otherwise.
        let own = intake_process(dir.path(), &declarative, archive);
        let want = match (case.declarative, case.verdict) {
            // ccx-messaging's own results.
            (None, v) if v != Verdict::Unreadable => upstream.clone(),
            (d, v) => expected_declarative(d.unwrap_or(v)),
        };
        assert_eq!(
            declarative_results(&own),
            want,
            "{name}: intake's declarative rule against ccx-messaging ({})",
            own
        );
        assert_eq!(
            own["analysis_metadata"]["execution_context"], "intake.context.InsightsOperatorContext",
            "{name}: spec pipeline.md §6.6, config/id"
        );
        assert_eq!(
            ccx.with_skips["analysis_metadata"]["execution_context"],
            "insights.core.context.HostArchiveContext",
            "{name}"
        );
        let mut sets: Vec<&String> = own["analysis_metadata"]["plugin_sets"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        sets.sort();
        assert_eq!(
            sets,
            ["compat_rules", "intake"],
            "{name}: spec pipeline.md §8.1"
        );
    }
}
