//! Payloads announced (or about to be) that have no verdict yet: one record per payload, so that a
//! payload left in quarantine can be announced again after a restart (spec messages.md, "A verdict
//! is about content only").
//!
//! The records are kept in one log file, `<dir>/records.log`, appended by one writer thread
//! (module `log`): the changes that arrive while it writes go together in its next write and share one
//! `fdatasync`, so concurrent uploads pay for one sync between them, not one file each (create,
//! sync, rename, unlink). A record is:
//!
//! * put (synced) while the payload's first announce is handed off, not yet marked announced;
//! * marked announced once the hand-off was acknowledged (written, not waited for on disk: a
//!   crash before the next sync announces the payload once more);
//! * put again (synced) at each later announce, whose time it keeps;
//! * forgotten when the verdict has moved the payload out of quarantine, when the upload is
//!   discarded, or when the sweeper finds the payload gone or gives up on it.
//!
//! A record not marked announced that an earlier process left means it stopped before the
//! announce was acknowledged (or just after); [`crate::sweeper`] announces it. The log is rewritten
//! with only the live records when it is mostly superseded changes, and at each open. An earlier
//! version's folder of `<id>.new` / `<id>.json` files is brought into the log at open.
//!
//! Each process writes a log of its own, locked while it runs: several ingress processes sharing
//! a data directory take `records.log`, `records-1.log`, … in turn, and each announces again only
//! what it received. A process that opens the folder takes in the records of every log no running
//! process holds (one whose process stopped), so no record is left behind by a process that does
//! not come back.

mod log;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use intake_core::messages::Announce;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use self::log::{Book, Change, Op};

/// What is kept per payload: the announce as first published (its URL is signed again for each
/// new announce) and the announces made after the first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub announce: Announce,
    #[serde(default)]
    pub reannounced: u32,
}

/// One record as listed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub request_id: String,
    /// `false` while the announce was never acknowledged.
    pub announced: bool,
    /// The record's last put: its last announce, for an announced record.
    pub modified: SystemTime,
}

/// The records, and how many payloads they are of: the backlog that admission control limits
/// (spec ingress.md, "Admission").
#[derive(Debug, Clone)]
pub struct Pending {
    book: Arc<Book>,
    writer: Arc<Writer>,
    /// Uploads admitted and not yet ended (their records may not be written yet).
    admitting: Arc<AtomicU64>,
}

/// The writer's queue and thread: when the last handle goes, the queue closes and the thread is
/// waited for, so that the log's lock is free again (a reopen in this process finds it free).
#[derive(Debug)]
struct Writer {
    ops: Option<mpsc::UnboundedSender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.ops.take());
        if let Some(thread) = self.thread.take() {
            // It ends with its current batch; a panic there was already reported.
            let _ = thread.join();
        }
    }
}

/// An upload let in by [`Pending::admit`]: it holds its place in the backlog until dropped, when
/// its record (if it got one) holds it instead.
#[derive(Debug)]
pub struct Admitted(Arc<AtomicU64>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The log is compacted past this size (and four times what its live records take).
const COMPACT_ABOVE: u64 = 64 << 20;

impl Pending {
    /// Opens (creating) a log of the folder that no other process writes, takes in the records of
    /// logs whose processes stopped, and starts its writer.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        Self::open_compacting_above(dir, COMPACT_ABOVE)
    }

    fn open_compacting_above(dir: PathBuf, compact_above: u64) -> std::io::Result<Self> {
        let (book, ops, thread) = log::open(&dir, compact_above)?;
        Ok(Self {
            book,
            writer: Arc::new(Writer {
                ops: Some(ops),
                thread: Some(thread),
            }),
            admitting: Arc::default(),
        })
    }

    /// Payloads with a record: accepted, and no verdict applied yet.
    pub fn backlog(&self) -> u64 {
        self.book.count.load(Ordering::Relaxed)
    }

    /// Lets one more upload in if the backlog and the uploads already let in stay under `limit`;
    /// else the backlog counting the uploads already let in, for the refusal. Concurrent uploads
    /// never overshoot the limit together.
    pub fn admit(&self, limit: u64) -> Result<Admitted, u64> {
        let before = self.admitting.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(self.admitting.clone());
        let backlog = self.backlog();
        let taken = backlog.saturating_add(before);
        if taken >= limit {
            return Err(taken);
        }
        Ok(admitted)
    }

    /// Hands `change` to the writer and waits for its answer (after the sync if `durable`).
    async fn change(&self, change: Change, durable: bool) -> std::io::Result<bool> {
        let (done, answer) = oneshot::channel();
        let stopped = || std::io::Error::other("the pending-announce log's writer stopped");
        self.writer
            .ops
            .as_ref()
            .ok_or_else(stopped)?
            .send(Op {
                change,
                durable,
                done,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Records `announce`, durably, before its hand-off; not yet announced.
    pub async fn record(&self, announce: &Announce) -> std::io::Result<()> {
        let record = Record {
            announce: announce.clone(),
            reannounced: 0,
        };
        self.change(
            Change::Put {
                record: Box::new(record),
                announced: false,
            },
            true,
        )
        .await
        .map(drop)
    }

    /// The hand-off was acknowledged: the record is marked announced.
    pub async fn announced(&self, request_id: &str) -> std::io::Result<()> {
        self.change(Change::Announced(request_id.to_owned()), false)
            .await
            .map(drop)
    }

    /// The same as [`Pending::announced`], queued without waiting: an upload's 202 does not wait
    /// for the mark. Changes are applied in the order they are queued, so a later change of this
    /// handle sees it. Should it never be written (the process stops first, or the write fails,
    /// which the writer logs), the record stays unannounced and the next start announces the
    /// payload once more, which validators tolerate.
    pub fn announced_later(&self, request_id: &str) {
        let (done, _nobody_waits) = oneshot::channel();
        let queued = self.writer.ops.as_ref().is_some_and(|ops| {
            ops.send(Op {
                change: Change::Announced(request_id.to_owned()),
                durable: false,
                done,
            })
            .is_ok()
        });
        if !queued {
            tracing::warn!(request_id, "the pending-announce log's writer stopped; the payload is announced again at the next start");
        }
    }

    /// Whether `request_id` has a record whose announce was never acknowledged.
    pub async fn is_unannounced(&self, request_id: &str) -> bool {
        self.book
            .index()
            .slots
            .get(request_id)
            .is_some_and(|slot| !slot.announced)
    }

    /// Reads a record in the state `announced`; `NotFound` if there is none in that state.
    pub async fn read(&self, request_id: &str, announced: bool) -> std::io::Result<Record> {
        let book = self.book.clone();
        let id = request_id.to_owned();
        tokio::task::spawn_blocking(move || book.read(&id, announced))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Replaces the record, durably, as announced now (after an announce again).
    pub async fn rewrite(&self, record: Record) -> std::io::Result<()> {
        self.change(
            Change::Put {
                record: Box::new(record),
                announced: true,
            },
            true,
        )
        .await
        .map(drop)
    }

    /// Removes the record of `request_id` (a missing one is fine). Failures are logged: the
    /// sweeper removes a record whose payload left quarantine.
    pub async fn forget(&self, request_id: &str) {
        if let Err(e) = self
            .change(Change::Forget(request_id.to_owned()), false)
            .await
        {
            tracing::warn!(request_id, error = %e, "could not remove a pending-announce record");
        }
    }

    /// Every record, unordered.
    pub async fn list(&self) -> std::io::Result<Vec<Entry>> {
        Ok(self
            .book
            .index()
            .slots
            .iter()
            .map(|(id, slot)| Entry {
                request_id: id.clone(),
                announced: slot.announced,
                modified: slot.modified,
            })
            .collect())
    }
}
