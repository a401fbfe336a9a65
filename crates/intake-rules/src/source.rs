//! Where components read an archive's files: an extracted directory, or the files an in-memory
//! extraction kept (a small archive never written to disk). Both answer the same questions the
//! same way: regular files only, links never followed, paths `/`-separated and relative to the
//! archive root.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

/// An archive's files, relative to its root.
#[derive(Debug, Clone, Copy)]
pub enum FileSource<'a> {
    /// An extracted tree: the archive root on disk.
    Dir(&'a Path),
    /// Files held in memory.
    Memory(&'a MemoryFiles),
}

/// Regular files (path → content) and directories of an archive root, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryFiles {
    /// `/`-separated paths relative to the archive root, sorted.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Every directory below the root (not the root itself).
    pub dirs: BTreeSet<String>,
}

/// A relative path as the map holds it (`./a/b` is `a/b`).
fn key(rel: &str) -> &str {
    let mut rel = rel;
    while let Some(rest) = rel.strip_prefix("./") {
        rel = rest;
    }
    rel.trim_end_matches('/')
}

impl<'a> FileSource<'a> {
    /// The content of the regular file at `rel`, when it is one and holds at most `max_bytes`.
    pub fn read_bounded(&self, rel: &str, max_bytes: u64) -> Option<Vec<u8>> {
        match self {
            FileSource::Dir(root) => {
                let path = root.join(rel);
                let meta = std::fs::symlink_metadata(&path).ok()?;
                if !meta.is_file() || meta.len() > max_bytes {
                    return None;
                }
                std::fs::read(&path).ok()
            }
            FileSource::Memory(m) => m
                .files
                .get(key(rel))
                .filter(|c| c.len() as u64 <= max_bytes)
                .cloned(),
        }
    }

    /// The content of the file at `rel`; `NotFound` when there is none.
    pub fn read(&self, rel: &str) -> io::Result<Cow<'a, [u8]>> {
        match self {
            FileSource::Dir(root) => std::fs::read(root.join(rel)).map(Cow::Owned),
            FileSource::Memory(m) => match m.files.get(key(rel)) {
                Some(content) => Ok(Cow::Borrowed(content.as_slice())),
                None if m.dirs.contains(key(rel)) => Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "Is a directory",
                )),
                None => Err(io::ErrorKind::NotFound.into()),
            },
        }
    }

    /// Whether `rel` is a regular file.
    pub fn is_file(&self, rel: &str) -> bool {
        match self {
            FileSource::Dir(root) => root.join(rel).is_file(),
            FileSource::Memory(m) => m.files.contains_key(key(rel)),
        }
    }

    /// Whether `rel` is a directory.
    pub fn is_dir(&self, rel: &str) -> bool {
        match self {
            FileSource::Dir(root) => root.join(rel).is_dir(),
            FileSource::Memory(m) => m.dirs.contains(key(rel)),
        }
    }

    /// Every regular file, as sorted `/`-separated relative paths (links not followed).
    pub fn list_files(&self) -> Vec<String> {
        match self {
            FileSource::Dir(root) => crate::specs::list_files(root),
            FileSource::Memory(m) => m.files.keys().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_and_memory_answer_alike() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config/sub")).unwrap();
        std::fs::write(dir.path().join("config/id"), b"abc").unwrap();
        std::fs::write(dir.path().join("top.txt"), b"0123456789").unwrap();
        let mut m = MemoryFiles::default();
        m.files.insert("config/id".into(), b"abc".to_vec());
        m.files.insert("top.txt".into(), b"0123456789".to_vec());
        m.dirs
            .extend(["config".to_owned(), "config/sub".to_owned()]);
        let (disk, memory) = (FileSource::Dir(dir.path()), FileSource::Memory(&m));
        for s in [disk, memory] {
            assert_eq!(s.list_files(), ["config/id", "top.txt"]);
            assert_eq!(s.read_bounded("config/id", 3).as_deref(), Some(&b"abc"[..]));
            assert_eq!(
                s.read_bounded("./config/id", 3).as_deref(),
                Some(&b"abc"[..])
            );
            assert_eq!(s.read_bounded("top.txt", 9), None);
            assert_eq!(s.read_bounded("config", 100), None);
            assert_eq!(s.read_bounded("missing", 100), None);
            assert_eq!(s.read("config/id").unwrap().as_ref(), b"abc");
            assert_eq!(
                s.read("missing").unwrap_err().kind(),
                io::ErrorKind::NotFound
            );
            assert!(s.read("config").is_err());
            assert!(s.is_file("config/id") && !s.is_file("config"));
            assert!(s.is_dir("config/sub") && !s.is_dir("config/id"));
        }
    }
}
