//! The integration tests of intake-ingress: the real router and state on the embedded bus and
//! local disk, each behind its fault-injecting driver (tests/harness).
//!
//! One test binary for the crate's integration tests (linking every driver once instead of once
//! per file); run one group with a filter: `cargo test -p intake-ingress --test ingress -- corpus::`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

mod harness;

mod corpus;
mod dead_letters;
mod download;
mod full_disk;
mod partitions;
mod readiness;
mod reannounce;
mod slots;
mod streaming;
mod track;
mod upload;
mod validation;
