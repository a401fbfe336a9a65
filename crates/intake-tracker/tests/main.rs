//! The integration tests of intake-tracker: both stores' contract suites, ingestion through a real
//! bus, the API and the page in a real browser.
//!
//! One test binary for the crate's integration tests (linking every driver once instead of once
//! per file); run one group with a filter: `cargo test -p intake-tracker --test tracker -- api::`.

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

mod api;
mod batches;
mod browser;
mod events;
mod full_disk;
mod ingest;
mod service;
mod store_postgres;
mod store_sqlite;
