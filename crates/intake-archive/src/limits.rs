//! The limits an archive is read under, and the running budget that enforces them.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::ArchiveError;

/// What to do with device files, FIFOs and sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialFiles {
    /// Refuse the whole archive ([`ArchiveError::SpecialFile`]); what a validator wants.
    Refuse,
    /// Skip the entry and count it in [`Summary::skipped`](crate::Summary::skipped); what the rules
    /// pipeline does (spec pipeline.md §6.3).
    Skip,
}

/// Bounds on reading one archive. Every byte limit counts bytes actually produced by the
/// decompressor, never sizes declared in headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most decompressed bytes in total, skipped entries and tar headers included.
    pub max_unpacked_size: u64,
    /// Most entries of any kind.
    pub max_files: u64,
    /// Largest single file.
    pub max_file_size: u64,
    /// Most path components in an entry name.
    pub max_depth: usize,
    /// Longest time one call may take, checked per entry and while bytes flow.
    pub timeout: Duration,
    pub special_files: SpecialFiles,
}

impl Default for Limits {
    /// The defaults of spec pipeline.md §6: 1 GiB unpacked, 10000 entries, 100 MiB per file,
    /// depth 32, 60 s; special files refused.
    fn default() -> Self {
        Self {
            max_unpacked_size: 1 << 30,
            max_files: 10_000,
            max_file_size: 100 << 20,
            max_depth: 32,
            timeout: Duration::from_secs(60),
            special_files: SpecialFiles::Refuse,
        }
    }
}

/// The running count of one call, shared by the readers that feed it. When a reader trips a
/// limit it records the cause here and fails with an opaque I/O error; the caller then reports the
/// recorded cause, whatever the decompressor or tar parser made of that error on the way up.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    deadline: Instant,
    unpacked: u64,
    tripped: Option<ArchiveError>,
}

pub(crate) type SharedBudget = Rc<RefCell<Budget>>;

impl Budget {
    pub(crate) fn new(limits: &Limits) -> SharedBudget {
        let deadline = Instant::now() + limits.timeout;
        Rc::new(RefCell::new(Budget {
            limits: limits.clone(),
            deadline,
            unpacked: 0,
            tripped: None,
        }))
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn check_deadline(&self) -> Result<(), ArchiveError> {
        if Instant::now() >= self.deadline {
            Err(ArchiveError::Deadline(self.limits.timeout))
        } else {
            Ok(())
        }
    }

    /// Counts `n` freshly decompressed bytes.
    pub(crate) fn add_unpacked(&mut self, n: u64) -> Result<(), ArchiveError> {
        self.unpacked = self.unpacked.saturating_add(n);
        if self.unpacked > self.limits.max_unpacked_size {
            return Err(ArchiveError::TooLarge {
                limit: self.limits.max_unpacked_size,
            });
        }
        self.check_deadline()
    }

    pub(crate) fn trip_with(&mut self, cause: ArchiveError) -> io::Error {
        let text = cause.to_string();
        if self.tripped.is_none() {
            self.tripped = Some(cause);
        }
        io::Error::other(text)
    }

    /// The cause recorded by a reader, if one tripped.
    pub(crate) fn take_tripped(&mut self) -> Option<ArchiveError> {
        self.tripped.take()
    }
}

/// Turns an error that surfaced from the reader stack into the cause: a limit recorded by a
/// counting reader wins, then a real I/O failure of the file, else the bytes are bad.
pub(crate) fn classify(budget: &SharedBudget, err: io::Error) -> ArchiveError {
    if let Some(cause) = budget.borrow_mut().take_tripped() {
        return cause;
    }
    if err.kind() == io::ErrorKind::UnexpectedEof {
        ArchiveError::Truncated(err.to_string())
    } else {
        ArchiveError::Corrupt(err.to_string())
    }
}

/// Where a [`CountingReader`] sits in the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    /// Over the archive file: checks the deadline, records real I/O failures.
    File,
    /// Over the decompressed stream: counts unpacked bytes, checks the deadline.
    Unpacked,
}

/// A reader that feeds the [`Budget`].
pub(crate) struct CountingReader<R> {
    inner: R,
    budget: SharedBudget,
    layer: Layer,
}

impl<R: Read> CountingReader<R> {
    pub(crate) fn new(inner: R, budget: SharedBudget, layer: Layer) -> Self {
        Self {
            inner,
            budget,
            layer,
        }
    }

    pub(crate) fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut budget = self.budget.borrow_mut();
        if let Err(cause) = budget.check_deadline() {
            return Err(budget.trip_with(cause));
        }
        drop(budget);
        match self.inner.read(buf) {
            Ok(n) => {
                if self.layer == Layer::Unpacked {
                    let mut budget = self.budget.borrow_mut();
                    if let Err(cause) = budget.add_unpacked(n as u64) {
                        return Err(budget.trip_with(cause));
                    }
                }
                Ok(n)
            }
            Err(e) if self.layer == Layer::File && e.kind() != io::ErrorKind::Interrupted => {
                let text = e.to_string();
                let mut budget = self.budget.borrow_mut();
                budget.trip_with(ArchiveError::Io(e));
                Err(io::Error::other(text))
            }
            Err(e) => Err(e),
        }
    }
}
