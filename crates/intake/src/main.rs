//! # intake
//!
//! One binary for the whole payload platform. The path of a payload through intake:
//!
//! ```text
//!  client ──POST multipart──▶ ingress ──stream──▶ [quarantine bucket]
//!                               │ announce (acked before the 202)
//!                               ▼
//!            platform.upload.<service> / platform.upload.announce ──▶ validator
//!                                                                      │ verdict
//!                               ┌──────────── platform.upload.validation ◀┘
//!                               ▼
//!                  ingress (validation consumer)
//!        success: quarantine → perm, then platform.upload.available ──▶ rules pipeline ──▶ reports
//!        failure: quarantine → reject
//!  every step ──▶ platform.payload-status ──▶ tracker (SQL) ──▶ REST API + web page
//! ```
//!
//! Each part runs alone (`intake ingress`, `intake validator`, …) or all together (`intake serve`).
//! Components never call each other directly: they talk over the bus or HTTP, exactly as they would
//! in separate processes, so `serve` is only composition. Configuration comes from the environment
//! (see README.md).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI's answers and reports are its terminal output"
)]

/// jemalloc: under steady load glibc's malloc spent ~10 % of the server's CPU (chunk consolidation
/// on the threads that hand buffers to each other); BENCHMARKS.md has the comparison.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod cli;
mod clowder;
mod commands;
mod components;
mod health_listener;
mod logging;
mod man;
mod version;

use intake_core::config::{process_env, GeneralConfig};

use crate::cli::{Cli, Command};
use crate::components::Settings;

fn main() -> std::process::ExitCode {
    let matches = cli::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Man = cli.command {
        // Needs no configuration either.
        use std::io::Write;
        let _ = std::io::stdout()
            .lock()
            .write_all(man::render(&cli::command()).as_bytes());
        return std::process::ExitCode::SUCCESS;
    }
    if let Command::Completions { shell } = cli.command {
        // Needs no configuration: it must work whatever the environment holds.
        let mut command = cli::command();
        // Into memory first (a few KiB): the generator panics on a closed pipe (`| head`).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "intake", &mut script);
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(&script);
        return std::process::ExitCode::SUCCESS;
    }
    let layout = match cli.command {
        Command::Serve(_) => intake_core::config::clowder::Layout::Serve,
        _ => intake_core::config::clowder::Layout::OnePart,
    };
    let (env, topic_names) = match clowder::apply(process_env(), layout) {
        Ok(applied) => applied,
        Err(e) => {
            eprintln!("intake: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let general = match GeneralConfig::from_env(&env) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("intake: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let app = match &cli.command {
        Command::Ingress => "intake-ingress",
        Command::Validator(_) => "intake-validator",
        Command::Tracker { .. } => "intake-tracker",
        Command::Pipeline(_) => "intake-pipeline",
        _ => "intake",
    };
    logging::init(&general, app);
    let log_format = general.log_format;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("intake: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let settings = Settings {
        env,
        general,
        topic_names,
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::run::serve(settings, args).await,
            Command::Ingress => commands::run::ingress(settings).await,
            Command::Validator(args) => commands::run::validator(settings, args).await,
            Command::Tracker { command } => commands::run::tracker(settings, command).await,
            Command::Pipeline(args) => commands::pipeline::run(settings, args).await,
            Command::Topics { command } => commands::topics::run(settings, command).await,
            Command::Upload(args) => commands::upload::run(args).await,
            Command::Load(args) => commands::load::run(args).await,
            Command::Config => commands::config::run(&settings),
            Command::Completions { .. } | Command::Man => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The client commands end with exit codes of their own, documented in their --help.
            if let Some(exit) = e.downcast_ref::<commands::upload::Exit>() {
                eprintln!("intake: {exit}");
                return std::process::ExitCode::from(exit.code);
            }
            report(log_format, &e);
            if e.downcast_ref::<intake_core::config::ConfigError>()
                .is_some()
                || commands::pipeline::exit_code(&e) == Some(2)
            {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// Prints why intake stopped, once: as a JSON log line with `LOG_FORMAT=json` (what a log collector
/// reads), else as one plain `intake: …` line (a text log line would only repeat it).
fn report(format: intake_core::config::LogFormat, error: &anyhow::Error) {
    // Each cause once: intake's errors name their cause in their own message already.
    let line = intake_core::Chain(error.as_ref()).to_string();
    match format {
        intake_core::config::LogFormat::Json => {
            tracing::error!(error = line, "intake stopped");
        }
        intake_core::config::LogFormat::Text => eprintln!("intake: {line}"),
    }
}
