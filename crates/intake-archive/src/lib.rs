//! Safe, in-process archive reading shared by the validator and the rules pipeline (spec
//! pipeline.md §6). Never a shell-out, never a whole archive in memory (unless the caller already
//! holds a small one: [`inspect_bytes`], [`extract_bytes_matching`]).
//!
//! * [`inspect`] walks every entry and reads every byte through a counting sink, writing nothing;
//!   [`inspect_bytes`] does the same for an archive in memory.
//! * [`extract`] writes regular files (0600) and directories (0700) below a destination
//!   directory; links are recorded ([`SymbolicLink`]) and hard links copied from earlier entries,
//!   never created. [`extract_matching`] writes only the paths a predicate keeps.
//! * [`extract_bytes_matching`] keeps the same entries of an archive in memory, in a map of path
//!   → content, under the same rules and limits (a small download never touches the disk).
//!
//! Formats are told by magic bytes: gzip (all members), xz, bzip2 (each holding a tar), zip
//! (stored or deflated entries) and plain tar (`ustar` at offset 257 or a valid v7 checksum).
//! Anything else is [`ArchiveError::NotAnArchive`].
//!
//! Rules, each a distinct [`ArchiveError`] with a stable [`code`](ArchiveError::code): absolute
//! names, drive letters, `..` segments and names over 4096 bytes refuse the whole archive
//! (`unsafe_path`); so do entries beneath a symbolic link and hard links to anything but an
//! earlier regular file. [`Limits`] bound entries, decompressed bytes (counted as produced, never
//! as declared: zip headers lie), one file's size, path depth and time. Device files, FIFOs and
//! sockets are refused or skipped ([`SpecialFiles`]).
//!
//! Everything here blocks: async callers use `tokio::task::spawn_blocking`.
//!
//! # Fuzzing
//!
//! `fuzz/` is a cargo-fuzz crate outside the workspace, whose target feeds arbitrary bytes to
//! [`inspect`] through a temporary file:
//!
//! ```text
//! cargo install cargo-fuzz
//! cd crates/intake-archive/fuzz && cargo +nightly fuzz run inspect -- -max_total_time=60
//! ```

#![allow(
    clippy::disallowed_types,
    reason = "decompressors live here, behind this crate's size, count and ratio limits"
)]

mod error;
mod extract;
mod format;
mod limits;
mod memory;
mod path;
mod tar_reader;
mod walk;
mod zip_reader;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

pub use error::ArchiveError;
pub use extract::SymbolicLink;
pub use format::{detect, Format};
pub use limits::{Limits, SpecialFiles};
pub use path::MAX_NAME_LEN;

use limits::{Budget, SharedBudget};
use walk::{copy_content, EntrySink, Walker};

/// What an archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub format: Format,
    /// Every entry, of any kind.
    pub entries: u64,
    /// Regular files (hard links included, as copies).
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Symbolic links whose target is absolute or climbs above the archive root.
    pub escaping_links: u64,
    /// Entries skipped: unreadable names, and special files when [`SpecialFiles::Skip`].
    pub skipped: u64,
    /// Bytes of regular-file content.
    pub unpacked_bytes: u64,
    /// The first path component of every entry, sorted, without duplicates.
    pub top_level: Vec<String>,
}

impl Summary {
    fn empty(format: Format) -> Self {
        Self {
            format,
            entries: 0,
            files: 0,
            dirs: 0,
            symlinks: 0,
            escaping_links: 0,
            skipped: 0,
            unpacked_bytes: 0,
            top_level: Vec::new(),
        }
    }
}

/// What [`extract`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub summary: Summary,
    /// Every regular file written, as `/`-separated paths relative to the destination, sorted.
    pub files: Vec<String>,
    /// Symbolic links, in archive order; none exists on disk.
    pub links: Vec<SymbolicLink>,
}

/// What [`extract_bytes_matching`] kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InMemory {
    pub summary: Summary,
    /// Every regular file kept, by `/`-separated path relative to the archive (sorted by path).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Every directory the tree holds: kept directory entries and the parents of kept files.
    pub dirs: BTreeSet<String>,
    /// Symbolic links, in archive order; recorded, never followed.
    pub links: Vec<SymbolicLink>,
}

/// Walks the archive at `path` and reads every byte under `limits`, writing nothing.
pub fn inspect(path: &Path, limits: &Limits) -> Result<Summary, ArchiveError> {
    let budget = Budget::new(limits);
    let mut sink = CountingSink {
        budget: budget.clone(),
    };
    walk_file(path, budget, &mut sink)
}

/// Like [`inspect`], for an archive already in memory (a small download kept off the disk).
pub fn inspect_bytes(archive: Vec<u8>, limits: &Limits) -> Result<Summary, ArchiveError> {
    let budget = Budget::new(limits);
    let mut sink = CountingSink {
        budget: budget.clone(),
    };
    walk_source(Cursor::new(archive), "(in memory)", budget, &mut sink)
}

/// Extracts the archive at `path` below `dest` (an existing directory) under `limits`.
///
/// On error, what was written so far stays below `dest` (never outside it); callers extract into
/// a fresh temporary directory and remove it.
pub fn extract(path: &Path, dest: &Path, limits: &Limits) -> Result<Extracted, ArchiveError> {
    extract_matching(path, dest, limits, &|_| true)
}

/// Like [`extract`], writing only the regular files and directories whose `/`-separated path
/// `keep` accepts (hard links: when both the link and its target are kept). Every entry is still
/// read, counted and checked, so the summary and the errors are those of [`extract`].
pub fn extract_matching(
    path: &Path,
    dest: &Path,
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Extracted, ArchiveError> {
    let budget = Budget::new(limits);
    let mut sink = extract::DiskSink::new(dest, budget.clone(), keep)?;
    let summary = walk_file(path, budget, &mut sink)?;
    Ok(Extracted {
        summary,
        files: sink.files.into_iter().collect(),
        links: sink.links,
    })
}

/// Like [`extract_matching`] for an archive already in memory: the kept regular files and
/// directories stay in memory, under the same rules, limits and errors as on disk. The kept
/// content is bounded by `limits.max_unpacked_size` (every byte produced counts against it).
pub fn extract_bytes_matching(
    archive: Vec<u8>,
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
) -> Result<InMemory, ArchiveError> {
    let budget = Budget::new(limits);
    let mut sink = memory::MemorySink::new(budget.clone(), keep);
    let summary = walk_source(Cursor::new(archive), "(in memory)", budget, &mut sink)?;
    Ok(InMemory {
        summary,
        files: sink.files,
        dirs: sink.dirs,
        links: sink.links,
    })
}

fn walk_file(
    path: &Path,
    budget: SharedBudget,
    sink: &mut dyn EntrySink,
) -> Result<Summary, ArchiveError> {
    let file = File::open(path)?;
    walk_source(file, &path.display().to_string(), budget, sink)
}

fn walk_source<R: Read + Seek + 'static>(
    mut source: R,
    label: &str,
    budget: SharedBudget,
    sink: &mut dyn EntrySink,
) -> Result<Summary, ArchiveError> {
    let mut head = Vec::with_capacity(512);
    (&mut source).take(512).read_to_end(&mut head)?;
    source.seek(SeekFrom::Start(0))?;
    let format = detect(&head)?;
    let mut walker = Walker::new(budget.clone(), format);
    tracing::debug!(archive = label, %format, "reading archive");
    if format == Format::Zip {
        zip_reader::walk(source, &mut walker, sink)?;
    } else {
        let stream = format::tar_stream(format, source, &budget)?;
        tar_reader::walk(stream, &mut walker, sink)?;
    }
    walker.finish()
}

/// Reads content and keeps only its length.
struct CountingSink {
    budget: SharedBudget,
}

impl EntrySink for CountingSink {
    fn dir(&mut self, _path: &[String]) -> Result<(), ArchiveError> {
        Ok(())
    }

    fn file(&mut self, _path: &[String], content: &mut dyn Read) -> Result<u64, ArchiveError> {
        copy_content(&self.budget, content, &mut std::io::sink())
    }

    fn hardlink(
        &mut self,
        _path: &[String],
        _target: &[String],
        _size: u64,
    ) -> Result<(), ArchiveError> {
        Ok(())
    }

    fn symlink(&mut self, _path: &[String], _target: &str) -> Result<(), ArchiveError> {
        Ok(())
    }
}
