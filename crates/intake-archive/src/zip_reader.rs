//! Walks a zip archive through its central directory. Only stored and deflated, unencrypted
//! entries are read; every decompressed byte is counted, whatever the headers declare.

use std::fs::File;
use std::io::Read;

use zip::result::ZipError;
use zip::CompressionMethod;

use crate::limits::{classify, CountingReader, Layer, SharedBudget};
use crate::walk::{EntrySink, Kind, RawEntry, Walker};
use crate::ArchiveError;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

/// Longest symbolic link target read from a zip entry.
const MAX_LINK_TARGET: u64 = 4096;

pub(crate) fn walk(
    file: File,
    walker: &mut Walker,
    sink: &mut dyn EntrySink,
) -> Result<(), ArchiveError> {
    let budget = walker.budget().clone();
    let reader = CountingReader::new(file, budget.clone(), Layer::File);
    let mut archive =
        zip::ZipArchive::new(SeekableCounting(reader)).map_err(|e| zip_error(&budget, e))?;
    let max_files = budget.borrow().limits().max_files;
    if archive.len() as u64 > max_files {
        return Err(ArchiveError::TooManyFiles { limit: max_files });
    }
    for index in 0..archive.len() {
        let (name, kind, method, encrypted) = {
            let raw = archive
                .by_index_raw(index)
                .map_err(|e| zip_error(&budget, e))?;
            let name = raw.name_raw().to_vec();
            let kind = kind_of(&name, raw.unix_mode());
            (name, kind, raw.compression(), raw.encrypted())
        };
        if encrypted {
            return Err(ArchiveError::Unsupported("encrypted zip entries".into()));
        }
        if !matches!(
            method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(ArchiveError::Unsupported(format!(
                "zip compression method {method}"
            )));
        }
        let entry = archive.by_index(index).map_err(|e| zip_error(&budget, e))?;
        let mut content = CountingReader::new(entry, budget.clone(), Layer::Unpacked);
        let kind = match kind {
            ZipKind::Symlink => {
                let mut target = Vec::new();
                (&mut content)
                    .take(MAX_LINK_TARGET)
                    .read_to_end(&mut target)
                    .map_err(|e| classify(&budget, e))?;
                Kind::Symlink(target)
            }
            ZipKind::Other(kind) => kind,
        };
        walker.visit(
            RawEntry {
                name: &name,
                kind,
                declared_size: None,
                content: &mut content,
            },
            sink,
        )?;
    }
    Ok(())
}

enum ZipKind {
    Symlink,
    Other(Kind),
}

fn kind_of(name: &[u8], unix_mode: Option<u32>) -> ZipKind {
    let is_dir_name = name.ends_with(b"/") || name.ends_with(b"\\");
    match unix_mode.map(|m| m & S_IFMT) {
        Some(S_IFLNK) => ZipKind::Symlink,
        Some(S_IFDIR) => ZipKind::Other(Kind::Dir),
        Some(S_IFCHR) => ZipKind::Other(Kind::Special("character device")),
        Some(S_IFBLK) => ZipKind::Other(Kind::Special("block device")),
        Some(S_IFIFO) => ZipKind::Other(Kind::Special("FIFO")),
        Some(S_IFSOCK) => ZipKind::Other(Kind::Special("socket")),
        Some(S_IFREG) if !is_dir_name => ZipKind::Other(Kind::File),
        _ if is_dir_name => ZipKind::Other(Kind::Dir),
        _ => ZipKind::Other(Kind::File),
    }
}

fn zip_error(budget: &SharedBudget, err: ZipError) -> ArchiveError {
    match err {
        ZipError::Io(e) => classify(budget, e),
        ZipError::UnsupportedArchive(what) => ArchiveError::Unsupported(what.to_owned()),
        other => {
            if let Some(cause) = budget.borrow_mut().take_tripped() {
                return cause;
            }
            ArchiveError::Corrupt(other.to_string())
        }
    }
}

/// The file, counted for the deadline and I/O failures, and still seekable (zip needs that).
struct SeekableCounting(CountingReader<File>);

impl Read for SeekableCounting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Seek for SeekableCounting {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.inner_mut().seek(pos)
    }
}
