//! The rules engine (spec pipeline.md §7, §8), free of async so rule sets test without a bus:
//! the component [`model`], [`specs`] (reading a [`source`]: a directory or files in memory) and
//! built-in [`parsers`], the [`graph`] built once at
//! start-up, its evaluation into an insights-core report ([`eval`]), the starter set
//! [`ocp`] (`intake_ocp`) and declarative YAML rule files ([`declarative`]).

pub mod declarative;
pub mod eval;
pub mod graph;
pub mod jq;
pub mod model;
pub mod ocp;
pub mod parsers;
pub mod source;
pub mod specs;
pub mod yaml;

pub use eval::{execution_context, execution_context_of, EvalError, Evaluation, COMMIT, VERSION};
pub use graph::{ComponentConfig, Graph, GraphError, Registry, Selection, SetInfo};
pub use model::{
    Component, ComponentError, Deps, Inputs, Kind, Outcome, Response, ResponseType, RunCx,
};
pub use source::{FileSource, MemoryFiles};
