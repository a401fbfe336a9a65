//! Extraction into memory: the same entries, in the same places, as [`crate::extract`] writes
//! below a directory, held as a map of `/`-separated path → content. For a small archive already
//! in memory, where a directory on disk would cost more than the work itself.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::limits::SharedBudget;
use crate::path::{join, resolve_link_target};
use crate::walk::{copy_content, EntrySink};
use crate::{ArchiveError, SymbolicLink};

/// Holds the kept entries. Its checks are [`crate::extract`]'s, answered from the map instead
/// of the disk, so that an archive refused on disk is refused here with the same error kind.
pub(crate) struct MemorySink<'k> {
    budget: SharedBudget,
    keep: &'k dyn Fn(&str) -> bool,
    pub(crate) files: BTreeMap<String, Vec<u8>>,
    pub(crate) dirs: BTreeSet<String>,
    pub(crate) links: Vec<SymbolicLink>,
}

impl<'k> MemorySink<'k> {
    pub(crate) fn new(budget: SharedBudget, keep: &'k dyn Fn(&str) -> bool) -> Self {
        Self {
            budget,
            keep,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            links: Vec::new(),
        }
    }

    /// Every parent of `path` becomes a directory; a kept file in the way refuses the entry, as
    /// a file in the way on disk does.
    fn parent_dirs(&mut self, path: &[String]) -> Result<(), ArchiveError> {
        for depth in 1..path.len() {
            self.ensure_dir(&join(&path[..depth]), path)?;
        }
        Ok(())
    }

    fn ensure_dir(&mut self, at: &str, path: &[String]) -> Result<(), ArchiveError> {
        if self.files.contains_key(at) {
            return Err(ArchiveError::LinkEscape {
                path: join(path),
                detail: format!("{at} is not a directory"),
            });
        }
        if !self.dirs.contains(at) {
            self.dirs.insert(at.to_owned());
        }
        Ok(())
    }

    /// A new file at `at` replaces an earlier one; a directory is in the way for good.
    fn replace(&mut self, at: &str, path: &[String]) -> Result<(), ArchiveError> {
        if self.dirs.contains(at) {
            return Err(ArchiveError::Corrupt(format!(
                "entry {:?} replaces a directory with a file",
                join(path)
            )));
        }
        self.files.remove(at);
        Ok(())
    }
}

impl EntrySink for MemorySink<'_> {
    fn dir(&mut self, path: &[String]) -> Result<(), ArchiveError> {
        let joined = join(path);
        if !(self.keep)(&joined) {
            return Ok(());
        }
        self.parent_dirs(path)?;
        self.ensure_dir(&joined, path)
    }

    fn file(&mut self, path: &[String], content: &mut dyn Read) -> Result<u64, ArchiveError> {
        let joined = join(path);
        if !(self.keep)(&joined) {
            return copy_content(&self.budget, content, &mut std::io::sink());
        }
        self.parent_dirs(path)?;
        self.replace(&joined, path)?;
        let mut out = Vec::new();
        let size = copy_content(&self.budget, content, &mut out)?;
        self.files.insert(joined, out);
        Ok(size)
    }

    fn hardlink(
        &mut self,
        path: &[String],
        target_path: &[String],
        _size: u64,
    ) -> Result<(), ArchiveError> {
        let joined = join(path);
        let target = join(target_path);
        if !(self.keep)(&joined) || !self.files.contains_key(&target) {
            return Ok(());
        }
        self.parent_dirs(path)?;
        if joined == target {
            return Ok(());
        }
        self.replace(&joined, path)?;
        let copy = self.files.get(&target).cloned().unwrap_or_default();
        self.files.insert(joined, copy);
        Ok(())
    }

    fn symlink(&mut self, path: &[String], target: &str) -> Result<(), ArchiveError> {
        let joined = join(path);
        self.files.remove(&joined);
        let resolved = resolve_link_target(path, target).map(|p| join(&p));
        self.links.push(SymbolicLink {
            path: joined,
            target: target.to_owned(),
            resolved,
        });
        Ok(())
    }
}
