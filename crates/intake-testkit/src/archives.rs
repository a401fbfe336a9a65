//! Fixture archives built in code: well-formed tar, tar.gz, tar.xz, tar.bz2 and zip, and hostile
//! ones. [`TarBuilder`] writes raw tar headers itself, so it can produce what the `tar` crate
//! refuses to write (`../` names, absolute names, links out of the tree, devices).

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

const BLOCK: usize = 512;

/// Builds a tar stream entry by entry, with any name, type and link target.
#[derive(Debug, Default, Clone)]
pub struct TarBuilder {
    out: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A regular file.
    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name.as_bytes(), b'0', data, b"", 0o644)
    }

    /// A regular file whose name is raw bytes (non-UTF-8 names).
    pub fn file_bytes(self, name: &[u8], data: &[u8]) -> Self {
        self.entry(name, b'0', data, b"", 0o644)
    }

    /// A directory (a trailing `/` is added when missing).
    pub fn dir(self, name: &str) -> Self {
        let name = if name.ends_with('/') {
            name.to_owned()
        } else {
            format!("{name}/")
        };
        self.entry(name.as_bytes(), b'5', b"", b"", 0o755)
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name.as_bytes(), b'2', b"", target.as_bytes(), 0o777)
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name.as_bytes(), b'1', b"", target.as_bytes(), 0o644)
    }

    pub fn char_device(self, name: &str) -> Self {
        self.entry(name.as_bytes(), b'3', b"", b"", 0o644)
    }

    pub fn fifo(self, name: &str) -> Self {
        self.entry(name.as_bytes(), b'6', b"", b"", 0o644)
    }

    /// Any entry. Names over 100 bytes get a GNU long-name entry first.
    pub fn entry(mut self, name: &[u8], typeflag: u8, data: &[u8], link: &[u8], mode: u32) -> Self {
        if name.len() > 100 {
            let mut long = name.to_vec();
            long.push(0);
            self.push_entry(b"././@LongLink", b'L', &long, b"", 0o644);
        }
        self.push_entry(&name[..name.len().min(100)], typeflag, data, link, mode);
        self
    }

    fn push_entry(&mut self, name: &[u8], typeflag: u8, data: &[u8], link: &[u8], mode: u32) {
        self.out
            .extend_from_slice(&header(name, typeflag, data.len() as u64, link, mode));
        self.out.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    /// The tar stream with its two zero end blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
        self.out
    }
}

/// One ustar header block.
fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8], mode: u32) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 1000);
    octal(&mut h[116..124], 1000);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = typeflag;
    let link = &link[..link.len().min(100)];
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// Writes `value` as zero-padded octal digits followed by NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// A small, well-formed insights-style tree: one top-level directory holding a few files.
pub fn sample_tar() -> Vec<u8> {
    TarBuilder::new()
        .dir("insights-web01")
        .dir("insights-web01/data")
        .file("insights-web01/data/hostname", b"web01\n")
        .file("insights-web01/data/uname", b"Linux web01 6.1.0 x86_64\n")
        .file(
            "insights-web01/branch_info",
            b"{\"remote_branch\": -1, \"remote_leaf\": -1}\n",
        )
        .finish()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(data).expect("xz into memory");
    enc.finish().expect("xz into memory")
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    enc.write_all(data).expect("bzip2 into memory");
    enc.finish().expect("bzip2 into memory")
}

/// Builds a zip archive.
pub struct ZipBuilder {
    writer: zip::ZipWriter<Cursor<Vec<u8>>>,
}

impl std::fmt::Debug for ZipBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipBuilder").finish_non_exhaustive()
    }
}

impl Default for ZipBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ZipBuilder {
    pub fn new() -> Self {
        Self {
            writer: zip::ZipWriter::new(Cursor::new(Vec::new())),
        }
    }

    /// A deflated file.
    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .large_file(true);
        self.writer
            .start_file(name, options)
            .expect("zip into memory");
        self.writer.write_all(data).expect("zip into memory");
        self
    }

    /// A stored (uncompressed) file.
    pub fn stored(mut self, name: &str, data: &[u8]) -> Self {
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        self.writer
            .start_file(name, options)
            .expect("zip into memory");
        self.writer.write_all(data).expect("zip into memory");
        self
    }

    pub fn dir(mut self, name: &str) -> Self {
        self.writer
            .add_directory(name, SimpleFileOptions::default())
            .expect("zip into memory");
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.writer
            .add_symlink(name, target, SimpleFileOptions::default())
            .expect("zip into memory");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.writer.finish().expect("zip into memory").into_inner()
    }
}

/// A zip holding one deflated file of `size` zero bytes: tiny on disk, large unpacked.
pub fn zip_bomb(size: usize) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(true);
    writer
        .start_file("zeros.bin", options)
        .expect("zip into memory");
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        writer.write_all(&chunk[..n]).expect("zip into memory");
        left -= n;
    }
    writer.finish().expect("zip into memory").into_inner()
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writing a fixture archive");
    path
}
