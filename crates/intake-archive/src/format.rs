//! Format detection by magic bytes, and the decompressed stream a tar walk reads.

use std::fmt;
use std::io::{self, Cursor, Read};

use crate::limits::{classify, CountingReader, Layer, SharedBudget};
use crate::ArchiveError;

/// Most memory the xz decoder may use (xz -9 needs about 65 MiB).
const XZ_MEMORY_LIMIT: u64 = 128 << 20;

/// A supported archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    TarGz,
    TarXz,
    TarBz2,
    Tar,
    Zip,
}

impl Format {
    /// `tar.gz`, `tar.xz`, `tar.bz2`, `tar` or `zip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::TarGz => "tar.gz",
            Format::TarXz => "tar.xz",
            Format::TarBz2 => "tar.bz2",
            Format::Tar => "tar",
            Format::Zip => "zip",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const XZ: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const BZIP2: &[u8] = b"BZh";
const ZIP: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY: &[u8] = b"PK\x05\x06";
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Names the format of an archive whose first bytes (up to 512) are `head`.
pub fn detect(head: &[u8]) -> Result<Format, ArchiveError> {
    if head.starts_with(GZIP) {
        Ok(Format::TarGz)
    } else if head.starts_with(XZ) {
        Ok(Format::TarXz)
    } else if head.starts_with(BZIP2) {
        Ok(Format::TarBz2)
    } else if head.starts_with(ZIP) || head.starts_with(ZIP_EMPTY) {
        Ok(Format::Zip)
    } else if looks_like_tar(head) {
        Ok(Format::Tar)
    } else if head.starts_with(ZSTD) {
        Err(ArchiveError::Unsupported("zstd compression".into()))
    } else if head.is_empty() {
        Err(ArchiveError::NotAnArchive("the file is empty".into()))
    } else {
        Err(ArchiveError::NotAnArchive(
            "no known archive signature".into(),
        ))
    }
}

/// A tar header block: `ustar` at offset 257, or a valid v7 header checksum.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    let field = &head[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let Ok(recorded) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = head[..148]
        .iter()
        .chain(&head[156..512])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * 32;
    recorded == sum
}

/// Whether a decompressed stream starting with `head` holds a tar (an empty tar is a zero block).
fn holds_tar(head: &[u8]) -> bool {
    (head.len() == 512 && head.iter().all(|&b| b == 0)) || looks_like_tar(head)
}

/// The tar stream of a tar-family archive: decompressed, counted, and checked to be a tar.
pub(crate) fn tar_stream<R: Read + 'static>(
    format: Format,
    file: R,
    budget: &SharedBudget,
) -> Result<Box<dyn Read>, ArchiveError> {
    let raw = CountingReader::new(io::BufReader::new(file), budget.clone(), Layer::File);
    let decompressed: Box<dyn Read> = match format {
        Format::TarGz => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Format::TarXz => {
            let stream =
                xz2::stream::Stream::new_stream_decoder(XZ_MEMORY_LIMIT, xz2::stream::CONCATENATED)
                    .map_err(|e| ArchiveError::Corrupt(format!("xz decoder: {e}")))?;
            Box::new(xz2::read::XzDecoder::new_stream(
                io::BufReader::new(raw),
                stream,
            ))
        }
        Format::TarBz2 => Box::new(bzip2::read::MultiBzDecoder::new(raw)),
        Format::Tar => Box::new(raw),
        Format::Zip => return Err(ArchiveError::Unsupported("zip is not a tar stream".into())),
    };
    let mut counted = CountingReader::new(decompressed, budget.clone(), Layer::Unpacked);
    if format == Format::Tar {
        return Ok(Box::new(counted));
    }
    let mut head = Vec::with_capacity(512);
    (&mut counted)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| classify(budget, e))?;
    if !holds_tar(&head) {
        return Err(match detect(&head) {
            Ok(inner) if inner != Format::Tar => {
                ArchiveError::Unsupported(format!("nested compression ({inner} inside {format})"))
            }
            _ => ArchiveError::NotAnArchive(format!(
                "the {format} stream does not hold a tar archive"
            )),
        });
    }
    Ok(Box::new(Cursor::new(head).chain(counted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_name_the_format() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]).unwrap(), Format::TarGz);
        assert_eq!(detect(XZ).unwrap(), Format::TarXz);
        assert_eq!(detect(b"BZh91AY").unwrap(), Format::TarBz2);
        assert_eq!(detect(b"PK\x03\x04rest").unwrap(), Format::Zip);
        let mut ustar = vec![0u8; 512];
        ustar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&ustar).unwrap(), Format::Tar);
        assert!(matches!(
            detect(b"hello"),
            Err(ArchiveError::NotAnArchive(_))
        ));
        assert!(matches!(detect(ZSTD), Err(ArchiveError::Unsupported(_))));
    }
}
