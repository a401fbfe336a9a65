//! Specs: the files a set reads from the archive root, by path (first present) or glob, through
//! the archive's [`FileSource`](crate::source::FileSource).

use std::path::Path;

use regex::Regex;

use crate::model::{Component, Inputs, Kind, Outcome, RunCx};

/// Default bound on the files one glob spec yields.
pub const DEFAULT_MAX_FILES: usize = 1000;
/// Default bound on one file's size.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;

/// One file a spec found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecFile {
    /// `/`-separated, relative to the archive root.
    pub path: String,
    pub content: Vec<u8>,
}

/// A spec's value: one file for a path spec, the matches in path order for a glob spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecFiles {
    pub glob: bool,
    pub files: Vec<SpecFile>,
}

/// Where a spec looks.
#[derive(Debug, Clone)]
pub enum Source {
    /// The first of these paths that exists.
    Paths(Vec<String>),
    /// Every regular file matching, sorted.
    Glob { pattern: String, regex: Regex },
}

/// A spec component.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub source: Source,
    pub max_files: usize,
    pub max_bytes: u64,
}

impl Spec {
    pub fn path(name: &str, paths: &[&str]) -> Self {
        Spec {
            name: name.to_owned(),
            source: Source::Paths(paths.iter().map(|p| p.to_string()).collect()),
            max_files: DEFAULT_MAX_FILES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// A glob spec; `None` when the pattern cannot be compiled.
    pub fn glob(name: &str, pattern: &str) -> Option<Self> {
        Some(Spec {
            name: name.to_owned(),
            source: Source::Glob {
                pattern: pattern.to_owned(),
                regex: glob_regex(pattern)?,
            },
            max_files: DEFAULT_MAX_FILES,
            max_bytes: DEFAULT_MAX_BYTES,
        })
    }

    pub fn max_files(mut self, n: usize) -> Self {
        self.max_files = n;
        self
    }

    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }

    pub fn is_glob(&self) -> bool {
        matches!(self.source, Source::Glob { .. })
    }
}

/// `*` within a segment, `**` across segments, `?` one character.
pub fn glob_regex(pattern: &str) -> Option<Regex> {
    let mut re = String::from("^");
    let segments: Vec<&str> = pattern.trim_start_matches("./").split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if *seg == "**" {
            re.push_str(if last { ".*" } else { "(?:[^/]+/)*" });
            continue;
        }
        for c in seg.chars() {
            match c {
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        if !last {
            re.push('/');
        }
    }
    re.push('$');
    Regex::new(&re).ok()
}

impl Component for Spec {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> Kind {
        Kind::Spec
    }

    fn wanted(&self) -> Vec<String> {
        match &self.source {
            Source::Paths(p) => p.clone(),
            Source::Glob { pattern, .. } => vec![pattern.clone()],
        }
    }

    fn run(&self, _inputs: &Inputs<'_>, cx: &RunCx<'_>) -> Outcome {
        match &self.source {
            Source::Paths(paths) => {
                for p in paths {
                    if let Some(content) = cx.source.read_bounded(p, self.max_bytes) {
                        return Outcome::value(SpecFiles {
                            glob: false,
                            files: vec![SpecFile {
                                path: p.clone(),
                                content,
                            }],
                        });
                    }
                }
                Outcome::Skip("not present")
            }
            Source::Glob { regex, .. } => {
                let mut files = Vec::new();
                for p in cx.files.iter().filter(|p| regex.is_match(p)) {
                    if files.len() >= self.max_files {
                        break;
                    }
                    if let Some(content) = cx.source.read_bounded(p, self.max_bytes) {
                        files.push(SpecFile {
                            path: p.clone(),
                            content,
                        });
                    }
                }
                if files.is_empty() {
                    Outcome::Skip("not present")
                } else {
                    Outcome::value(SpecFiles { glob: true, files })
                }
            }
        }
    }
}

/// Every regular file below `root`, as sorted `/`-separated relative paths (links not followed).
pub fn list_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if ft.is_dir() {
                stack.push((entry.path(), rel));
            } else if ft.is_file() {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let r = glob_regex("config/clusteroperator/*.json").unwrap();
        assert!(r.is_match("config/clusteroperator/etcd.json"));
        assert!(!r.is_match("config/clusteroperator/a/etcd.json"));
        let r = glob_regex("config/**/*.json").unwrap();
        assert!(r.is_match("config/x.json"));
        assert!(r.is_match("config/a/b/x.json"));
    }
}
