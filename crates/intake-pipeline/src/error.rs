//! Errors: a message's failure at one stage (reason code, class, detail: what a dead letter
//! carries, spec pipeline.md §11) and the fatal errors that stop the pipeline.

use std::error::Error;

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}: {detail}", stage.as_str())]
pub struct StageError {
    pub stage: Stage,
    /// The reason code of spec §11.
    pub reason: &'static str,
    pub class: Class,
    /// For a person; URLs and identities are never included.
    pub detail: String,
    /// Attempts made at the failing stage.
    pub attempts: u32,
}

impl StageError {
    pub fn permanent(stage: Stage, reason: &'static str, detail: impl Into<String>) -> Self {
        StageError {
            stage,
            reason,
            class: Class::Permanent,
            detail: detail.into(),
            attempts: 1,
        }
    }

    pub fn transient(stage: Stage, reason: &'static str, detail: impl Into<String>) -> Self {
        StageError {
            stage,
            reason,
            class: Class::Transient,
            detail: detail.into(),
            attempts: 1,
        }
    }

    pub fn internal(stage: Stage, detail: impl Into<String>) -> Self {
        StageError {
            stage,
            reason: "internal",
            class: Class::Internal,
            detail: detail.into(),
            attempts: 1,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }

    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }
}

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

#[cfg(test)]
mod tests;
