//! `intake topics tail|create|list` on every bus driver (the seeds used kafka-console-consumer and a
//! create_topics step).

use std::io::Write;

use intake_bus::TopicSpec;

use crate::cli::TopicsCommand;
use crate::components::{self, Settings};

pub async fn run(settings: Settings, command: TopicsCommand) -> anyhow::Result<()> {
    let bus_config = settings.bus()?;
    let bus = components::open_bus(&bus_config).await?;
    match command {
        TopicsCommand::Tail {
            topic,
            from_beginning,
            count,
            until_end,
        } => {
            let wire = bus_config.topic(&topic);
            let stdout = std::io::stdout();
            let print = |record: intake_bus::TailRecord| {
                let mut out = stdout.lock();
                // A closed pipe (e.g. `| head`) ends the command quietly.
                if writeln!(out, "{}", record.to_json_line())
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    std::process::exit(0);
                }
            };
            let tail = async {
                if until_end {
                    intake_bus::tail_until_end(bus.as_ref(), &wire, from_beginning, count, print)
                        .await
                } else {
                    intake_bus::tail(bus.as_ref(), &wire, from_beginning, count, print).await
                }
            };
            tokio::select! {
                r = tail => { r?; }
                _ = intake_http::serve::shutdown_signal() => {}
            }
        }
        TopicsCommand::Create {
            partitions,
            replication,
            services,
        } => {
            let services = match services {
                Some(s) => intake_core::config::units::split_list(&s),
                None => settings.ingress()?.valid_services,
            };
            let names = intake_bus::topics::topic_names(&bus_config, &services);
            let specs: Vec<TopicSpec> = names
                .iter()
                .map(|name| TopicSpec {
                    name: name.clone(),
                    partitions,
                    replication,
                })
                .collect();
            bus.create_topics(&specs).await?;
            for name in names {
                println!("{name}");
            }
        }
        TopicsCommand::List => {
            let mut topics = bus.list_topics().await?;
            topics.sort();
            for t in topics {
                println!("{t}");
            }
        }
    }
    Ok(())
}
