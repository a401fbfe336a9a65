//! Black-box: `intake tracker` with its SQLite database on a small tmpfs (mounted when the test may
//! mount one), statuses sent by `intake tracker mock` on the embedded bus while that disk is full.
//! The tracker must say not-ready naming the cause, store and commit nothing, then store every
//! status once space returns, and keep them all across a SIGKILL and restart. On PostgreSQL, a
//! server that does not answer yet leaves the tracker up and not-ready until it does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use intake_testkit::poll;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// A tmpfs of `size` on a fresh directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        mounted.then_some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn intake(args: &[&str], data: &Path, database: &str, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intake"));
    cmd.args(args)
        .env("INTAKE_DATA_DIR", data)
        .env("TRACKER_DATABASE_URL", database)
        .env("TRACKER_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "error")
        .env("IDENTITY_REQUIRED", "false")
        .env_remove("KAFKA_BROKERS")
        .env_remove("KAFKAMQ")
        .env_remove("BUS_DRIVER")
        .env_remove("PIPELINE_CONFIG");
    cmd
}

struct Tracker(Child);

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path, database: &str, port: u16) -> Tracker {
    Tracker(
        intake(&["tracker"], data, database, port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    match client.get(url).send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn stored(client: &reqwest::Client, base: &str) -> i64 {
    get(client, &format!("{base}/api/v1/statuses?page_size=1"))
        .await
        .1["count"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test]
async fn a_full_disk_under_the_tracker_database_loses_no_status() {
    let Some(tmpfs) = Tmpfs::mount("4m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let database = format!("sqlite://{}", tmpfs.0.path().join("tracker.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut tracker = start(&data, &database, port);
    poll::until_true(WAIT, "the tracker ready", || async {
        get(&client, &format!("{base}/readyz")).await.0 == 200
    })
    .await;
    let filler = fill(tmpfs.0.path());
    let out = intake(
        &["tracker", "mock", "--payloads", "60", "--rate", "5000"],
        &data,
        &database,
        free_port(),
    )
    .stderr(Stdio::inherit())
    .output()
    .unwrap();
    assert!(out.status.success(), "mock failed: {out:?}");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let sent: i64 = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("mock's report: {said}"));
    poll::until_true(WAIT, "not ready while the disk is full", || async {
        get(&client, &format!("{base}/readyz")).await.0 == 503
    })
    .await;
    let (_, body) = get(&client, &format!("{base}/readyz")).await;
    let cause = body["checks"]["database"].as_str().unwrap_or_default();
    assert!(cause.contains("full"), "the cause is named: {body}");
    let (code, _) = get(&client, &format!("{base}/health")).await;
    assert_eq!(code, 503, "/health agrees");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let while_full = stored(&client, &base).await;
    assert!(while_full < sent, "the disk was too small for every status");
    // A crash while the disk is full: nothing was committed, so nothing is skipped on restart.
    drop(tracker);
    tracker = start(&data, &database, port);
    poll::until_true(WAIT, "answering again, still not ready", || async {
        get(&client, &format!("{base}/readyz")).await.0 == 503
    })
    .await;
    std::fs::remove_file(&filler).unwrap();
    poll::until_true(WAIT, "every status stored once space returns", || async {
        stored(&client, &base).await == sent
    })
    .await;
    poll::until_true(WAIT, "ready again", || async {
        get(&client, &format!("{base}/readyz")).await.0 == 200
    })
    .await;
    // Durable: a SIGKILL and restart keeps every status.
    drop(tracker);
    let _tracker = start(&data, &database, port);
    poll::until_true(WAIT, "ready after the restart", || async {
        get(&client, &format!("{base}/readyz")).await.0 == 200
    })
    .await;
    let after_restart = stored(&client, &base).await;
    println!(
        "sent {sent}, stored {after_restart} ({while_full} while the disk was full), lost = {}",
        sent - after_restart
    );
    assert_eq!(after_restart, sent);
}

/// Sends `payloads` mock journeys; returns how many statuses were sent.
fn mock(data: &Path, database: &str, payloads: usize) -> i64 {
    let out = intake(
        &[
            "tracker",
            "mock",
            "--payloads",
            &payloads.to_string(),
            "--rate",
            "20000",
        ],
        data,
        database,
        free_port(),
    )
    .stderr(Stdio::inherit())
    .output()
    .unwrap();
    assert!(out.status.success(), "mock failed: {out:?}");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    said.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("mock's report: {said}"))
}

#[tokio::test]
async fn a_tracker_killed_while_ingesting_stores_every_status_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let database = format!("sqlite://{}", dir.path().join("tracker.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let sent = mock(&data, &database, 600);
    let tracker = start(&data, &database, port);
    // Killed as soon as some batches are stored: likely between a batch's rows and its offsets.
    poll::until_true(WAIT, "the first statuses stored", || async {
        stored(&client, &base).await > 0
    })
    .await;
    drop(tracker);
    let _tracker = start(&data, &database, port);
    poll::until_true(WAIT, "every status stored after the restart", || async {
        stored(&client, &base).await >= sent
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stored(&client, &base).await;
    println!(
        "sent {sent}, stored {after}, lost = {}, duplicates = {}",
        (sent - after).max(0),
        (after - sent).max(0)
    );
    assert_eq!(after, sent, "every status stored once");
}

/// A PostgreSQL server of the test's own in a temporary directory (Debian's packages, as the
/// harness's scripts/servers/postgres.sh starts it), stopped on drop.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    /// `initdb` only; [`Postgres::start`] starts the server.
    fn init(port: u16) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|v| v.path().join("bin"))
                    .filter(|b| b.join("initdb").exists())
                    .max()
            })
            .expect(
                "PostgreSQL is installed (run under scripts/with-servers.sh, which installs it)",
            );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("socket")).unwrap();
        let pg = Self { bin, dir, port };
        if pg.as_root() {
            // PostgreSQL refuses to run as root: the server runs as `postgres`.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(pg.dir.path(), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let initdb = pg
            .owner(&pg.bin.join("initdb"))
            .arg("-D")
            .arg(pg.dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb: {initdb:?}");
        pg
    }

    fn as_root(&self) -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false)
    }

    /// `program` run as the data directory's owner.
    fn owner(&self, program: &Path) -> Command {
        if self.as_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn start(&self) {
        let started = self
            .owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
                self.port,
                self.dir.path().join("socket").display()
            ))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(started.status.success(), "pg_ctl start: {started:?}");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn a_tracker_waits_for_its_database_and_becomes_ready_when_it_answers() {
    let pg_port = free_port();
    let database = format!("postgres://postgres:sekrit@127.0.0.1:{pg_port}/postgres");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut tracker = start(&data, &database, port);
    poll::until_true(WAIT, "the tracker answering, not ready", || async {
        get(&client, &format!("{base}/readyz")).await.0 == 503
    })
    .await;
    let (_, body) = get(&client, &format!("{base}/readyz")).await;
    let cause = body["checks"]["database"].as_str().unwrap_or_default();
    assert!(
        cause.contains("TRACKER_DATABASE_URL") && cause.contains(&format!("127.0.0.1:{pg_port}")),
        "the variable and the host are named: {body}"
    );
    assert!(
        !cause.contains("sekrit"),
        "the password is not shown: {body}"
    );
    assert_eq!(get(&client, &format!("{base}/health")).await.0, 503);
    let pg = Postgres::init(pg_port);
    // It used to give up after 10 s: it must outlast that.
    if let Some(rest) = Duration::from_secs(12).checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    assert!(
        tracker.0.try_wait().unwrap().is_none(),
        "the tracker keeps running without its database"
    );
    assert_eq!(get(&client, &format!("{base}/readyz")).await.0, 503);
    pg.start();
    // The backoff is at most 30 s.
    poll::until_true(WAIT, "ready once the database answers", || async {
        get(&client, &format!("{base}/readyz")).await.0 == 200
    })
    .await;
    let sent = mock(&data, &database, 20);
    poll::until_true(WAIT, "every status stored", || async {
        stored(&client, &base).await == sent
    })
    .await;
    drop(tracker);

    // A database that does not exist is a configuration error: exit 2 at once, naming it.
    let missing = format!("postgres://postgres:sekrit@127.0.0.1:{pg_port}/nosuchdb");
    let mut child = intake(&["tracker"], &data, &missing, free_port())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the tracker did not exit on a missing database");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("TRACKER_DATABASE_URL")
            && stderr.contains(&format!("127.0.0.1:{pg_port}/nosuchdb")),
        "names the variable, host and database: {stderr}"
    );
    assert!(
        !stderr.contains("sekrit"),
        "the password is not shown: {stderr}"
    );
}
