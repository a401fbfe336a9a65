//! `serve`, `ingress` and `validator`: long-running components until SIGTERM/SIGINT.

use intake_core::config::{ValidatorMode, ValidatorSource};

use crate::cli::{Mode, ServeArgs, ValidatorArgs};
use crate::components::{self, Settings};

/// `intake serve`: every component in one process on the configured engines.
pub async fn serve(settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    let mut ingress = settings.ingress()?;
    let bus_config = settings.bus()?;
    let storage_config = settings.storage()?;
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
            &settings,
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
    let task = components::spawn_validator(config, bus_config, bus, cancel.clone());
    components::join_all(vec![task], cancel).await
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
            let task =
                components::spawn_tracker(&settings, config, bus_config, bus, cancel.clone());
            components::join_all(vec![task], cancel).await
        }
    }
}
