//! The message flow of a configuration as text, for `intake pipeline check`: what is consumed,
//! how archives are fetched and judged, where results, dead letters and statuses go, and on
//! which bus each section talks.

use std::fmt::Write;

use intake_core::config::BusConfig;

use crate::config::{DownloaderKind, EngineKind, Format, PipelineConfig, WatcherConfig};
use crate::section_bus::SectionBuses;

/// One line per stage, topics as wire names.
pub fn flow(config: &PipelineConfig, bus_config: &BusConfig, buses: &SectionBuses) -> String {
    let topic = |t: &str| bus_config.topic(t);
    let mut out = String::new();
    let c = &config.consumer;
    let topics: Vec<String> = c.topics.iter().map(|t| topic(t)).collect();
    let services = if c.services.is_empty() {
        "every service".to_owned()
    } else {
        c.services.join(", ")
    };
    let _ = writeln!(
        out,
        "consumer    {} (group {}, {services}, {} workers, {} in flight) on {}",
        topics.join(", "),
        c.group_id,
        c.workers,
        c.max_in_flight,
        buses.consumer.describe()
    );
    let d = &config.downloader;
    let _ = match d.kind {
        DownloaderKind::Http => write!(
            out,
            "downloader  http ({} URL patterns{}), at most {} bytes",
            d.allowed_urls.len(),
            if d.allow_unsafe_links {
                ", unsafe links allowed"
            } else {
                ""
            },
            d.max_archive_size
        ),
        DownloaderKind::Storage => write!(
            out,
            "downloader  storage (bucket {}), at most {} bytes",
            d.bucket, d.max_archive_size
        ),
    };
    let in_memory = match (config.engine.kind, d.max_in_memory) {
        (EngineKind::External, _) => {
            "; every archive through a work directory (external engine)".to_owned()
        }
        (_, 0) => "; every archive through a work directory".to_owned(),
        (_, bound) => format!("; up to {bound} bytes in memory"),
    };
    let _ = writeln!(out, "{in_memory}");
    let e = &config.engine;
    let _ = match e.kind {
        EngineKind::Rules => writeln!(
            out,
            "engine      rules ({}), timeout {:?}",
            config.plugins.packages.join(", "),
            e.timeout
        ),
        EngineKind::External => writeln!(
            out,
            "engine      external ({}), timeout {:?}",
            e.command.join(" "),
            e.timeout
        ),
    };
    let format = match config.publisher.format {
        Format::Ccx => "ccx",
        Format::Insights => "insights",
    };
    let _ = writeln!(
        out,
        "publisher   {format} to {} on {}",
        topic(&config.publisher.topic),
        buses.publisher.describe()
    );
    let _ = writeln!(
        out,
        "dead_letter {} on {}",
        topic(&config.dead_letter.topic),
        buses.dead_letter.describe()
    );
    for w in &config.watchers {
        let _ = match w {
            WatcherConfig::ClusterId { on_missing } => {
                writeln!(out, "watcher     cluster_id (on_missing: {on_missing:?})")
            }
            WatcherConfig::Prometheus { listen } => {
                writeln!(out, "watcher     prometheus on {listen}")
            }
            WatcherConfig::PayloadStatus {
                topic: t,
                service_name,
            } => writeln!(
                out,
                "watcher     payload_status to {} as {service_name}",
                topic(t)
            ),
        };
    }
    out
}
