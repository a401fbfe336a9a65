//! Errors: a message's failure at one stage (reason code, class, detail: what a dead letter
//! carries, spec pipeline.md §11) and the fatal errors that stop the pipeline. Each keeps the
//! library error behind it as its [`Error::source`], for logs ([`Chain`]) and callers.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The failure underneath a [`StageError`] (a reqwest, I/O, archive, storage or JSON error).
/// Shared, so that a [`StageError`] stays `Clone`.
pub type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// The failure underneath a [`PipelineError`].
pub type BoxedCause = Box<dyn Error + Send + Sync + 'static>;

/// The stage a message failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Decode,
    Download,
    Extract,
    Rules,
    Publish,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Download => "download",
            Stage::Extract => "extract",
            Stage::Rules => "rules",
            Stage::Publish => "publish",
        }
    }
}

/// Whether retrying may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Permanent,
    Transient,
    Internal,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Permanent => "permanent",
            Class::Transient => "transient",
            Class::Internal => "internal",
        }
    }
}

/// One message's failure: the dead-letter headers' content.
///
/// Its text (`stage: reason: detail`) and the dead letter hold only the fields; the cause is
/// reachable through [`Error::source`] and never written to the wire, since a library error's
/// text may carry what the detail leaves out (a URL, an identity).
#[derive(Debug, Clone)]
pub struct StageError {
    pub stage: Stage,
    /// The reason code of spec §11.
    pub reason: &'static str,
    pub class: Class,
    /// For a person; URLs and identities are never included.
    pub detail: String,
    /// Attempts made at the failing stage.
    pub attempts: u32,
    /// The library error this failure was built from, if any.
    cause: Option<Cause>,
}

impl StageError {
    fn new(stage: Stage, reason: &'static str, class: Class, detail: String) -> Self {
        StageError {
            stage,
            reason,
            class,
            detail,
            attempts: 1,
            cause: None,
        }
    }

    pub fn permanent(stage: Stage, reason: &'static str, detail: impl Into<String>) -> Self {
        Self::new(stage, reason, Class::Permanent, detail.into())
    }

    pub fn transient(stage: Stage, reason: &'static str, detail: impl Into<String>) -> Self {
        Self::new(stage, reason, Class::Transient, detail.into())
    }

    pub fn internal(stage: Stage, detail: impl Into<String>) -> Self {
        Self::new(stage, "internal", Class::Internal, detail.into())
    }

    /// Keeps `cause` as the [`Error::source`]; the detail, class and reason stay as they are.
    pub fn caused_by(mut self, cause: impl Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// The library error this failure was built from.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }

    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }

    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.stage.as_str(),
            self.reason,
            self.detail
        )
    }
}

impl Error for StageError {
    /// The cause itself (not the `Arc` holding it), so that callers can downcast it.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn Error + 'static))
    }
}

/// Two failures are the same when everything a dead letter says is: the cause is not compared
/// (library errors have no equality).
impl PartialEq for StageError {
    fn eq(&self, other: &Self) -> bool {
        self.stage == other.stage
            && self.reason == other.reason
            && self.class == other.class
            && self.detail == other.detail
            && self.attempts == other.attempts
    }
}

impl Eq for StageError {}

/// Why the pipeline cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigErrors),
    /// The rule set cannot be built (a rule file, a glob, the component graph).
    #[error("rule set: {}", with_cause(context, source))]
    Rules {
        context: String,
        #[source]
        source: Option<BoxedCause>,
    },
    #[error("bus: {0}")]
    Bus(#[from] intake_bus::BusError),
    /// Something the pipeline needs cannot be set up (the HTTP client, a section's bus, a task).
    #[error("{}", with_cause(context, source))]
    Setup {
        context: String,
        #[source]
        source: Option<BoxedCause>,
    },
    #[error("processing failed: {0}")]
    Process(#[from] StageError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Runtime(#[from] intake_bus::runtime::RuntimeError),
}

impl PipelineError {
    /// [`PipelineError::Rules`] without an underlying error.
    pub fn rules(context: impl Into<String>) -> Self {
        PipelineError::Rules {
            context: context.into(),
            source: None,
        }
    }

    /// [`PipelineError::Rules`] caused by `source`; an empty `context` leaves the cause's own
    /// message to say it all (a rule file's error names the file and the line).
    pub fn rules_from(
        context: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        PipelineError::Rules {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// [`PipelineError::Setup`] without an underlying error.
    pub fn setup(context: impl Into<String>) -> Self {
        PipelineError::Setup {
            context: context.into(),
            source: None,
        }
    }

    /// [`PipelineError::Setup`] caused by `source`; an empty `context` as in
    /// [`PipelineError::rules_from`].
    pub fn setup_from(
        context: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        PipelineError::Setup {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The process exit code: 2 for configuration errors, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            PipelineError::Config(_) | PipelineError::Rules { .. } => 2,
            _ => 1,
        }
    }
}

/// `context: cause`, as intake-bus's errors read: the message names its cause, since
/// `intake pipeline check` prints only the top error, and the cause is what says what went wrong.
fn with_cause(context: &str, source: &Option<BoxedCause>) -> String {
    match source {
        Some(cause) if context.is_empty() => cause.to_string(),
        Some(cause) => format!("{context}: {cause}"),
        None => context.to_owned(),
    }
}

pub use intake_core::Chain;

#[cfg(test)]
mod tests;
