//! Test-only support. Real servers are started by `scripts/test.sh` (the harness), which exports
//! their addresses; [`servers`] reads them and fails loudly when one is missing, so no test that
//! needs a real engine is ever skipped silently.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test-only support: a failed fixture or server fails the test that uses it"
)]

pub mod archives;
pub mod poll;
pub mod servers;
