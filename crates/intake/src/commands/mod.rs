//! One module per subcommand.

pub mod pipeline;
pub mod run;
pub mod topics;
