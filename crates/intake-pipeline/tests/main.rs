//! The integration tests of intake-pipeline: configurations, downloads, the message flow on the
//! embedded bus and on Kafka, hostile archives, replay.
//!
//! One test binary for the crate's integration tests (linking every driver once instead of once
//! per file); run one group with a filter: `cargo test -p intake-pipeline --test pipeline -- config::`.

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

mod config;
mod download;
mod flow;
mod hostile;
mod in_memory;
mod kafka;
mod process;
mod replay;
mod storage_download;
