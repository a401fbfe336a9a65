//! The intake domain, free of I/O: who is uploading ([`identity`]), which payload ([`request_id`]),
//! for which service ([`content_type`]), the messages exchanged on the bus ([`messages`]), status
//! values ([`status`]), times in the contract's form ([`time`]), typed configuration read from the
//! environment ([`config`]) and errors written as one line with their causes ([`chain`]).
//!
//! Everything here is pure and synchronous, so it can be unit-tested and fuzzed without a runtime.

pub mod chain;
pub mod config;
pub mod content_type;
pub mod identity;
pub mod messages;
pub mod request_id;
pub mod status;
pub mod time;

pub use chain::Chain;
pub use identity::{Identity, IdentityError};
pub use request_id::{RequestId, RequestIdError};

/// The version reported by `/version` and `intake_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
