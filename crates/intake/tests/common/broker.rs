//! A tansu broker of the test's own, in memory as scripts/servers/kafka.sh starts its plain one, for
//! the outage tests. Two kinds of outage: [`Broker::stop`] (SIGKILL; started again on the same port
//! it has lost its topics, messages and producer state — its SQLite engine would keep them, but
//! tansu 0.6.0 panics there on the first idempotent produce after a restart) and [`Broker::pause`]
//! (SIGSTOP: it keeps its port, connections and storage and answers nothing until
//! [`Broker::resume`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use intake_testkit::poll;

use super::{kafka, process};

const WAIT: Duration = Duration::from_secs(120);

pub struct Broker {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    cluster_id: &'static str,
}

impl Broker {
    /// A broker on a free port, logging to `dir/tansu.log`; not started yet.
    pub fn new(dir: &Path, cluster_id: &'static str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        Self {
            child: None,
            dir: dir.to_owned(),
            port: process::free_port(),
            cluster_id,
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again, on the same port) and waits until it answers metadata requests.
    pub async fn start(&mut self) {
        let bin = intake_testkit::servers::required("INTAKE_TEST_TANSU_BIN");
        let url = format!("tcp://{}", self.address());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let child = Command::new(bin)
            .args(["broker", "--cluster-id", self.cluster_id])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let address = self.address();
        poll::until_true(WAIT, "the test's broker to answer", || {
            let address = address.clone();
            async move { kafka::answers(&address).await }
        })
        .await;
    }

    /// SIGSTOP: the broker holds its port, connections and storage but answers nothing, as a hung
    /// or partitioned broker; [`Broker::resume`] lets it go on where it was.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        assert!(self.send(signal), "kill {signal} the broker");
    }

    fn send(&self, signal: &str) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGKILL (after SIGCONT, should it be paused), as a crashed or unplugged broker.
    pub fn stop(&mut self) {
        self.send("-CONT");
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
