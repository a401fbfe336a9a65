//! The storage contract suite on every driver (local disk, S3 against the harness's server) and the
//! fault-injecting wrapper.
//!
//! One test binary for the crate's integration tests (linking every driver once instead of once
//! per file); run one group with a filter: `cargo test -p intake-storage --test storage -- faults::`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

mod faults;
mod localdisk;
mod s3;
