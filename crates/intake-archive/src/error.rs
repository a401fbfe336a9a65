//! Why an archive was refused: one variant per cause, each with a stable reason code.

use std::time::Duration;

/// Why [`inspect`](crate::inspect) or [`extract`](crate::extract) refused an archive.
///
/// [`ArchiveError::code`] is the stable reason code used in validation reasons and dead-letter
/// headers (spec pipeline.md §6 and §11); the `Display` text is a sentence for a person.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The bytes are none of the supported formats (or a compressed stream that is not a tar).
    #[error("not an archive: {0}")]
    NotAnArchive(String),
    /// A recognised format using a feature intake does not read (encrypted or non-deflate zip
    /// entries, sparse tar entries, nested compression).
    #[error("unsupported archive feature: {0}")]
    Unsupported(String),
    /// The stream ends before the archive does.
    #[error("the archive is truncated: {0}")]
    Truncated(String),
    /// The stream is damaged (bad checksum, bad compressed data, inconsistent headers).
    #[error("the archive is corrupt: {0}")]
    Corrupt(String),
    /// No regular file in the archive.
    #[error("the archive holds no regular file")]
    Empty,
    /// An entry name is absolute or carries a drive letter.
    #[error("entry {0:?} has an absolute path")]
    AbsolutePath(String),
    /// An entry name has a `..` segment.
    #[error("entry {0:?} climbs out of the archive with '..'")]
    ParentTraversal(String),
    /// An entry name is longer than 4096 bytes.
    #[error("an entry name is {0} bytes long; at most 4096 are allowed")]
    NameTooLong(usize),
    /// An entry lies beneath a symbolic link, or a hard link points outside the archive's earlier
    /// regular files.
    #[error("entry {path:?} escapes through a link: {detail}")]
    LinkEscape { path: String, detail: String },
    /// A device file, FIFO or socket, while the limits say to refuse them.
    #[error("entry {path:?} is a {kind}, which is not allowed")]
    SpecialFile { path: String, kind: &'static str },
    /// More entries than `max_files`.
    #[error("the archive has more than {limit} entries")]
    TooManyFiles { limit: u64 },
    /// More decompressed bytes than `max_unpacked_size`.
    #[error("the archive expands past the {limit}-byte limit on unpacked size")]
    TooLarge { limit: u64 },
    /// One file larger than `max_file_size`.
    #[error("entry {path:?} is larger than the {limit}-byte limit for one file")]
    FileTooLarge { path: String, limit: u64 },
    /// A path with more components than `max_depth`.
    #[error("entry {path:?} is nested deeper than {limit} levels")]
    TooDeep { path: String, limit: usize },
    /// Reading took longer than the limits' timeout.
    #[error("reading the archive took longer than {0:?}")]
    Deadline(Duration),
    /// Reading the archive file or writing the extracted tree failed.
    #[error("archive I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ArchiveError {
    /// The stable reason code (spec pipeline.md §11, stage `extract`), plus `special_file` for a
    /// refused device, FIFO or socket.
    pub fn code(&self) -> &'static str {
        match self {
            ArchiveError::NotAnArchive(_) | ArchiveError::Unsupported(_) => "unsupported_format",
            ArchiveError::Truncated(_) | ArchiveError::Corrupt(_) => "corrupt_archive",
            ArchiveError::Empty => "empty_archive",
            ArchiveError::AbsolutePath(_)
            | ArchiveError::ParentTraversal(_)
            | ArchiveError::NameTooLong(_)
            | ArchiveError::LinkEscape { .. } => "unsafe_path",
            ArchiveError::SpecialFile { .. } => "special_file",
            ArchiveError::TooManyFiles { .. } => "too_many_files",
            ArchiveError::TooLarge { .. } => "unpacked_too_large",
            ArchiveError::FileTooLarge { .. } => "file_too_large",
            ArchiveError::TooDeep { .. } => "path_too_deep",
            ArchiveError::Deadline(_) => "deadline_exceeded",
            ArchiveError::Io(_) => "io",
        }
    }

    /// Whether trying again may succeed: only local I/O failures; every other cause is in the
    /// archive's bytes and stays.
    pub fn is_transient(&self) -> bool {
        matches!(self, ArchiveError::Io(_))
    }
}
