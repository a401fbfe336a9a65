//! One module per subcommand.

pub mod config;
pub mod load;
pub mod pipeline;
pub mod run;
pub mod topics;
pub mod upload;
