//! Black-box: the download links ingress puts in its announces keep working across restarts and
//! whatever ports the parts listen on, with none of the URL settings given (README, "Running on
//! Kafka, S3 and PostgreSQL"; storage.md, "Download URLs").

mod common;

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
    let listen = [
        ("INGRESS_LISTEN", format!("127.0.0.1:{port}")),
        ("INGRESS_PUBLIC_URL", base.clone()),
    ];

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
            listen[1].clone(),
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
