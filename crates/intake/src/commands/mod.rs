//! One module per subcommand.

pub mod pipeline;
pub mod run;
pub mod topics;
pub mod upload;
pub mod load;
