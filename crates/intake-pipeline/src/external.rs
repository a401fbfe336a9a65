//! The `external` engine (spec pipeline.md §7.5): one process per archive, JSON on stdin, one
//! report object on stdout, killed (with its process group) at the timeout.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{ExternalInput, PipelineConfig};
use crate::error::{Chain, PipelineError, Stage, StageError};

/// The report buckets an engine's output must have (missing ones are filled in).
const BUCKETS: &[&str] = &["reports", "fingerprints", "skips", "info", "pass"];

pub struct External {
    command: Vec<String>,
    env: BTreeMap<String, String>,
    max_output: u64,
    input: ExternalInput,
    plugins: Value,
    target_components: Vec<String>,
}

/// What the child is told about the archive.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub request_id: Option<&'a str>,
    pub org_id: &'a str,
    pub account: Option<&'a str>,
    pub cluster_id: Option<&'a str>,
    pub extracted_path: &'a Path,
    pub archive_path: &'a Path,
    pub work_dir: &'a Path,
    pub timeout: Duration,
}

fn rules_err(reason: &'static str, detail: impl Into<String>) -> StageError {
    StageError::permanent(Stage::Rules, reason, detail)
}

impl External {
    pub fn new(config: &PipelineConfig) -> Result<Self, PipelineError> {
        let e = &config.engine;
        let program = e
            .command
            .first()
            .ok_or_else(|| PipelineError::setup("service.engine.command is empty"))?;
        let resolved = config.base_dir.join(program);
        if !Path::new(program).is_file() && !resolved.is_file() && !on_path(program) {
            return Err(PipelineError::setup(format!(
                "service.engine.command: {program} not found"
            )));
        }
        Ok(External {
            command: e.command.clone(),
            env: e.env.clone(),
            max_output: e.max_output,
            input: e.input,
            plugins: e.plugins_json.clone(),
            target_components: e.target_components.clone(),
        })
    }

    pub fn command_line(&self) -> String {
        self.command.join(" ")
    }

    /// Runs the command for one archive.
    pub async fn run(&self, job: &Job<'_>) -> Result<Value, StageError> {
        let mut input = json!({
            "protocol": 1,
            "request_id": job.request_id,
            "org_id": job.org_id,
            "account": job.account,
            "cluster_id": job.cluster_id,
            "extracted_path": job.extracted_path,
            "plugins": self.plugins,
            "target_components": self.target_components,
            "deadline_s": job.timeout.as_secs_f64(),
        });
        if self.input == ExternalInput::Archive {
            input["archive_path"] = json!(job.archive_path);
        }
        let mut cmd = tokio::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .current_dir(job.work_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            StageError::transient(Stage::Rules, "external_spawn", e.to_string()).caused_by(e)
        })?;
        let pid = child.id();
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let max = self.max_output;
        let work = async {
            // stdin, stdout and stderr are served at once: a child that writes a lot to one stream
            // before reading or writing another must never wait on us (a pipe holds ~64 KiB).
            let feed = async {
                if let Some(mut s) = stdin.take() {
                    // A child that ignores stdin may close it early; that is its business.
                    let _ = s.write_all(input.to_string().as_bytes()).await;
                }
            };
            let read_out = async {
                let mut out = Vec::new();
                if let Some(s) = stdout.as_mut() {
                    s.take(max + 1)
                        .read_to_end(&mut out)
                        .await
                        .map_err(|e| rules_err("bad_engine_output", e.to_string()).caused_by(e))?;
                }
                Ok::<_, StageError>(out)
            };
            let read_err = async {
                let mut err = Vec::new();
                if let Some(s) = stderr.as_mut() {
                    // Keep the first MiB for the error message; drain the rest so the child
                    // never blocks on a full stderr pipe.
                    let _ = s.take(1 << 20).read_to_end(&mut err).await;
                    let _ = tokio::io::copy(s, &mut tokio::io::sink()).await;
                }
                err
            };
            let ((), out, err) = tokio::join!(feed, read_out, read_err);
            let out = out?;
            let status = child
                .wait()
                .await
                .map_err(|e| rules_err("external_failed", e.to_string()).caused_by(e))?;
            Ok::<_, StageError>((status, out, err))
        };
        let outcome = tokio::time::timeout(job.timeout, work).await;
        let (status, out, err) = match outcome {
            Ok(r) => r?,
            Err(_) => {
                // The child is not reaped yet, so its process group still exists: kill the group
                // (the runner and whatever it started), then reap the child.
                kill_group(pid);
                let _ = child.kill().await;
                return Err(rules_err(
                    "external_timeout",
                    format!("no result within {:?}", job.timeout),
                ));
            }
        };
        if !status.success() {
            let tail = String::from_utf8_lossy(&err[err.len().saturating_sub(1024)..]).into_owned();
            return Err(rules_err(
                "external_failed",
                format!("exit {status}: {tail}"),
            ));
        }
        if out.len() as u64 > max {
            return Err(rules_err(
                "bad_engine_output",
                format!("more than {max} bytes of output"),
            ));
        }
        let mut report: Value = serde_json::from_slice(&out)
            .map_err(|e| rules_err("bad_engine_output", format!("not JSON: {e}")).caused_by(e))?;
        let Some(obj) = report.as_object_mut() else {
            return Err(rules_err("bad_engine_output", "not a JSON object"));
        };
        if !obj.contains_key("reports") {
            return Err(rules_err("bad_engine_output", "no \"reports\""));
        }
        for b in BUCKETS {
            obj.entry(*b).or_insert_with(|| json!([]));
        }
        obj.entry("system")
            .or_insert_with(|| json!({"metadata": {}, "hostname": null}));
        obj.entry("analysis_metadata").or_insert_with(|| json!({}));
        Ok(report)
    }
}

fn kill_group(pid: Option<u32>) {
    // Only a real child's group: never 0 or 1, which would reach far more than the child.
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) else {
        return;
    };
    if let Err(e) = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        tracing::debug!(error = %Chain(&e), "the external engine's process group is already gone");
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
