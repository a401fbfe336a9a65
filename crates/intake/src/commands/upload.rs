//! `intake upload FILE`: the customer-side uploader. Streams the file, retries while ingress is
//! unavailable, prints the request id, and with `--wait` follows the payload to its verdict.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use intake_client::track::{TrackRequest, WaitOutcome};
use intake_client::upload::{self, UploadRequest};
use intake_client::ClientError;
use intake_core::request_id::RequestId;

use super::load::parse_duration;

/// Exit codes of `intake upload` other than 0 (uploaded, and with --wait the payload reached
/// `success`), as its --help and the README list them.
pub mod code {
    /// Not uploaded: network or server failure after every attempt, unreadable file.
    pub const FAILED: u8 = 1;
    /// Bad flags or arguments (invalid metadata, request id, service name).
    pub const USAGE: u8 = 2;
    /// Ingress refused the upload (a 4xx answer); its message is printed.
    pub const REFUSED: u8 = 3;
    /// --wait: the payload was rejected.
    pub const REJECTED: u8 = 4;
    /// --wait: processing the payload ended in `error`.
    pub const ERROR: u8 = 5;
    /// --wait: no terminal status before the timeout.
    pub const TIMED_OUT: u8 = 6;
}

/// How a client command ends when it should not end with 0: an exit code and what to tell.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

fn exit(code: u8, message: impl Into<String>) -> anyhow::Error {
    Exit {
        code,
        message: message.into(),
    }
    .into()
}

#[derive(Args, Debug)]
#[command(after_help = "\
Prints the request id on stdout (--json: the whole 202 answer; with --wait, then the final /track \
answer on a second line). The file is streamed, never read whole into memory. A progress bar is \
drawn on stderr for files over 4 MiB when stderr is a terminal.

Exit codes:
  0  uploaded (with --wait: the payload reached success)
  1  not uploaded: network or server failure after --max-attempts, unreadable file
  2  bad flags or arguments (no such file, metadata not a JSON object, bad request id or service)
  3  refused by ingress (4xx); the server's message is printed
  4  --wait: the payload was rejected
  5  --wait: processing ended in error
  6  --wait: no terminal status before the timeout")]
pub struct UploadArgs {
    /// The file to upload.
    pub file: PathBuf,
    /// Base URL of the ingress.
    #[arg(long, default_value = intake_client::DEFAULT_URL)]
    pub url: intake_client::Url,
    /// The file part's content type, which picks the service, e.g.
    /// application/vnd.redhat.advisor.payload+tgz.
    #[arg(long, conflicts_with_all = ["service", "category"])]
    pub content_type: Option<String>,
    /// Build the content type from a service (application/vnd.redhat.<service>.<category>+<ext>,
    /// the suffix from the file's extension: zip, tar, xz, bz2, else tgz).
    #[allow(
        rustdoc::invalid_html_tags,
        reason = "clap help text: <service> is shown as written"
    )]
    #[arg(long, required_unless_present = "content_type")]
    pub service: Option<String>,
    /// Category for --service.
    #[arg(long, default_value = "payload")]
    pub category: String,
    /// The x-rh-identity header value (base64 JSON) as is.
    #[arg(long, conflicts_with_all = ["org_id", "account"])]
    pub identity: Option<String>,
    /// Build the identity from an org id (and optionally --account). Without --identity or
    /// --org-id, no identity header is sent.
    #[arg(long)]
    pub org_id: Option<String>,
    /// Account number for an identity built from --org-id.
    #[arg(long, requires = "org_id")]
    pub account: Option<String>,
    /// Metadata sent with the file: a JSON object, checked before anything is sent.
    #[arg(long)]
    pub metadata: Option<String>,
    /// The request id to use (letters, digits, '-'; at most 64). By default one is generated here,
    /// so a retry after a lost answer is recognised (409) instead of stored twice.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Attempts in all while ingress answers 502/503/504 or cannot be reached. Retry-After is
    /// honoured; otherwise the wait doubles from 1 s.
    #[arg(long, default_value_t = upload::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Print JSON answers instead of the bare request id.
    #[arg(long)]
    pub json: bool,
    /// After the upload, follow /track until a terminal status, for at most this long (default 5m).
    /// Write the time as --wait=30s.
    #[arg(long, value_parser = parse_duration, num_args = 0..=1, require_equals = true,
          default_missing_value = "5m")]
    pub wait: Option<Duration>,
    /// Time between two /track calls while waiting.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub poll_interval: Duration,
    /// Never draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Time allowed to connect to the ingress.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Longest time without progress (no body bytes taken, or no answer once the body is sent)
    /// before the attempt is abandoned and retried.
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub idle_timeout: Duration,
}

pub async fn run(args: UploadArgs) -> anyhow::Result<()> {
    let request = request(&args)?;
    let client =
        upload::http_client(args.connect_timeout).map_err(|e| exit(code::FAILED, e.to_string()))?;
    let bar = progress(&args);
    let outcome = upload::upload(&client, &request, bar.as_ref()).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let accepted = outcome.map_err(|e| match e {
        ClientError::Refused(r) => exit(code::REFUSED, format!("ingress refused the upload: {r}")),
        ClientError::BadArgument(m) => exit(code::USAGE, m),
        other => exit(code::FAILED, format!("upload failed: {other}")),
    })?;
    if args.json {
        println!("{}", accepted.body);
    } else {
        println!("{}", accepted.request_id);
    }
    if accepted.status == 409 {
        tracing::info!(request_id = %accepted.request_id, "already stored by an earlier attempt");
    }
    let Some(timeout) = args.wait else {
        return Ok(());
    };
    let track = TrackRequest {
        url: args.url.clone(),
        request_id: accepted.request_id.clone(),
        identity: request.identity.clone(),
        timeout,
        interval: args.poll_interval,
    };
    let outcome = intake_client::track::wait(&client, &track)
        .await
        .map_err(|e| match e {
            ClientError::Refused(r) => exit(code::REFUSED, format!("/track refused: {r}")),
            other => exit(code::FAILED, format!("cannot follow the payload: {other}")),
        })?;
    let id = &accepted.request_id;
    match outcome {
        WaitOutcome::Terminal(t) => {
            if args.json {
                println!("{}", t.body);
            }
            let told = format!(
                "payload {id}: {} from {}: {}",
                t.status, t.service, t.status_msg
            );
            match t.status.as_str() {
                "success" => {
                    if !args.json {
                        eprintln!("{told}");
                    }
                    Ok(())
                }
                "rejected" => Err(exit(code::REJECTED, told)),
                _ => Err(exit(code::ERROR, told)),
            }
        }
        WaitOutcome::TimedOut(last) => {
            let seen = last
                .map(|t| format!("last status {} from {}", t.status, t.service))
                .unwrap_or_else(|| "not tracked yet".into());
            Err(exit(
                code::TIMED_OUT,
                format!("payload {id}: no verdict within {timeout:?} ({seen})"),
            ))
        }
    }
}

/// Checks the arguments into a request; every problem is a usage error (exit 2).
fn request(args: &UploadArgs) -> anyhow::Result<UploadRequest> {
    let content_type = match (&args.content_type, &args.service) {
        (Some(ct), _) => ct.clone(),
        (None, Some(service)) => {
            let ct = upload::content_type_for(service, &args.category, &args.file);
            match intake_core::content_type::parse(&ct) {
                Ok(st) if st.service == *service && st.category == args.category => ct,
                _ => {
                    return Err(exit(
                        code::USAGE,
                        format!(
                            "service {service:?} / category {:?}: use lowercase letters, digits and '-'",
                            args.category
                        ),
                    ))
                }
            }
        }
        (None, None) => return Err(exit(code::USAGE, "give --content-type or --service")),
    };
    let metadata = args
        .metadata
        .as_deref()
        .map(upload::check_metadata)
        .transpose()
        .map_err(|e| exit(code::USAGE, e.to_string()))?;
    let request_id = match &args.request_id {
        Some(text) => RequestId::parse(text)
            .map_err(|e| exit(code::USAGE, format!("--request-id: {e}")))?
            .to_string(),
        None => RequestId::generate().to_string(),
    };
    let identity = match (&args.identity, &args.org_id) {
        (Some(raw), _) => Some(raw.clone()),
        (None, Some(org)) => Some(intake_core::identity::Identity::encode(
            args.account.as_deref().unwrap_or(""),
            org,
        )),
        (None, None) => None,
    };
    if !args.file.is_file() {
        return Err(exit(
            code::USAGE,
            format!("{} is not a readable file", args.file.display()),
        ));
    }
    Ok(UploadRequest {
        url: args.url.clone(),
        file: args.file.clone(),
        content_type,
        identity,
        metadata,
        request_id,
        max_attempts: args.max_attempts,
        idle_timeout: args.idle_timeout,
    })
}

/// A progress bar only for big files, and only when someone is watching stderr.
fn progress(args: &UploadArgs) -> Option<upload::ProgressBar> {
    if args.no_progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let len = std::fs::metadata(&args.file).ok()?.len();
    (len >= upload::PROGRESS_THRESHOLD).then(|| upload::progress_bar(len))
}
