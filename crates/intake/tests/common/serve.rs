//! `intake serve` on the embedded default as a child process of a test, with its own data
//! directory and loopback ports; killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use intake_testkit::poll;

use super::process::free_port;

/// A running `intake serve`.
pub struct Serve {
    child: Child,
    /// `http://127.0.0.1:PORT` of ingress.
    pub ingress: String,
    /// `http://127.0.0.1:PORT` of the tracker.
    pub tracker: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `intake serve` with its data under `dir/data`, whatever the test's own environment says
/// about Kafka or a pipeline configuration.
pub fn start(dir: &Path) -> Serve {
    start_with(dir, &[])
}

/// [`start`] with `extra` variables set last (they win).
pub fn start_with(dir: &Path, extra: &[(&str, &str)]) -> Serve {
    let (ip, tp) = (free_port(), free_port());
    let ingress = format!("http://127.0.0.1:{ip}");
    let tracker = format!("http://127.0.0.1:{tp}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
    command
        .arg("serve")
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("INGRESS_LISTEN", format!("127.0.0.1:{ip}"))
        .env("INGRESS_PUBLIC_URL", &ingress)
        .env("TRACKER_LISTEN", format!("127.0.0.1:{tp}"))
        .env("INGRESS_TRACKER_URL", format!("{tracker}/api/v1/payloads/"))
        .env("STORAGE_URL_SIGNING_KEY", "test-key")
        .env("LOG_LEVEL", "warn")
        .env_remove("PIPELINE_CONFIG")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command.envs(extra.iter().copied());
    let child = command.spawn().unwrap();
    Serve {
        child,
        ingress,
        tracker,
    }
}

impl Serve {
    /// The process id of `intake serve`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Waits until ingress and the tracker both answer as ready.
pub async fn ready(client: &reqwest::Client, serve: &Serve) {
    poll::until_true(
        Duration::from_secs(60),
        "intake serve to become ready",
        || async {
            let ingress = client.get(format!("{}/readyz", serve.ingress)).send().await;
            let tracker = client
                .get(format!("{}/api/v1/health", serve.tracker))
                .send()
                .await;
            matches!((ingress, tracker), (Ok(a), Ok(b)) if a.status() == 200 && b.status() == 200)
        },
    )
    .await;
}

/// The tracker's (service, status) pairs of a payload, oldest first (empty while the tracker does
/// not answer or knows nothing of it), as seen with the tests' identity.
pub async fn statuses(client: &reqwest::Client, tracker: &str, id: &str) -> Vec<(String, String)> {
    let Ok(r) = client
        .get(format!("{tracker}/api/v1/payloads/{id}?sort_dir=asc"))
        .header("x-rh-identity", super::upload::IDENTITY)
        .send()
        .await
    else {
        return Vec::new();
    };
    let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
    body["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["service"].as_str().unwrap_or("").to_owned(),
                        r["status"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
