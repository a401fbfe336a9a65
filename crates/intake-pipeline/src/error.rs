//! Errors: a message's failure at one stage (reason code, class, detail: what a dead letter
//! carries, spec pipeline.md §11) and the fatal errors that stop the pipeline.

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
    #[error("rule set: {0}")]
    Rules(String),
    #[error("bus: {0}")]
    Bus(#[from] intake_bus::BusError),
    #[error("{0}")]
    Setup(String),
    #[error("processing failed: {0}")]
    Process(#[from] StageError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Runtime(#[from] intake_bus::runtime::RuntimeError),
}

impl PipelineError {
    /// The process exit code: 2 for configuration errors, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            PipelineError::Config(_) | PipelineError::Rules(_) => 2,
            _ => 1,
        }
    }
}
