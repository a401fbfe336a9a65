//! Writing safe entries under a destination directory: only regular files (0600) and directories
//! (0700), never links, never through anything that is not a real directory.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::limits::SharedBudget;
use crate::path::{join, resolve_link_target};
use crate::walk::{copy_content, EntrySink};
use crate::ArchiveError;

/// A symbolic link found in the archive: recorded, never created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolicLink {
    /// The link's path inside the archive (`/`-separated, normalised).
    pub path: String,
    /// The target exactly as the archive stores it.
    pub target: String,
    /// The target resolved lexically against the link's directory, when it stays inside the
    /// archive root.
    pub resolved: Option<String>,
}

/// Writes entries below `root`.
pub(crate) struct DiskSink<'k> {
    root: PathBuf,
    budget: SharedBudget,
    /// Which regular files and directories to write (by `/`-separated path); the others are
    /// still read and counted.
    keep: &'k dyn Fn(&str) -> bool,
    pub(crate) files: BTreeSet<String>,
    pub(crate) links: Vec<SymbolicLink>,
}

impl<'k> DiskSink<'k> {
    pub(crate) fn new(
        root: &Path,
        budget: SharedBudget,
        keep: &'k dyn Fn(&str) -> bool,
    ) -> Result<Self, ArchiveError> {
        let meta = fs::symlink_metadata(root)?;
        if !meta.is_dir() {
            return Err(ArchiveError::Io(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!(
                    "extraction destination {} is not a directory",
                    root.display()
                ),
            )));
        }
        Ok(Self {
            root: root.to_owned(),
            budget,
            keep,
            files: BTreeSet::new(),
            links: Vec::new(),
        })
    }

    /// Makes sure every parent of `path` is a real directory below the root, creating missing
    /// ones; anything else in the way (a file, a link left in the destination) refuses the entry.
    fn parent_dirs(&self, path: &[String]) -> Result<PathBuf, ArchiveError> {
        let mut at = self.root.clone();
        for component in &path[..path.len() - 1] {
            at.push(component);
            self.ensure_dir(&at, path)?;
        }
        Ok(at)
    }

    fn ensure_dir(&self, at: &Path, path: &[String]) -> Result<(), ArchiveError> {
        match fs::symlink_metadata(at) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(ArchiveError::LinkEscape {
                path: join(path),
                detail: format!("{} is not a directory", at.display()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dir(at).map_err(ArchiveError::Io)
            }
            Err(e) => Err(ArchiveError::Io(e)),
        }
    }

    /// Clears the way for a new file at `target`: an earlier file (or a stray link) is removed, so
    /// later duplicates win; a directory is in the way for good.
    fn replace(&self, target: &Path, path: &[String]) -> Result<(), ArchiveError> {
        match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => Err(ArchiveError::Corrupt(format!(
                "entry {:?} replaces a directory with a file",
                join(path)
            ))),
            Ok(_) => fs::remove_file(target).map_err(ArchiveError::Io),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::Io(e)),
        }
    }

    fn target(&self, path: &[String]) -> Result<PathBuf, ArchiveError> {
        let parent = self.parent_dirs(path)?;
        Ok(parent.join(&path[path.len() - 1]))
    }
}

impl EntrySink for DiskSink<'_> {
    fn dir(&mut self, path: &[String]) -> Result<(), ArchiveError> {
        if !(self.keep)(&join(path)) {
            return Ok(());
        }
        let target = self.target(path)?;
        self.ensure_dir(&target, path)
    }

    fn file(&mut self, path: &[String], content: &mut dyn Read) -> Result<u64, ArchiveError> {
        if !(self.keep)(&join(path)) {
            return copy_content(&self.budget, content, &mut io::sink());
        }
        let target = self.target(path)?;
        self.replace(&target, path)?;
        let mut out = create_file(&target)?;
        let size = copy_content(&self.budget, content, &mut out)?;
        self.files.insert(join(path));
        Ok(size)
    }

    fn hardlink(
        &mut self,
        path: &[String],
        target_path: &[String],
        _size: u64,
    ) -> Result<(), ArchiveError> {
        // Only a kept link to a kept file is written (the source must be on disk).
        if !(self.keep)(&join(path)) || !self.files.contains(&join(target_path)) {
            return Ok(());
        }
        let target = self.target(path)?;
        let mut source_path = self.root.clone();
        source_path.extend(target_path);
        if source_path == target {
            return Ok(());
        }
        self.replace(&target, path)?;
        // A copy, not a link: the tree holds only independent regular files.
        let mut source = File::open(&source_path)?;
        let mut out = create_file(&target)?;
        io::copy(&mut source, &mut out)?;
        self.files.insert(join(path));
        Ok(())
    }

    fn symlink(&mut self, path: &[String], target: &str) -> Result<(), ArchiveError> {
        let mut on_disk = self.root.clone();
        on_disk.extend(path);
        if self.files.contains(&join(path))
            && fs::symlink_metadata(&on_disk).is_ok_and(|m| m.is_file())
        {
            fs::remove_file(&on_disk)?;
            self.files.remove(&join(path));
        }
        let resolved = resolve_link_target(path, target).map(|p| join(&p));
        self.links.push(SymbolicLink {
            path: join(path),
            target: target.to_owned(),
            resolved,
        });
        Ok(())
    }
}

#[cfg(unix)]
fn create_dir(at: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(at)
}

#[cfg(not(unix))]
fn create_dir(at: &Path) -> io::Result<()> {
    fs::DirBuilder::new().create(at)
}

/// A new file that did not exist (`O_EXCL`, so a link planted at the name is never followed).
fn create_file(at: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(at)
}
