//! The black-box tests of the `intake` binary, one test binary for all of them (linking every
//! driver once instead of once per file): each module starts the built binary (or talks to the
//! engines it runs on) and checks what a client, an operator or an upstream consumer would see.
//!
//! Run one group with a filter: `cargo test -p intake --test blackbox -- admission::`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

mod common;

mod access_log;
mod admission;
mod broker_outage;
mod clowder;
mod compat;
mod completions_cli;
mod config_cli;
mod crash_load;
mod deploy;
mod download_outage;
mod drain;
mod full_disk;
mod kafka_faults;
mod kafka_s3;
mod links;
mod load_cli;
mod pipeline_cli;
mod pipeline_e2e;
mod pipeline_health;
mod public_urls;
mod readme;
mod reserved_services;
mod restart;
mod sample_archive;
mod serve;
mod serve_page;
mod slow_clients;
mod topics_cli;
mod tracker_full_disk;
mod upload_cli;
mod validator_metrics;
