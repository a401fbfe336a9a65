//! The command line. Configuration is read from the environment (spec/README.md); flags only pick
//! what to run and override a few settings where the seeds' tools had flags.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "intake",
    version,
    about = "Payload ingress, validation, tracking and rules, in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Everything at once on the configured engines (by default: local disk, embedded bus, SQLite):
    /// ingress, the reference validator for every allowed service, the tracker and the pipeline.
    Serve(ServeArgs),
    /// The upload API and the consumer of validation responses.
    Ingress,
    /// The reference validating service.
    Validator(ValidatorArgs),
    /// The payload tracker (status ingest, REST API, web page), or `tracker mock` to send statuses.
    Tracker {
        #[command(subcommand)]
        command: Option<TrackerCommand>,
    },
    /// The rules pipeline.
    Pipeline(PipelineArgs),
    /// Bus topics: create, list, tail.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Upload one file to a running ingress, as a customer's machine does; optionally wait for its
    /// verdict. Exit codes are listed in `intake upload --help`.
    Upload(crate::commands::upload::UploadArgs),
    /// Send uploads to a running ingress as fast as it takes them and report throughput, latency
    /// and answers.
    Load(crate::commands::load::LoadArgs),
    /// Print the settings each part would run with (environment and defaults), secrets masked.
    Config,
    /// Print the manual page (roff) for the whole command line: `intake man | man -l -`.
    Man,
    /// Print a shell completion script, e.g. `intake completions bash > ~/.local/share/bash-completion/completions/intake`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// The pipeline configuration (YAML) to run instead of the built-in default.
    #[arg(long, env = "PIPELINE_CONFIG")]
    pub pipeline_config: Option<std::path::PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Download and inspect each archive.
    Check,
    /// Answer success without looking (the seeds' test consumer).
    PassAll,
    /// Answer failure without looking.
    FailAll,
}

#[derive(Args, Debug)]
pub struct ValidatorArgs {
    /// Overrides VALIDATOR_MODE.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Overrides VALIDATOR_SERVICES (comma-separated).
    #[arg(long)]
    pub services: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Print a topic's messages as JSON lines (topic, partition, offset, key, headers, value).
    Tail {
        /// Topic name without the KAFKA_TOPIC_PREFIX.
        topic: String,
        /// Start at the oldest retained message instead of new ones.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Stop once the end of every partition is reached (like kcat's -e).
        #[arg(long, short = 'e')]
        until_end: bool,
    },
    /// Create every topic the configuration uses (idempotent).
    Create {
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication: i16,
        /// Services whose per-service topics to create (default: INGRESS_VALID_SERVICES).
        #[arg(long)]
        services: Option<String>,
    },
    /// List the bus's topics.
    List,
}

#[derive(Subcommand, Debug)]
pub enum TrackerCommand {
    /// Publish realistic mock payload journeys on the status topic.
    Mock {
        #[arg(long, default_value_t = 10)]
        payloads: usize,
        /// Statuses per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
    },
}

/// `intake pipeline [check|process|replay]` (spec pipeline.md §2): without a subcommand, runs the
/// pipeline until SIGTERM/SIGINT.
#[derive(Args, Debug)]
pub struct PipelineArgs {
    #[command(subcommand)]
    pub command: Option<PipelineCommand>,
    /// The pipeline configuration (YAML); env PIPELINE_CONFIG. Without it, the built-in default.
    #[arg(long, env = "PIPELINE_CONFIG", global = true)]
    pub config: Option<std::path::PathBuf>,
    /// Print the built-in default configuration and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Validate the configuration and rule files and print the component graph (exit 0, or 2).
    Check,
    /// Extraction and rules on a local archive, no bus; prints the result as JSON.
    Process {
        /// The archive (tar, optionally gzip/xz/bzip2, or zip).
        archive: std::path::PathBuf,
        /// The org id the output names (`ccx` needs a decimal in 1..=4294967295).
        #[arg(long, default_value = "1")]
        org_id: String,
        /// `report`: the report itself; `ccx`: the message the `ccx` publisher would send.
        #[arg(long, value_enum, default_value_t = ProcessFormat::Report)]
        format: ProcessFormat,
    },
    /// Produce dead letters again to their source topic (spec pipeline.md §11).
    Replay {
        /// Only dead letters with this reason code (`intake-error-reason`).
        #[arg(long)]
        reason: Option<String>,
        /// Only dead letters of this class (`permanent`, `transient`).
        #[arg(long)]
        class: Option<String>,
        /// Only dead letters written at or after this RFC3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Replay at most this many.
        #[arg(long, alias = "count")]
        limit: Option<usize>,
        /// List what would be replayed without producing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessFormat {
    Report,
    Ccx,
}

/// The command line as clap sees it, with what `#[derive]` cannot say: the version with the commit
/// and build date, and for each service the environment variables it reads (`--help`).
pub fn command() -> clap::Command {
    let mut command = <Cli as clap::CommandFactory>::command().version(crate::version::current());
    for service in ["serve", "ingress", "validator", "tracker", "pipeline"] {
        let variables = intake_core::config::component_variables(service);
        let text = format!(
            "Environment variables read (README.md, Configuration):\n  {}",
            variables.join("\n  ")
        );
        command = command.mut_subcommand(service, |sub| sub.after_help(text));
    }
    command
}
