//! Black-box: the download links ingress puts in its announces keep working across restarts and
//! whatever ports the parts listen on, with none of the URL settings given (README, "Running on
//! Kafka, S3 and PostgreSQL"; storage.md, "Download URLs").

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

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::free_port;
use common::upload::{archive, post};
use intake_testkit::poll;

const PERM: &str = "insights-upload-perm-test";
const REJECT: &str = "insights-upload-rejected";

/// One intake process on the embedded default; killed when dropped.
struct Part {
    child: Child,
    /// What it has written to stderr so far (also passed on to the test's stderr).
    log: Arc<Mutex<String>>,
}

impl Drop for Part {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Part {
    /// SIGTERM, then waits for the process to end (a graceful stop, as an operator's would be).
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let waited = poll_exit(&mut self.child, Duration::from_secs(60));
        assert!(waited, "intake did not stop within 60 s of SIGTERM");
    }
}

fn poll_exit(child: &mut Child, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `intake <args>` on `dir/data` with only the embedded engines and none of the URL settings but
/// `extra`'s: no signing key, public URL or tracker URL from the test's own environment.
fn start(args: &[&str], dir: &Path, extra: &[(&str, String)]) -> Part {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.args(args)
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("LOG_LEVEL", "warn")
        .env("IDENTITY_REQUIRED", "true");
    for var in [
        "STORAGE_URL_SIGNING_KEY",
        "INGRESS_PUBLIC_URL",
        "INGRESS_TRACKER_URL",
        "PIPELINE_CONFIG",
        "KAFKA_BROKERS",
        "KAFKAMQ",
        "BUS_DRIVER",
        "STORAGE_DRIVER",
        "S3_ENDPOINT_URL",
        "STORAGE_DIR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    Part { child, log }
}

async fn ready(client: &reqwest::Client, base: &str) {
    let url = format!("{base}/readyz");
    poll::until_true(Duration::from_secs(60), "ingress ready", || {
        let request = client.get(&url).timeout(Duration::from_secs(5)).send();
        async move { matches!(request.await, Ok(r) if r.status() == 200) }
    })
    .await;
}

fn object(dir: &Path, bucket: &str, id: &str) -> PathBuf {
    dir.join("data/storage").join(bucket).join(id)
}

/// Waits until `id` is in perm; fails at once if it lands in reject.
async fn ends_in_perm(dir: &Path, id: &str) {
    poll::until_true(Duration::from_secs(60), "the payload in perm", || async {
        assert!(
            !object(dir, REJECT, id).exists(),
            "{id} was rejected instead of validated"
        );
        object(dir, PERM, id).exists()
    })
    .await;
    assert!(!object(dir, REJECT, id).exists());
}

/// A payload accepted by `intake ingress` alone (no validator running), which then stops, is
/// validated by `intake serve` started later on the same data directory: the link in its announce
/// was signed with the key kept in the data directory, which serve reuses.
#[tokio::test(flavor = "multi_thread")]
async fn a_payload_accepted_before_a_restart_is_validated_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = [("INGRESS_LISTEN", format!("127.0.0.1:{port}"))];

    let ingress = start(&["ingress"], dir.path(), &listen);
    ready(&client, &base).await;
    let id = "a5e1d3c0ffee4b1d9e2a7c6b5f4e3d21";
    let answer = post(&client, &base, id, archive("kept-key")).await.unwrap();
    assert_eq!(answer.status(), 202);
    ingress.stop();
    assert!(object(dir.path(), "insights-upload-quarantine", id).exists());

    let key = dir.path().join("data/signing.key");
    let text = std::fs::read_to_string(&key).expect("the key is kept in the data directory");
    assert_eq!(text.trim().len(), 64, "{text:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }

    let tracker = free_port();
    let serve = start(
        &["serve"],
        dir.path(),
        &[
            listen[0].clone(),
            ("TRACKER_LISTEN", format!("127.0.0.1:{tracker}")),
        ],
    );
    ready(&client, &base).await;
    ends_in_perm(dir.path(), id).await;
    // No warning about a key that dies with the process.
    let log = serve.log.lock().unwrap().clone();
    assert!(!log.contains("random key"), "{log}");
    drop(serve);
    // Reused, not replaced.
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

/// Runs `intake upload <args>` and returns (exit code, stdout, stderr).
async fn intake_upload(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("upload")
        .args(args)
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `intake serve` on ports other than 8080/8081 with neither public URL set: the announced links
/// name the port ingress listens on, so the payload is validated into perm, and `upload --wait`
/// (whose `/track` goes through ingress to the tracker) sees its `success`.
#[tokio::test(flavor = "multi_thread")]
async fn serve_on_other_ports_without_public_urls_validates_and_tracks() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (ingress_port, tracker_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{ingress_port}");
    let _serve = start(
        &["serve"],
        dir.path(),
        &[
            ("INGRESS_LISTEN", format!("127.0.0.1:{ingress_port}")),
            ("TRACKER_LISTEN", format!("127.0.0.1:{tracker_port}")),
        ],
    );
    ready(&client, &base).await;
    let readyz: serde_json::Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(readyz["checks"]["public_url"], "ok", "{readyz}");

    let id = "b7c2e4f6a8d0412c9e1b3d5f7a9c0e2d";
    let answer = post(&client, &base, id, archive("other-ports"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    ends_in_perm(dir.path(), id).await;

    let file = intake_testkit::archives::write(dir.path(), "a.tar.gz", &archive("wait"));
    let (code, stdout, stderr) = intake_upload(&[
        &file.display().to_string(),
        "--url",
        &base,
        "--service",
        "testareno",
        "--org-id",
        "54321",
        "--account",
        "12345",
        "--wait=60s",
        "--poll-interval",
        "100ms",
    ])
    .await;
    assert_eq!(code, 0, "stdout: {stdout} stderr: {stderr}");
    assert!(object(dir.path(), PERM, stdout.trim()).exists());
}

/// The body of `/readyz` once it has settled on 503 naming `INGRESS_PUBLIC_URL`.
async fn unready_naming_the_public_url(client: &reqwest::Client, base: &str) -> String {
    let url = format!("{base}/readyz");
    poll::until(
        Duration::from_secs(60),
        "/readyz 503 naming INGRESS_PUBLIC_URL",
        || async {
            let answer = client.get(&url).send().await.ok()?;
            let status = answer.status();
            let body = answer.text().await.ok()?;
            (status == 503 && body.contains("INGRESS_PUBLIC_URL") && !body.contains("not yet"))
                .then_some(body)
        },
    )
    .await
}

/// A public URL that leads nowhere, or to another ingress, keeps `/readyz` at 503 with a check
/// naming `INGRESS_PUBLIC_URL`, while storage and the bus are fine.
#[tokio::test(flavor = "multi_thread")]
async fn a_public_url_that_does_not_reach_ingress_makes_it_unready() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();

    // Nothing listens there.
    let (port, nowhere) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let lost = start(
        &["ingress"],
        dir.path(),
        &[
            ("INGRESS_LISTEN", format!("127.0.0.1:{port}")),
            ("INGRESS_PUBLIC_URL", format!("http://127.0.0.1:{nowhere}")),
        ],
    );
    let body = unready_naming_the_public_url(&client, &base).await;
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["status"], "unavailable", "{body}");
    assert_eq!(parsed["checks"]["storage"], "ok", "{body}");
    assert_eq!(parsed["checks"]["bus"], "ok", "{body}");
    assert!(
        parsed["checks"]["public_url"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("127.0.0.1:{nowhere}"))),
        "{body}"
    );

    // Another ingress answers there: a second one whose public URL is the first one's.
    let other_dir = tempfile::tempdir().unwrap();
    let second_port = free_port();
    let second_base = format!("http://127.0.0.1:{second_port}");
    let _second = start(
        &["ingress"],
        other_dir.path(),
        &[
            ("INGRESS_LISTEN", format!("127.0.0.1:{second_port}")),
            ("INGRESS_PUBLIC_URL", base.clone()),
        ],
    );
    let body = unready_naming_the_public_url(&client, &second_base).await;
    assert!(body.contains("another server"), "{body}");

    // Both said so at WARN, naming the variable.
    for part in [&lost, &_second] {
        let log = part.log.lock().unwrap().clone();
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains("INGRESS_PUBLIC_URL")),
            "{log}"
        );
    }
}
