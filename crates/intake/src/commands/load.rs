//! `intake load`: a bounded load run against a running ingress, summed up for people or, with
//! `--json`, for benchmark scripts.

use std::time::Duration;

use clap::{Args, ValueEnum};
use intake_client::load::{LoadPlan, PayloadKind, Stop};
use intake_client::size::SizeSpec;

/// Run length when neither `--count` nor `--duration` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
#[command(after_help = "\
The run stops by itself: after --count uploads, or when --duration has passed (default 10s; \
uploads in flight then finish). Exit status: 0 when the run completed and at least one upload \
was accepted, 1 when none was (the summary is printed all the same), 2 for bad flags.")]
pub struct LoadArgs {
    /// Base URL of the ingress.
    #[arg(long, default_value = intake_client::DEFAULT_URL)]
    pub url: intake_client::Url,
    /// Uploads in flight at once (one pooled connection each).
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,
    /// File-part size: fixed (`10KiB`, `1MiB`, `2048`) or uniform over a range (`1KiB..1MiB`).
    #[arg(long, default_value = "10KiB")]
    pub size: SizeSpec,
    /// What a fixed-size file part holds: a well-formed gzipped tar that validators accept (the
    /// whole round-trip runs), or random bytes that they reject. Ranges always send random bytes.
    #[arg(long, value_enum, default_value_t = Payload::Archive)]
    pub payload: Payload,
    /// Stop starting uploads after this long (`500ms`, `30s`, `5m`).
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// Stop after this many uploads.
    #[arg(long)]
    pub count: Option<u64>,
    /// Services the uploads cycle through (content type application/vnd.redhat.<service>.load+tgz).
    #[allow(
        rustdoc::invalid_html_tags,
        reason = "clap help text: <service> is shown as written"
    )]
    #[arg(long, value_delimiter = ',', default_value = "testareno")]
    pub services: Vec<String>,
    /// Org id of the identity sent with each upload.
    #[arg(long, default_value = "54321")]
    pub org_id: String,
    /// Account number of that identity (none by default: an org-only tenant).
    #[arg(long, default_value = "")]
    pub account: String,
    /// A ready-made `x-rh-identity` header value instead of --org-id/--account.
    #[arg(long, conflicts_with_all = ["org_id", "account"])]
    pub identity: Option<String>,
    /// Timeout of each upload, from connect to the end of the answer.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A progress line on stderr each second (sent, accepted, failed, answers per second); on by
    /// default when stderr is a terminal.
    #[arg(long)]
    pub progress: bool,
}

/// Prints a progress line each second until cancelled.
async fn report_progress(progress: std::sync::Arc<intake_client::load::Progress>) {
    use std::io::Write;
    let started = std::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut answered_before = 0;
    loop {
        ticker.tick().await;
        let (sent, accepted, failed) = progress.counts();
        let answered = accepted + failed;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{:>4}s  sent {sent}  accepted {accepted}  failed {failed}  rate {}/s",
            started.elapsed().as_secs(),
            answered - answered_before
        );
        answered_before = answered;
    }
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    intake_core::config::units::parse_duration(text)
}

#[allow(
    clippy::disallowed_methods,
    reason = "the progress ticker's JoinHandle is kept and aborted when the run ends"
)]
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let stop = match (args.count, args.duration) {
        (Some(n), _) => Stop::Count(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(DEFAULT_DURATION),
    };
    let identity = args
        .identity
        .unwrap_or_else(|| intake_core::identity::Identity::encode(&args.account, &args.org_id));
    let plan = LoadPlan {
        url: args.url,
        concurrency: args.concurrency,
        size: args.size,
        payload: match args.payload {
            Payload::Archive => PayloadKind::Archive,
            Payload::Random => PayloadKind::Random,
        },
        stop,
        services: args.services,
        identity,
        request_timeout: args.timeout,
    };
    let progress = std::sync::Arc::new(intake_client::load::Progress::default());
    let ticker = (args.progress || std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| tokio::spawn(report_progress(progress.clone())));
    let outcome = intake_client::load::run_with_progress(&plan, progress).await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let report = outcome.map_err(|e| match e {
        intake_client::ClientError::BadArgument(m) => super::upload::Exit {
            code: super::upload::code::USAGE,
            message: m,
        }
        .into(),
        other => anyhow::Error::new(other).context("load run failed"),
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    if report.accepted == 0 && report.requests > 0 {
        anyhow::bail!("no upload was accepted");
    }
    Ok(())
}

/// `--payload`: what a fixed-size file part holds.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A well-formed gzipped tar of about the size (validators accept it).
    Archive,
    /// Random bytes (validators reject them).
    Random,
}
