//! The format-independent walk: every entry from a tar or zip reader passes through [`Walker`],
//! which applies the path, link, count and size rules, then hands safe entries to an
//! [`EntrySink`] (count-only for `inspect`, disk for `extract`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Read};

use crate::limits::{classify, SharedBudget, SpecialFiles};
use crate::path::{join, normalize, resolve_link_target, EntryName};
use crate::{ArchiveError, Format, Summary};

/// What an entry is, as the format reader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    /// Device, FIFO or socket; the text names which.
    Special(&'static str),
}

/// One entry handed over by a format reader.
pub(crate) struct RawEntry<'a> {
    pub name: &'a [u8],
    pub kind: Kind,
    /// The size the format declares for a regular file's content; tar content shorter than this
    /// is a truncated archive. `None` where the format itself checks (zip).
    pub declared_size: Option<u64>,
    pub content: &'a mut dyn Read,
}

/// Where safe entries go.
pub(crate) trait EntrySink {
    fn dir(&mut self, path: &[String]) -> Result<(), ArchiveError>;
    /// Consumes the file's content through `copy` (which enforces the limits and reports
    /// reading failures) and returns the bytes taken.
    fn file(&mut self, path: &[String], content: &mut dyn Read) -> Result<u64, ArchiveError>;
    /// A hard link to `target`, an earlier regular file of `size` bytes.
    fn hardlink(
        &mut self,
        path: &[String],
        target: &[String],
        size: u64,
    ) -> Result<(), ArchiveError>;
    /// A symbolic link; recorded, never created.
    fn symlink(&mut self, path: &[String], target: &str) -> Result<(), ArchiveError>;
}

/// Size of the buffer used to move entry content.
const CHUNK: usize = 64 * 1024;

/// Copies `content` into `out` through a fixed buffer. Read errors are classified against the
/// budget (limits, truncation, corruption); write errors are I/O failures of the destination.
pub(crate) fn copy_content(
    budget: &SharedBudget,
    content: &mut dyn Read,
    out: &mut dyn io::Write,
) -> Result<u64, ArchiveError> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(classify(budget, e)),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Caps one file's content at `max_file_size`, recording the breach in the budget.
struct FileCap<'a> {
    inner: &'a mut dyn Read,
    budget: SharedBudget,
    path: &'a str,
    taken: u64,
}

impl Read for FileCap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken += n as u64;
        let mut budget = self.budget.borrow_mut();
        let limit = budget.limits().max_file_size;
        if self.taken > limit {
            let cause = ArchiveError::FileTooLarge {
                path: self.path.to_owned(),
                limit,
            };
            return Err(budget.trip_with(cause));
        }
        Ok(n)
    }
}

/// The rules and the running tally of one walk.
pub(crate) struct Walker {
    budget: SharedBudget,
    summary: Summary,
    /// Regular files seen so far, with their sizes (hard-link targets).
    files: HashMap<String, u64>,
    /// Symbolic links seen so far: nothing may lie beneath one.
    symlinks: HashSet<String>,
    top_level: BTreeSet<String>,
}

impl Walker {
    pub(crate) fn new(budget: SharedBudget, format: Format) -> Self {
        Self {
            budget,
            summary: Summary::empty(format),
            files: HashMap::new(),
            symlinks: HashSet::new(),
            top_level: BTreeSet::new(),
        }
    }

    pub(crate) fn budget(&self) -> &SharedBudget {
        &self.budget
    }

    /// Counts one entry against `max_files` and the deadline; format readers call it for every
    /// entry, before reading anything else of it.
    fn count_entry(&mut self) -> Result<(), ArchiveError> {
        self.summary.entries += 1;
        let budget = self.budget.borrow();
        let limit = budget.limits().max_files;
        if self.summary.entries > limit {
            return Err(ArchiveError::TooManyFiles { limit });
        }
        budget.check_deadline()
    }

    /// Applies every rule to one entry and, when it is safe, hands it to `sink`.
    pub(crate) fn visit(
        &mut self,
        entry: RawEntry<'_>,
        sink: &mut dyn EntrySink,
    ) -> Result<(), ArchiveError> {
        self.count_entry()?;
        let path = match normalize(entry.name)? {
            EntryName::Path(p) => p,
            EntryName::Root => return self.drain(entry.content),
            EntryName::Unreadable => {
                self.summary.skipped += 1;
                return self.drain(entry.content);
            }
        };
        let joined = join(&path);
        let max_depth = self.budget.borrow().limits().max_depth;
        if path.len() > max_depth {
            return Err(ArchiveError::TooDeep {
                path: joined,
                limit: max_depth,
            });
        }
        self.check_parents(&path, &joined)?;
        self.top_level.insert(path[0].clone());
        match entry.kind {
            Kind::Dir => {
                self.drain(entry.content)?;
                self.forget(&joined);
                sink.dir(&path)?;
                self.summary.dirs += 1;
            }
            Kind::File => {
                let mut capped = FileCap {
                    inner: entry.content,
                    budget: self.budget.clone(),
                    path: &joined,
                    taken: 0,
                };
                let size = sink.file(&path, &mut capped)?;
                if let Some(declared) = entry.declared_size {
                    if size < declared {
                        return Err(ArchiveError::Truncated(format!(
                            "entry {joined:?} holds {size} of its {declared} bytes"
                        )));
                    }
                }
                self.forget(&joined);
                self.files.insert(joined, size);
                self.summary.files += 1;
                self.summary.unpacked_bytes += size;
            }
            Kind::Hardlink(target) => {
                self.drain(entry.content)?;
                let (target_path, size) = self.hardlink_target(&joined, &target)?;
                self.budget.borrow_mut().add_unpacked(size)?;
                self.forget(&joined);
                sink.hardlink(&path, &target_path, size)?;
                self.files.insert(joined, size);
                self.summary.files += 1;
                self.summary.unpacked_bytes += size;
            }
            Kind::Symlink(target) => {
                self.drain(entry.content)?;
                let target = String::from_utf8_lossy(&target).into_owned();
                if resolve_link_target(&path, &target).is_none() {
                    self.summary.escaping_links += 1;
                }
                self.forget(&joined);
                sink.symlink(&path, &target)?;
                self.symlinks.insert(joined);
                self.summary.symlinks += 1;
            }
            Kind::Special(kind) => {
                self.drain(entry.content)?;
                if self.budget.borrow().limits().special_files == SpecialFiles::Refuse {
                    return Err(ArchiveError::SpecialFile { path: joined, kind });
                }
                self.summary.skipped += 1;
            }
        }
        Ok(())
    }

    /// Nothing may lie beneath a symbolic link (a file "through" a link escapes wherever the
    /// link points) or beneath a regular file.
    fn check_parents(&self, path: &[String], joined: &str) -> Result<(), ArchiveError> {
        for depth in 1..path.len() {
            let parent = join(&path[..depth]);
            if self.symlinks.contains(&parent) {
                return Err(ArchiveError::LinkEscape {
                    path: joined.to_owned(),
                    detail: format!("{parent:?} is a symbolic link"),
                });
            }
            if self.files.contains_key(&parent) {
                return Err(ArchiveError::Corrupt(format!(
                    "entry {joined:?} lies beneath the regular file {parent:?}"
                )));
            }
        }
        Ok(())
    }

    /// A hard link may only name an earlier regular file of this archive.
    fn hardlink_target(
        &self,
        joined: &str,
        raw: &[u8],
    ) -> Result<(Vec<String>, u64), ArchiveError> {
        let escape = |detail: String| ArchiveError::LinkEscape {
            path: joined.to_owned(),
            detail,
        };
        let target = match normalize(raw) {
            Ok(EntryName::Path(p)) => p,
            Ok(_) | Err(_) => {
                return Err(escape(format!(
                    "hard link target {:?} is not a path inside the archive",
                    String::from_utf8_lossy(raw)
                )))
            }
        };
        let key = join(&target);
        match self.files.get(&key) {
            Some(size) => Ok((target, *size)),
            None => Err(escape(format!(
                "hard link target {key:?} is not an earlier regular file"
            ))),
        }
    }

    /// A later entry at the same path replaces what came before.
    fn forget(&mut self, joined: &str) {
        self.files.remove(joined);
        self.symlinks.remove(joined);
    }

    /// Reads and discards content the walk does not keep, so its bytes are counted.
    fn drain(&self, content: &mut dyn Read) -> Result<(), ArchiveError> {
        copy_content(&self.budget, content, &mut io::sink()).map(|_| ())
    }

    pub(crate) fn finish(mut self) -> Result<Summary, ArchiveError> {
        if self.summary.files == 0 {
            return Err(ArchiveError::Empty);
        }
        self.summary.top_level = std::mem::take(&mut self.top_level).into_iter().collect();
        Ok(self.summary)
    }
}
