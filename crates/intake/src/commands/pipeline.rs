//! `intake pipeline` (spec pipeline.md §2): runs the rules pipeline, or with a subcommand checks a
//! configuration (`check`), runs the engine on a local archive (`process`) or replays dead
//! letters (`replay`). Configuration problems exit 2 (see [`exit_code`]).

use std::path::Path;

use anyhow::Context;
use intake_pipeline::{OutputFormat, PipelineConfig, PipelineError, ReplayOptions};
use serde_json::json;

use crate::cli::{PipelineArgs, PipelineCommand, ProcessFormat};
use crate::components::{self, Settings};

/// `check` found problems; they were printed already.
#[derive(Debug)]
pub struct CheckFailed;

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the pipeline configuration has problems (listed above)")
    }
}

impl std::error::Error for CheckFailed {}

/// The exit code a failed `intake pipeline` command asks for: 2 for configuration errors (a bad
/// YAML file, rule set or external command, spec §2), `None` for the default.
pub fn exit_code(error: &anyhow::Error) -> Option<u8> {
    if error.downcast_ref::<CheckFailed>().is_some() {
        return Some(2);
    }
    error
        .downcast_ref::<PipelineError>()
        .filter(|e| e.exit_code() == 2)
        .map(|_| 2)
}

pub async fn run(settings: Settings, args: PipelineArgs) -> anyhow::Result<()> {
    if args.print_default_config {
        print!("{}", intake_pipeline::default_config_yaml());
        return Ok(());
    }
    let path = args.config.as_deref();
    match args.command {
        None => serve(settings, path).await,
        Some(PipelineCommand::Check) => check(&settings, path),
        Some(PipelineCommand::Process {
            archive,
            org_id,
            format,
        }) => process(&settings, path, &archive, &org_id, format).await,
        Some(PipelineCommand::Replay {
            reason,
            class,
            since,
            limit,
            dry_run,
        }) => {
            let options = ReplayOptions {
                reason,
                class,
                since,
                limit,
                dry_run,
                idle: None,
            };
            replay(&settings, path, &options).await
        }
    }
}

/// The configuration named (`--config`, `PIPELINE_CONFIG`), else the built-in default; errors
/// keep their type so that they exit 2.
fn load(settings: &Settings, path: Option<&Path>) -> anyhow::Result<PipelineConfig> {
    let loaded = match path {
        Some(p) => intake_pipeline::load_config(p, &settings.env),
        None => {
            let cwd = std::env::current_dir().context("current directory")?;
            intake_pipeline::load_config_str(
                intake_pipeline::default_config_yaml(),
                &cwd,
                &settings.env,
            )
        }
    };
    Ok(loaded.map_err(PipelineError::from)?)
}

/// `intake pipeline`: the service, until SIGTERM/SIGINT.
async fn serve(settings: Settings, path: Option<&Path>) -> anyhow::Result<()> {
    let config = load(&settings, path)?;
    let bus_config = settings.bus()?;
    let bus = components::open_bus(&bus_config).await?;
    let storage_config = settings.storage()?;
    let public_url = settings.ingress()?.public_url;
    let storage = components::open_storage(&storage_config, &public_url).await?;
    let service = intake_core::config::PipelineServiceConfig::from_env(&settings.env)?;
    let cancel = components::cancel_on_signal();
    let mut tasks = Vec::new();
    if let Some(listen) = &service.listen {
        // Registered on first use: make them exist before the first scrape.
        intake_pipeline::metrics::get();
        tasks.push(
            crate::health_listener::spawn(
                "PIPELINE_LISTEN",
                listen,
                prometheus::default_registry(),
                bus.clone(),
                cancel.clone(),
                settings.general.shutdown_grace,
            )
            .await?,
        );
    }
    tasks.push(components::spawn_pipeline(
        &settings,
        config,
        bus_config,
        bus,
        Some(storage.store),
        cancel.clone(),
    ));
    components::join_all(tasks, cancel).await
}

/// `intake pipeline check`: every problem on stderr and exit 2, or the component graph and 0.
fn check(settings: &Settings, path: Option<&Path>) -> anyhow::Result<()> {
    let name = path.map_or_else(
        || "the built-in default".to_owned(),
        |p| p.display().to_string(),
    );
    let checked = load(settings, path)
        .map_err(|e| format!("{e:#}"))
        .and_then(|c| with_buses(settings, &c));
    match checked {
        Ok(description) => {
            println!("{name}: ok");
            print!("{description}");
            Ok(())
        }
        Err(problems) => {
            eprintln!("{name}:");
            eprintln!("{problems}");
            Err(CheckFailed.into())
        }
    }
}

/// The pipeline's description, or its problems as text.
fn with_buses(settings: &Settings, config: &PipelineConfig) -> Result<String, String> {
    let bus_config = settings.bus().map_err(|e| e.to_string())?;
    intake_pipeline::check_with_bus(config, &bus_config).map_err(|e| e.to_string())
}

/// `intake pipeline process ARCHIVE`: the report, or the `ccx` message, as JSON on stdout.
async fn process(
    settings: &Settings,
    path: Option<&Path>,
    archive: &Path,
    org_id: &str,
    format: ProcessFormat,
) -> anyhow::Result<()> {
    let config = load(settings, path)?;
    let format = match format {
        ProcessFormat::Report => OutputFormat::Report,
        ProcessFormat::Ccx => OutputFormat::Ccx,
    };
    let out = intake_pipeline::process_file(&config, archive, org_id, format)
        .await
        .with_context(|| format!("processing {}", archive.display()))?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `intake pipeline replay`: one JSON line per dead letter replayed (or listed), then a summary
/// on stderr.
async fn replay(
    settings: &Settings,
    path: Option<&Path>,
    options: &ReplayOptions,
) -> anyhow::Result<()> {
    let config = load(settings, path)?;
    let bus_config = settings.bus()?;
    let bus = components::open_bus(&bus_config).await?;
    let replayed = intake_pipeline::replay(&config, &bus_config, bus, options).await?;
    for r in &replayed {
        println!(
            "{}",
            json!({
                "offset": r.offset,
                "source_topic": r.source_topic,
                "reason": r.reason,
                "class": r.class,
                "request_id": r.request_id,
            })
        );
    }
    let verb = if options.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    eprintln!("{verb} {} dead letters", replayed.len());
    Ok(())
}
