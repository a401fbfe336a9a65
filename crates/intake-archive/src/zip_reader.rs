//! Walks a zip archive through its central directory. Only stored and deflated, unencrypted
//! entries are read; every decompressed byte is counted, whatever the headers declare.

use std::io::{Read, Seek, SeekFrom};

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

pub(crate) fn walk<R: Read + Seek>(
    mut file: R,
    walker: &mut Walker,
    sink: &mut dyn EntrySink,
) -> Result<(), ArchiveError> {
    let budget = walker.budget().clone();
    // The zip crate holds the whole central directory in memory: refuse an oversized one from
    // the end record's count before it is parsed.
    let max_files = budget.borrow().limits().max_files;
    if let Some(declared) = declared_entries(&mut file)? {
        if declared > max_files {
            return Err(ArchiveError::TooManyFiles { limit: max_files });
        }
    }
    file.seek(SeekFrom::Start(0))?;
    let reader = CountingReader::new(file, budget.clone(), Layer::File);
    let mut archive =
        zip::ZipArchive::new(SeekableCounting(reader)).map_err(|e| zip_error(&budget, e))?;
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

/// Size of the end-of-central-directory record without its comment.
const EOCD_LEN: u64 = 22;
/// Farthest from the end the record can start (its comment is at most 65535 bytes).
const EOCD_SEARCH: u64 = EOCD_LEN + 65535;

/// The entry count the end-of-central-directory record declares (zip64 when it says so), or
/// `None` when no record is found (the zip crate then reports the archive as corrupt).
fn declared_entries<R: Read + Seek>(file: &mut R) -> Result<Option<u64>, ArchiveError> {
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(EOCD_SEARCH);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.by_ref().take(EOCD_SEARCH).read_to_end(&mut tail)?;
    let Some(at) = tail.windows(4).rposition(|w| w == b"PK\x05\x06") else {
        return Ok(None);
    };
    let record = &tail[at..];
    if record.len() < EOCD_LEN as usize {
        return Ok(None);
    }
    let count = u16::from_le_bytes([record[10], record[11]]);
    if count != u16::MAX {
        return Ok(Some(u64::from(count)));
    }
    // Zip64: the locator sits just before the record and points at the zip64 end record.
    let Some(locator) = at.checked_sub(20).map(|l| &tail[l..at]) else {
        return Ok(None);
    };
    if &locator[..4] != b"PK\x06\x07" {
        return Ok(None);
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&locator[8..16]);
    file.seek(SeekFrom::Start(u64::from_le_bytes(offset)))?;
    let mut zip64 = [0u8; 40];
    if file.read_exact(&mut zip64).is_err() || &zip64[..4] != b"PK\x06\x06" {
        return Ok(None);
    }
    let mut total = [0u8; 8];
    total.copy_from_slice(&zip64[32..40]);
    Ok(Some(u64::from_le_bytes(total)))
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

/// The archive, counted for the deadline and I/O failures, and still seekable (zip needs that).
struct SeekableCounting<R>(CountingReader<R>);

impl<R: Read> Read for SeekableCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read + Seek> std::io::Seek for SeekableCounting<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.inner_mut().seek(pos)
    }
}
