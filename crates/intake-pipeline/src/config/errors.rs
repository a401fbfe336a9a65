//! What a configuration that does not load reports: every problem, with its path and line.

use std::fmt;
use std::path::PathBuf;

use intake_rules::yaml::de::{KeyPath, Problem};
use intake_rules::yaml::Node;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `service.downloader.max_archive_size`.
    pub path: String,
    /// 1-based line of the value; 0 when it has none.
    pub line: usize,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: &str, line: usize, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: path.to_owned(),
            line,
            message: message.into(),
        }
    }

    /// An issue about the value at `path` in `root`, on its line (or its closest parent's).
    pub(super) fn at(root: &Node, path: &KeyPath, message: impl Into<String>) -> Self {
        let line = (0..=path.0.len())
            .rev()
            .find_map(|n| root.at(&KeyPath(path.0[..n].to_vec())))
            .map_or(0, |node| node.line);
        ConfigIssue::new(&path.to_string(), line, message)
    }
}

impl From<Problem> for ConfigIssue {
    fn from(p: Problem) -> Self {
        ConfigIssue::new(&p.path.to_string(), p.line, p.message)
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found while loading a configuration; `file` when it came from one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: Option<PathBuf>,
    pub issues: Vec<ConfigIssue>,
}

impl ConfigErrors {
    /// Whether some issue is about `path`.
    pub fn mentions(&self, path: &str) -> bool {
        self.issues.iter().any(|i| i.path == path)
    }
}

/// `invalid pipeline configuration:` then one line per issue, `file:line: path: message`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pipeline configuration:")?;
        for issue in &self.issues {
            let file = self.file.as_ref().map(|p| p.display().to_string());
            match (file, issue.line) {
                (Some(file), 0) => write!(f, "\n  {file}: {issue}")?,
                (Some(file), line) => write!(f, "\n  {file}:{line}: {issue}")?,
                (None, 0) => write!(f, "\n  {issue}")?,
                (None, line) => write!(f, "\n  line {line}: {issue}")?,
            }
        }
        Ok(())
    }
}
