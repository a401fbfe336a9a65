//! The intake binary as a child process of a test: started with the engines' environment, killed
//! (SIGKILL) when dropped or when the test says so.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use intake_testkit::poll;

use super::engines::Engines;

/// A running `intake <subcommand>`.
pub struct Intake {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the ingress listener (meaningful for `ingress` and `serve`).
    pub url: String,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").field("url", &self.url).finish()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `intake <args>` with `engines`' environment plus `extra`, in `dir` (its data directory).
pub fn command(args: &[&str], engines: &Engines, dir: &Path, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.args(args)
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("LOG_LEVEL", "warn")
        .envs(engines.env());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `intake <args>` to completion and fails the test when it fails.
pub fn run(args: &[&str], engines: &Engines, dir: &Path) -> String {
    let out = command(args, engines, dir, &[])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "intake {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

impl Intake {
    /// Starts `intake <args>`; an ingress listener is put on a free port.
    pub fn start(args: &[&str], engines: &Engines, dir: &Path, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = command(args, engines, dir, extra)
            .env("INGRESS_LISTEN", format!("127.0.0.1:{port}"))
            .env("INGRESS_PUBLIC_URL", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            url,
        }
    }

    /// Starts `intake ingress` and waits until `/readyz` answers 200 (buckets and bus answer).
    pub async fn ingress(engines: &Engines, dir: &Path, extra: &[(&str, &str)]) -> Self {
        let ingress = Self::start(&["ingress"], engines, dir, extra);
        ingress.ready().await;
        ingress
    }

    pub async fn ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.url);
        poll::until_true(Duration::from_secs(60), "intake ingress ready", || {
            let request = client.get(&url).timeout(Duration::from_secs(5)).send();
            async move { matches!(request.await, Ok(r) if r.status() == 200) }
        })
        .await;
    }

    /// SIGKILL: no drain, no final commit, as a crash or an OOM kill would end it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `intake <args>` on the embedded default in `dir`: no engine, pipeline or app-config variable
/// of the harness leaks in; `env` is set last. Its stdout is dropped, its stderr inherited.
pub fn embedded(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Killed {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.args(args)
        .current_dir(dir)
        .env("INTAKE_DATA_DIR", dir.join("data"))
        .env("STORAGE_URL_SIGNING_KEY", "test-key")
        .env("LOG_LEVEL", "warn")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .env_remove("S3_ENDPOINT_URL")
        .env_remove("STORAGE_DRIVER")
        .env_remove("PIPELINE_CONFIG")
        .env_remove("ACG_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Killed(cmd.spawn().unwrap())
}

/// `intake ingress` on the embedded default in `dir`, on `127.0.0.1:port` (its public URL too), with
/// `env` set last; returned once `/readyz` answers 200.
pub async fn embedded_ingress(dir: &Path, port: u16, env: &[(&str, String)]) -> Killed {
    let base = format!("http://127.0.0.1:{port}");
    let mut vars = vec![
        ("INGRESS_LISTEN", format!("127.0.0.1:{port}")),
        ("INGRESS_PUBLIC_URL", base.clone()),
    ];
    vars.extend(env.iter().cloned());
    let child = embedded(dir, &["ingress"], &vars);
    let client = reqwest::Client::new();
    intake_testkit::poll::until_true(
        std::time::Duration::from_secs(60),
        "ingress to be ready",
        || async {
            let r = client.get(format!("{base}/readyz")).send().await;
            matches!(r, Ok(r) if r.status() == 200)
        },
    )
    .await;
    child
}
