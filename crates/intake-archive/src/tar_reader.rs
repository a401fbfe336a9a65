//! Walks a (decompressed) tar stream. The `tar` crate runs in raw mode so that GNU long names and
//! PAX headers are read here, with caps, instead of whole into memory.

use std::io::{self, Read};

use tar::EntryType;

use crate::limits::classify;
use crate::path::MAX_NAME_LEN;
use crate::walk::{EntrySink, Kind, RawEntry, Walker};
use crate::ArchiveError;

/// Largest PAX extended header read (real ones are a few hundred bytes).
const MAX_PAX_HEADER: u64 = 64 * 1024;

/// Metadata that extension headers set for the next real entry.
#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.link.is_none() && self.size.is_none()
    }
}

/// Walks every entry of the tar `stream`.
pub(crate) fn walk<R: Read>(
    stream: R,
    walker: &mut Walker,
    sink: &mut dyn EntrySink,
) -> Result<(), ArchiveError> {
    let budget = walker.budget().clone();
    let mut archive = tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|e| classify(&budget, e))?
        .raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| classify(&budget, e))?;
        let header_size = entry
            .header()
            .entry_size()
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        let entry_type = entry.header().entry_type();
        match entry_type {
            EntryType::GNULongName => {
                pending.name = Some(read_name(&mut entry, header_size, &budget)?);
                continue;
            }
            EntryType::GNULongLink => {
                pending.link = Some(read_name(&mut entry, header_size, &budget)?);
                continue;
            }
            EntryType::XHeader => {
                let data = read_capped(
                    &mut entry,
                    header_size,
                    MAX_PAX_HEADER,
                    &budget,
                    "PAX header",
                )?;
                apply_pax(&data, &mut pending)?;
                continue;
            }
            EntryType::XGlobalHeader => {
                // Global defaults (mtime, comments) change nothing that matters here.
                read_capped(
                    &mut entry,
                    header_size,
                    MAX_PAX_HEADER,
                    &budget,
                    "PAX global header",
                )?;
                continue;
            }
            _ => {}
        }
        if let Some(pax_size) = pending.size {
            // The tar crate (raw mode) read `header_size` bytes; a reader honouring the PAX size
            // would see different entries, so the archive means two things: refuse it.
            if pax_size != header_size {
                return Err(ArchiveError::Corrupt(format!(
                    "PAX size {pax_size} disagrees with the header size {header_size}"
                )));
            }
        }
        let name = match pending.name.take() {
            Some(n) => n,
            None => entry.path_bytes().into_owned(),
        };
        let link = pending
            .link
            .take()
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
        pending = Pending::default();
        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink(link.unwrap_or_default()),
            EntryType::Link => Kind::Hardlink(link.unwrap_or_default()),
            EntryType::Char => Kind::Special("character device"),
            EntryType::Block => Kind::Special("block device"),
            EntryType::Fifo => Kind::Special("FIFO"),
            EntryType::GNUSparse => {
                return Err(ArchiveError::Unsupported("sparse tar entries".into()))
            }
            other => {
                return Err(ArchiveError::Unsupported(format!(
                    "tar entry type {:?}",
                    other.as_byte() as char
                )))
            }
        };
        let declared_size = (kind == Kind::File).then_some(header_size);
        walker.visit(
            RawEntry {
                name: &name,
                kind,
                declared_size,
                content: &mut entry,
            },
            sink,
        )?;
    }
    if !pending.is_empty() {
        return Err(ArchiveError::Truncated(
            "extension header without the entry it describes".into(),
        ));
    }
    // The tar ends before its container does: read the rest (record padding, later gzip members)
    // so that the decompressor reaches each trailer and checks its CRC and length. A bad trailer
    // or a corrupt block after the tar's end refuses the archive like one inside it.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .map_err(|e| classify(&budget, e))?;
    Ok(())
}

/// Reads a GNU long name (NUL-terminated), refusing one over the name limit.
fn read_name(
    entry: &mut dyn Read,
    size: u64,
    budget: &crate::limits::SharedBudget,
) -> Result<Vec<u8>, ArchiveError> {
    if size > MAX_NAME_LEN as u64 + 1 {
        return Err(ArchiveError::NameTooLong(
            usize::try_from(size).unwrap_or(usize::MAX),
        ));
    }
    let mut data = read_capped(entry, size, MAX_NAME_LEN as u64 + 1, budget, "long name")?;
    if let Some(end) = data.iter().position(|&b| b == 0) {
        data.truncate(end);
    }
    Ok(data)
}

fn read_capped(
    entry: &mut dyn Read,
    size: u64,
    cap: u64,
    budget: &crate::limits::SharedBudget,
    what: &str,
) -> Result<Vec<u8>, ArchiveError> {
    if size > cap {
        return Err(ArchiveError::Corrupt(format!(
            "{what} of {size} bytes exceeds {cap}"
        )));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .take(cap)
        .read_to_end(&mut data)
        .map_err(|e| classify(budget, e))?;
    if (data.len() as u64) < size {
        return Err(ArchiveError::Truncated(format!(
            "{what} holds {} of its {size} bytes",
            data.len()
        )));
    }
    Ok(data)
}

/// Takes `path`, `linkpath` and `size` from a PAX extended header.
fn apply_pax(data: &[u8], pending: &mut Pending) -> Result<(), ArchiveError> {
    for ext in tar::PaxExtensions::new(data) {
        let ext =
            ext.map_err(|e: io::Error| ArchiveError::Corrupt(format!("bad PAX header: {e}")))?;
        match ext.key_bytes() {
            b"path" => pending.name = Some(ext.value_bytes().to_vec()),
            b"linkpath" => pending.link = Some(ext.value_bytes().to_vec()),
            b"size" => {
                let size = std::str::from_utf8(ext.value_bytes())
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| ArchiveError::Corrupt("bad PAX size".into()))?;
                pending.size = Some(size);
            }
            _ => {}
        }
    }
    Ok(())
}
