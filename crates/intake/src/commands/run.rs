//! `serve`, `ingress` and `validator`: long-running components until SIGTERM/SIGINT.

use intake_core::config::{
    BusDriver, EnvMap, StorageDriver, TrackerConfig, ValidatorMode, ValidatorSource,
};

use crate::cli::{Mode, ServeArgs, ValidatorArgs};
use crate::components::{self, Settings};

/// Listeners of `serve` unless `INGRESS_LISTEN` / `TRACKER_LISTEN` say otherwise: `serve` is what a
/// person runs on their own machine, where the upload API should not be open to the network.
const SERVE_LISTEN_DEFAULTS: [(&str, &str); 2] = [
    ("INGRESS_LISTEN", "127.0.0.1:8080"),
    ("TRACKER_LISTEN", "127.0.0.1:8081"),
];

/// Puts `serve`'s loopback listeners into `env` where the variables are unset or empty.
fn serve_listen_defaults(env: &mut EnvMap) {
    for (name, default) in SERVE_LISTEN_DEFAULTS {
        if env.get(name).is_none_or(|v| v.trim().is_empty()) {
            env.insert(name.to_owned(), default.to_owned());
        }
    }
}

/// Settings for a tracker in which identity is not required when local mode applies
/// (`TRACKER_LOCAL_MODE`), with a log line saying so either way it matters.
fn tracker_settings(
    settings: &Settings,
    tracker: &TrackerConfig,
    embedded_default: bool,
) -> Settings {
    let local = tracker.local_mode_applies(embedded_default);
    let mut general = settings.general.clone();
    if local {
        general.identity_required = false;
        if intake_core::config::is_loopback(&tracker.listen) {
            tracing::info!(listen = %tracker.listen, "tracker local mode: the page and API show every payload without x-rh-identity (TRACKER_LOCAL_MODE=false turns it off)");
        } else {
            tracing::warn!(listen = %tracker.listen, "tracker local mode on a non-loopback address: anyone who reaches it sees every payload (TRACKER_LOCAL_MODE)");
        }
    }
    Settings {
        env: settings.env.clone(),
        general,
        topic_names: settings.topic_names.clone(),
    }
}

/// `intake serve`: every component in one process on the configured engines.
pub async fn serve(mut settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    serve_listen_defaults(&mut settings.env);
    let mut ingress = settings.ingress()?;
    let bus_config = settings.bus()?;
    let storage_config = settings.storage()?;
    let embedded_default = bus_config.driver == BusDriver::Embedded
        && storage_config.driver == StorageDriver::LocalDisk;
    let mut validator = settings.validator()?;
    // The all-in-one validator covers every service ingress accepts, in check mode, unless told
    // otherwise through VALIDATOR_* variables.
    if !settings.env.contains_key("VALIDATOR_SERVICES") {
        validator.services = ingress.valid_services.clone();
    }
    if ingress.announce_mode == intake_core::config::AnnounceMode::Announce {
        validator.source = ValidatorSource::Announce;
    }
    let tracker = settings.tracker()?;
    let pipeline = settings.pipeline(args.pipeline_config.as_deref())?;
    let listener = components::bind_ingress(&mut ingress).await?;
    let storage = components::open_storage(&storage_config, &ingress.public_url).await?;
    let bus = components::open_bus(&bus_config).await?;
    let mut services = ingress.valid_services.clone();
    services.extend(validator.services.iter().cloned());
    let topics = intake_bus::topics::topic_names(&bus_config, &services);
    components::create_topics_at_start(bus.as_ref(), &bus_config, topics).await?;
    let cancel = components::cancel_on_signal();
    let store = storage.store.clone();
    let tasks = vec![
        components::spawn_ingress(
            &settings,
            ingress,
            listener,
            bus_config.clone(),
            storage,
            bus.clone(),
            cancel.clone(),
            true,
        )?,
        components::spawn_validator(validator, bus_config.clone(), bus.clone(), cancel.clone()),
        components::spawn_tracker(
            &tracker_settings(&settings, &tracker, embedded_default),
            tracker,
            bus_config.clone(),
            bus.clone(),
            cancel.clone(),
        ),
        components::spawn_pipeline(
            &settings,
            pipeline,
            bus_config,
            bus,
            Some(store),
            cancel.clone(),
        ),
    ];
    components::join_all(tasks, cancel).await
}

/// `intake ingress`.
pub async fn ingress(settings: Settings) -> anyhow::Result<()> {
    let mut ingress = settings.ingress()?;
    let bus_config = settings.bus()?;
    let storage_config = settings.storage()?;
    let listener = components::bind_ingress(&mut ingress).await?;
    let storage = components::open_storage(&storage_config, &ingress.public_url).await?;
    let bus = components::open_bus(&bus_config).await?;
    let topics = intake_bus::topics::topic_names(&bus_config, &ingress.valid_services);
    components::create_topics_at_start(bus.as_ref(), &bus_config, topics).await?;
    let cancel = components::cancel_on_signal();
    let task = components::spawn_ingress(
        &settings,
        ingress,
        listener,
        bus_config,
        storage,
        bus,
        cancel.clone(),
        false,
    )?;
    components::join_all(vec![task], cancel).await
}

/// `intake validator`.
pub async fn validator(settings: Settings, args: ValidatorArgs) -> anyhow::Result<()> {
    let mut config = settings.validator()?;
    if let Some(mode) = args.mode {
        config.mode = match mode {
            Mode::Check => ValidatorMode::Check,
            Mode::PassAll => ValidatorMode::PassAll,
            Mode::FailAll => ValidatorMode::FailAll,
        };
    }
    if let Some(services) = args.services {
        config.services = intake_core::config::units::split_list(&services);
        settings.refuse_own_topics("--services", &config.services)?;
    }
    let bus_config = settings.bus()?;
    let bus = components::open_bus(&bus_config).await?;
    let mut topics = intake_validator::source_topics(&config, &bus_config);
    topics.push(bus_config.topic(&bus_config.topics.validation));
    topics.push(bus_config.topic(&bus_config.topics.payload_status));
    components::create_topics_at_start(bus.as_ref(), &bus_config, topics).await?;
    let cancel = components::cancel_on_signal();
    let mut tasks = Vec::new();
    if let Some(listen) = config.listen.clone() {
        tasks.push(
            crate::health_listener::spawn(
                "VALIDATOR_LISTEN",
                &listen,
                intake_validator::metrics::registry(),
                bus.clone(),
                cancel.clone(),
                settings.general.shutdown_grace,
            )
            .await?,
        );
    }
    tasks.push(components::spawn_validator(
        config,
        bus_config,
        bus,
        cancel.clone(),
    ));
    components::join_all(tasks, cancel).await
}

/// `intake tracker` and `intake tracker mock`.
pub async fn tracker(
    settings: Settings,
    command: Option<crate::cli::TrackerCommand>,
) -> anyhow::Result<()> {
    let bus_config = settings.bus()?;
    let bus = components::open_bus(&bus_config).await?;
    let mut topics = vec![bus_config.topic(&bus_config.topics.payload_status)];
    if command.is_none() {
        topics.push(bus_config.topic(&bus_config.topics.payload_status_dlq));
    }
    components::create_topics_at_start(bus.as_ref(), &bus_config, topics).await?;
    match command {
        Some(crate::cli::TrackerCommand::Mock { payloads, rate }) => {
            let report = intake_tracker::mock(bus, &bus_config, payloads, rate).await?;
            println!(
                "sent {} statuses for {} payloads in {:?}",
                report.statuses, report.payloads, report.elapsed
            );
            Ok(())
        }
        None => {
            let config = settings.tracker()?;
            let cancel = components::cancel_on_signal();
            let task = components::spawn_tracker(
                &tracker_settings(&settings, &config, false),
                config,
                bus_config,
                bus,
                cancel.clone(),
            );
            components::join_all(vec![task], cancel).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_listens_on_loopback_unless_told_otherwise() {
        let mut env = EnvMap::new();
        env.insert("TRACKER_LISTEN".into(), "0.0.0.0:9000".into());
        env.insert("INGRESS_LISTEN".into(), " ".into());
        serve_listen_defaults(&mut env);
        assert_eq!(env["INGRESS_LISTEN"], "127.0.0.1:8080");
        assert_eq!(env["TRACKER_LISTEN"], "0.0.0.0:9000");
    }
}
