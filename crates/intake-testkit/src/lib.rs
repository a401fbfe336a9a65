//! Test-only support. Real servers are started by `scripts/test.sh` (the harness), which exports
//! their addresses; [`servers`] reads them and fails loudly when one is missing, so no test that
//! needs a real engine is ever skipped silently.

pub mod archives;
pub mod poll;
pub mod servers;
