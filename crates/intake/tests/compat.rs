//! Black-box compatibility: the upstream Python clients, pinned in
//! scripts/servers/python-requirements.txt and run unmodified from the harness's virtualenv
//! (`INTAKE_TEST_PYTHON`), against the real intake binary.
//! - insights-client's upload path (insights-core) against `intake serve`: 202 and the payload in
//!   perm; 401, 413 and 415 as the client reports them.
//! - ccx-messaging's pipeline (KafkaConsumer → HTTPDownloader → OCPEngine with a rules package of the
//!   tests → RuleProcessingPublisher) on intake's `platform.upload.announce` (and
//!   `platform.upload.available`), Kafka and S3 storage, `allow_unsafe_links` off (on with localdisk
//!   storage): the report it publishes and its statuses in intake's tracker.
//! - Same archives, same rule results ([`rule_results`]): ccx-messaging's engine with that rules
//!   package, and `intake pipeline process` with the package behind its external engine and with
//!   the same rule in intake's declarative format.
//!
//! The scripts live in tests/compat/. A missing `INTAKE_TEST_PYTHON` fails the tests: run them under
//! `scripts/with-servers.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use crate::common;
#[path = "compat/rule_results.rs"]
mod rule_results;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::engines::{unique, Engines};
use common::kafka::Reader;
use common::process::{self, Intake};
use common::serve::{ready, start_with, statuses};
use common::upload::{sha256, IDENTITY};
use intake_testkit::archives::{gzip, TarBuilder};
use intake_testkit::poll;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

/// The virtualenv's interpreter; the suite fails without it rather than skipping.
fn python() -> String {
    std::env::var("INTAKE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "INTAKE_TEST_PYTHON is not set: run under scripts/with-servers.sh, which installs the \
             upstream clients (scripts/servers/python.sh)"
        )
    })
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// What `insights_upload.py` prints: what insights-client did and reported.
#[derive(Debug)]
struct ClientRun {
    report: Value,
    stdout: String,
}

impl ClientRun {
    fn status(&self) -> i64 {
        self.report["status"].as_i64().unwrap_or(-1)
    }

    fn logged(&self, message: &str) -> bool {
        self.report["logs"]
            .as_array()
            .is_some_and(|l| l.iter().any(|m| m.as_str() == Some(message)))
    }
}

/// Uploads `archive` as `content_type` through insights-core's own upload function.
fn insights_client_upload(
    conf_dir: &Path,
    upload_url: &str,
    archive: &Path,
    content_type: &str,
) -> ClientRun {
    upload_as(conf_dir, upload_url, IDENTITY, archive, content_type)
}

/// [`insights_client_upload`] with the gateway's `identity` (empty: no header).
fn upload_as(
    conf_dir: &Path,
    upload_url: &str,
    identity: &str,
    archive: &Path,
    content_type: &str,
) -> ClientRun {
    let out = Command::new(python())
        .arg(scripts().join("insights_upload.py"))
        .args([upload_url, identity])
        .arg(archive)
        .arg(content_type)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("INSIGHTS_CONF_DIR", conf_dir)
        .env("XDG_CACHE_HOME", conf_dir.join("cache"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "insights_upload.py failed: {stdout}");
    // The client prints a hint of its own before the report on a failure: the report is the last line.
    let last = stdout.lines().last().unwrap_or_default();
    let report = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no report from insights_upload.py ({e}): {stdout}"));
    ClientRun { report, stdout }
}

/// An archive laid out as insights-client collects one.
fn advisor_archive() -> Vec<u8> {
    gzip(
        &TarBuilder::new()
            .dir("insights-web01")
            .file("insights-web01/insights_commands/hostname", b"web01\n")
            .file(
                "insights-web01/data/etc/redhat-release",
                b"Red Hat Enterprise Linux release 9.4\n",
            )
            .file(
                "insights-web01/branch_info",
                b"{\"remote_branch\": -1, \"remote_leaf\": -1}",
            )
            .finish(),
    )
}

/// An archive as insights-client writes one, named `too-big`, whose `var/log/messages` (64 KiB that
/// do not compress) makes it larger than the test's limit; its spec metadata names that file.
fn too_big_archive() -> Vec<u8> {
    // xorshift64: bytes gzip cannot shrink.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let messages: Vec<u8> = (0..65536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    let meta = json!({
        "name": "insights.specs.Specs.messages",
        "results": {"object": {"relative_path": "var/log/messages"}}
    });
    gzip(
        &TarBuilder::new()
            .file("./too-big/insights_commands/hostname", b"web01\n")
            .file("./too-big/data/var/log/messages", &messages)
            .file(
                "./too-big/meta_data/insights.specs.Specs.messages.json",
                meta.to_string().as_bytes(),
            )
            .finish(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn insights_client_upload_path_gets_202_401_413_and_415() {
    let dir = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let serve = start_with(dir.path(), &[("INGRESS_MAX_SIZE", "32768")]);
    ready(&client, &serve).await;
    let upload_url = format!("{}/api/ingress/v1/upload", serve.ingress);
    let advisor = "application/vnd.redhat.advisor.collection+tgz";

    // 202: the client reports success, and the payload is validated into perm.
    let bytes = advisor_archive();
    let archive = intake_testkit::archives::write(dir.path(), "insights-web01.tar.gz", &bytes);
    let run = insights_client_upload(conf.path(), &upload_url, &archive, advisor);
    assert_eq!(run.status(), 202, "{}", run.stdout);
    assert_eq!(run.report["outcome"], "uploaded", "{}", run.stdout);
    assert!(
        run.report["basic"] == "compat-user:compat-password",
        "the client authenticates with Basic: {}",
        run.stdout
    );
    assert!(
        run.report["logs"]
            .as_array()
            .is_some_and(|l| l.iter().any(|m| m
                .as_str()
                .is_some_and(|m| m.starts_with("Successfully uploaded report for ")))),
        "{}",
        run.stdout
    );
    let body: Value = serde_json::from_str(run.report["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["upload"]["org_id"], "54321", "{body}");
    let id = run.report["request_id"]
        .as_str()
        .expect("the answer names its request id")
        .to_owned();
    assert_eq!(body["request_id"], id.as_str());
    let perm = dir
        .path()
        .join("data/storage/insights-upload-perm-test")
        .join(&id);
    poll::until_true(WAIT, "the upload to land in perm", || {
        let perm = perm.clone();
        async move { perm.exists() }
    })
    .await;
    assert_eq!(sha256(&std::fs::read(&perm).unwrap()), sha256(&bytes));

    // The legacy content type insights-client sends for advisor: 202 as well.
    let run = insights_client_upload(conf.path(), &upload_url, &archive, "application/gzip");
    assert_eq!(run.status(), 202, "{}", run.stdout);
    assert_eq!(run.report["outcome"], "uploaded", "{}", run.stdout);

    // 401: no identity (the request did not come through the gateway); the client reports the
    // status as a failed attempt.
    let run = upload_as(conf.path(), &upload_url, "", &archive, advisor);
    assert_eq!(run.status(), 401, "{}", run.stdout);
    assert_eq!(run.report["outcome"], "failed");
    assert!(
        run.logged("Upload attempt 1 of 1 failed! Reason: 401: Unauthorized"),
        "{}",
        run.stdout
    );

    // 413: over INGRESS_MAX_SIZE; the client reports the archive as too large and, from its
    // spec metadata, which file made it so.
    let too_big = intake_testkit::archives::write(dir.path(), "too-big.tar.gz", &too_big_archive());
    let run = insights_client_upload(conf.path(), &upload_url, &too_big, advisor);
    assert_eq!(run.status(), 413, "{}", run.stdout);
    assert_eq!(run.report["outcome"], "failed");
    assert!(
        run.logged("Archive is too large to upload."),
        "{}",
        run.stdout
    );
    assert!(
        run.logged("The largest file in the archive is var/log/messages at 0.0625 MB."),
        "{}",
        run.stdout
    );

    // 415: a content type of no service intake serves; the client reports an invalid type.
    let run = insights_client_upload(
        conf.path(),
        &upload_url,
        &archive,
        "application/vnd.redhat.nosuchservice.collection+tgz",
    );
    assert_eq!(run.status(), 415, "{}", run.stdout);
    assert_eq!(run.report["outcome"], "failed");
    assert!(run.logged("Invalid content-type."), "{}", run.stdout);
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Creates `topics` on the test's broker (one partition each).
async fn create_topics(brokers: &str, topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap();
    for result in results {
        if let Err((topic, code)) = result {
            assert_eq!(
                code,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "creating {topic}"
            );
        }
    }
}

/// An OpenShift Insights Operator archive: the cluster id, its version, a gather report.
fn ocp_archive(cluster_id: &str, version: &str) -> Vec<u8> {
    gzip(
        &TarBuilder::new()
            .dir("config")
            .file("config/id", cluster_id.as_bytes())
            .file("config/version", format!("{version}\n").as_bytes())
            .dir("insights-operator")
            .file(
                "insights-operator/gathers.json",
                b"{\"status_reports\": []}",
            )
            .finish(),
    )
}

/// Where intake keeps the payloads ccx-messaging downloads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Storage {
    /// The harness's S3 server: presigned links, `allow_unsafe_links` off.
    S3,
    /// Ingress's own `/download/` links, `allow_unsafe_links` on (README, "Upstream clients").
    LocalDisk,
}

#[tokio::test(flavor = "multi_thread")]
async fn ccx_messaging_publishes_a_report_from_an_s3_announce() {
    ccx_round_trip(Storage::S3, "platform.upload.announce", "4.10.3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ccx_messaging_publishes_a_report_from_a_localdisk_announce() {
    ccx_round_trip(Storage::LocalDisk, "platform.upload.announce", "4.14.1").await;
}

/// After intake's validator: ccx-messaging on `platform.upload.available`, links to perm.
#[tokio::test(flavor = "multi_thread")]
async fn ccx_messaging_publishes_a_report_from_an_s3_available() {
    ccx_round_trip(Storage::S3, "platform.upload.available", "4.10.3").await;
}

/// Upload an OpenShift archive of cluster `version` to intake ingress on Kafka and `storage`, run
/// ccx-messaging on intake's topic `source` (`platform.upload.announce`, or
/// `platform.upload.available` with intake's validator running) and check the report it publishes
/// and the statuses it sends.
async fn ccx_round_trip(storage: Storage, source: &str, version: &str) {
    let dir = tempfile::tempdir().unwrap();
    let engines = Engines::harness("compat");
    let mut announce_env = vec![("INGRESS_ANNOUNCE_MODE", "announce")];
    if storage == Storage::LocalDisk {
        announce_env.push(("STORAGE_DRIVER", "localdisk"));
        announce_env.push(("STORAGE_URL_SIGNING_KEY", "test-key"));
    }
    let created = process::command(
        &["topics", "create", "--services", "openshift"],
        &engines,
        dir.path(),
        &announce_env,
    )
    .stderr(Stdio::inherit())
    .output()
    .unwrap();
    assert!(created.status.success(), "{created:?}");
    let incoming = engines.topic(source);
    let results = engines.topic("ccx.ocp.results");
    let dead_letters = engines.topic("ccx.dead.letter.queue");
    create_topics(
        &engines.brokers,
        &[incoming.clone(), results.clone(), dead_letters.clone()],
    )
    .await;
    let announces = Reader::new(&engines.brokers, &incoming);
    let reports = Reader::new(&engines.brokers, &results);
    let ingress = Intake::ingress(&engines, dir.path(), &announce_env).await;
    let validator_group = unique("validator");
    let mut validator_env = announce_env.clone();
    validator_env.extend([
        ("VALIDATOR_SOURCE", "announce"),
        ("VALIDATOR_CONSUMER_GROUP", validator_group.as_str()),
    ]);
    let _validator = (source == "platform.upload.available").then(|| {
        Intake::start(
            &["validator", "--services", "openshift"],
            &engines,
            dir.path(),
            &validator_env,
        )
    });
    let tracker_listen = format!("127.0.0.1:{}", process::free_port());
    let tracker_group = unique("tracker");
    let _tracker = Intake::start(
        &["tracker"],
        &engines,
        dir.path(),
        &[
            ("TRACKER_LISTEN", tracker_listen.as_str()),
            ("TRACKER_CONSUMER_GROUP", tracker_group.as_str()),
        ],
    );

    // Upload as the Insights Operator does (content type of the openshift service).
    let id = uuid::Uuid::new_v4().simple().to_string();
    let cluster = "0b2d7a8e-3c1f-4e5a-9d6b-7f8e9a0b1c2d";
    let part = reqwest::multipart::Part::bytes(ocp_archive(cluster, version))
        .file_name("insights-operator.tar.gz")
        .mime_str("application/vnd.redhat.openshift.periodic+tgz")
        .unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/api/ingress/v1/upload", ingress.url))
        .header("x-rh-identity", IDENTITY)
        .header("x-rh-insights-request-id", &id)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);

    let announce = announces
        .find(WAIT, "intake's message", |r| {
            r.value["request_id"] == id.as_str()
        })
        .await;
    assert_eq!(
        announce.headers.get("service").map(String::as_str),
        Some("openshift")
    );
    let url = announce.value["url"].as_str().unwrap().to_owned();
    let endpoint = engines.s3_endpoint.trim_end_matches('/');
    let mut ccx = Command::new(python());
    ccx.arg(scripts().join("run_ccx.py"));
    match storage {
        Storage::S3 => {
            // Path-style on the S3 server, the query as upstream's pattern wants it.
            let bucket = if source == "platform.upload.available" {
                &engines.perm
            } else {
                &engines.quarantine
            };
            assert!(
                url.starts_with(&format!("{endpoint}/{bucket}/{id}?")),
                "{url}"
            );
            let checked = Command::new(python())
                .arg(scripts().join("upstream_link_pattern.py"))
                .arg(&url)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&checked.stdout).trim(),
                "match",
                "ccx-messaging's own pattern, host aside, takes {url}: {checked:?}"
            );
            // The production configuration: allow_unsafe_links off.
            ccx.arg(scripts().join("ccx_config.yaml"))
                .env("CCX_S3_ENDPOINT", endpoint);
        }
        Storage::LocalDisk => {
            assert!(
                url.starts_with(&format!("{}/download/{id}?", ingress.url)),
                "{url}"
            );
            // The one setting a localdisk deployment changes: allow_unsafe_links on.
            let config = std::fs::read_to_string(scripts().join("ccx_config.yaml"))
                .unwrap()
                .replace("allow_unsafe_links: false", "allow_unsafe_links: true");
            assert!(config.contains("allow_unsafe_links: true"));
            let path = dir.path().join("ccx_config.yaml");
            std::fs::write(&path, config).unwrap();
            ccx.arg(path);
        }
    }

    // ccx-messaging, its production pipeline shape.
    let ccx = ccx
        .current_dir(dir.path())
        .env("PYTHONPATH", scripts())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CCX_BROKERS", &engines.brokers)
        .env("CCX_GROUP", unique("ccx"))
        .env("CCX_INCOMING_TOPIC", &incoming)
        .env("CCX_OUTGOING_TOPIC", &results)
        .env("CCX_DLQ_TOPIC", &dead_letters)
        .env("CCX_STATUS_TOPIC", engines.topic("platform.payload-status"))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _ccx = Killed(ccx);

    let report = reports
        .find(WAIT, "ccx-messaging's report", |r| {
            r.value["RequestId"] == id.as_str()
        })
        .await;
    let v = &report.value;
    assert_eq!(v["OrgID"], 54321, "{v}");
    assert_eq!(v["AccountNumber"], 12345, "{v}");
    assert_eq!(v["ClusterName"], cluster, "from config/id: {v}");
    assert_eq!(
        v["LastChecked"], announce.value["timestamp"],
        "the received time of intake's message: {v}"
    );
    // 4.10 fails the rule (a report), 4.14 passes it (no report, a pass).
    let fail = json!({
        "rule_id": "cluster_version|COMPAT_OLD_VERSION",
        "component": "compat_rules.cluster_version.report",
        "type": "rule",
        "key": "COMPAT_OLD_VERSION",
        "details": {"version": version, "type": "rule", "error_key": "COMPAT_OLD_VERSION"},
        "tags": [],
        "links": {}
    });
    let pass = json!({
        "pass_id": "cluster_version|COMPAT_OLD_VERSION",
        "component": "compat_rules.cluster_version.report",
        "type": "pass",
        "key": "COMPAT_OLD_VERSION",
        "details": {"version": version, "type": "pass", "pass_key": "COMPAT_OLD_VERSION"},
        "tags": [],
        "links": {}
    });
    let (reports, passes) = if version.starts_with("4.10") {
        (json!([fail]), Value::Null)
    } else {
        (json!([]), json!([pass]))
    };
    assert_eq!(v["Report"]["reports"], reports, "{v}");
    if !passes.is_null() {
        assert_eq!(v["Report"]["pass"], passes, "{v}");
    }
    assert_eq!(
        v["Report"]["analysis_metadata"]["execution_context"],
        "insights.core.context.HostArchiveContext"
    );

    // Its statuses, as intake's tracker keeps them.
    let tracker = format!("http://{tracker_listen}");
    let wanted: Vec<(String, String)> = ["received", "processing", "success"]
        .iter()
        .map(|s| ("ccx-data-pipeline".to_owned(), (*s).to_owned()))
        .collect();
    let client = reqwest::Client::new();
    poll::until_true(WAIT, "ccx-messaging's statuses in the tracker", || {
        let (client, tracker, id, wanted) = (&client, &tracker, &id, &wanted);
        async move {
            let seen = statuses(client, tracker, id).await;
            wanted.iter().all(|w| seen.contains(w))
        }
    })
    .await;
}
