//! Payloads announced (or about to be) that have no verdict yet: one small JSON record per payload
//! in a folder of the data directory, so that a payload left in quarantine can be announced again
//! after a restart (spec messages.md, "A verdict is about content only").
//!
//! ```text
//! <dir>/<request id>.new    written (and fsync'd) while the announce is handed off
//! <dir>/<request id>.json   the same record once the hand-off was acknowledged (a rename)
//! ```
//!
//! A `.new` record left by an earlier process means the process stopped before the announce was
//! acknowledged (or just after); [`crate::sweeper`] announces it. A `.json` record's modification time
//! is its last announce. The record goes when the verdict has moved the payload out of quarantine,
//! when the upload is discarded, or when the sweeper finds the payload gone or gives up on it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use intake_core::messages::Announce;
use serde::{Deserialize, Serialize};

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
    /// `false` for a `.new` record: the announce was never acknowledged.
    pub announced: bool,
    /// The record's last write: its last announce, for an announced record.
    pub modified: SystemTime,
}

/// The folder of records, and how many payloads it holds records of: the backlog that admission
/// control limits (spec ingress.md, "Admission"). The count follows every record written and
/// removed here, and each sweeper pass sets it to what the folder lists, so that a drift (a record
/// removed by hand, a reused request id) lasts one pass at most.
#[derive(Debug, Clone)]
pub struct Pending {
    dir: PathBuf,
    count: Arc<AtomicU64>,
    /// Uploads admitted and not yet ended (their records may not be written yet).
    admitting: Arc<AtomicU64>,
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

const NEW: &str = "new";
const ANNOUNCED: &str = "json";
const TEMP: &str = "tmp";

impl Pending {
    /// Opens (creating) the folder and removes rewrites a stopped process left half done.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for item in std::fs::read_dir(&dir)? {
            let path = item?.path();
            if path.extension().is_some_and(|e| e == TEMP) {
                std::fs::remove_file(&path)?;
            }
        }
        let count = Arc::new(AtomicU64::new(payloads(&list_blocking(&dir)?)));
        Ok(Self {
            dir,
            count,
            admitting: Arc::default(),
        })
    }

    /// Payloads with a record: accepted, and no verdict applied yet.
    pub fn backlog(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
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

    /// Sets the count to what a listing of the folder found.
    pub fn recount(&self, listed: &[Entry]) {
        self.count.store(payloads(listed), Ordering::Relaxed);
    }

    fn path(&self, request_id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{request_id}.{ext}"))
    }

    /// Writes the `.new` record of `announce`, durably, before its hand-off.
    pub async fn record(&self, announce: &Announce) -> std::io::Result<()> {
        let record = Record {
            announce: announce.clone(),
            reannounced: 0,
        };
        let path = self.path(&announce.request_id, NEW);
        let other = self.path(&announce.request_id, ANNOUNCED);
        if write_durably(path, record, Some(other)).await? {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The hand-off was acknowledged: the `.new` record becomes `.json`.
    pub async fn announced(&self, request_id: &str) -> std::io::Result<()> {
        tokio::fs::rename(self.path(request_id, NEW), self.path(request_id, ANNOUNCED)).await
    }

    /// Whether `request_id` has a record whose announce was never acknowledged.
    pub async fn is_unannounced(&self, request_id: &str) -> bool {
        tokio::fs::try_exists(self.path(request_id, NEW))
            .await
            .unwrap_or(false)
    }

    /// Reads a record.
    pub async fn read(&self, request_id: &str, announced: bool) -> std::io::Result<Record> {
        let ext = if announced { ANNOUNCED } else { NEW };
        let bytes = tokio::fs::read(self.path(request_id, ext)).await?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    /// Replaces the announced record (after an announce again; its time becomes now).
    pub async fn rewrite(&self, record: Record) -> std::io::Result<()> {
        let id = record.announce.request_id.clone();
        let temp = self.path(&id, TEMP);
        write_durably(temp.clone(), record, None).await?;
        tokio::fs::rename(&temp, self.path(&id, ANNOUNCED)).await?;
        // A `.new` record of the same payload is now superseded.
        let new = self.path(&id, NEW);
        let _ = tokio::task::spawn_blocking(move || remove_quietly(&new)).await;
        Ok(())
    }

    /// Removes every record of `request_id` (a missing one is fine), in one trip to the blocking
    /// pool.
    pub async fn forget(&self, request_id: &str) {
        let paths = [self.path(request_id, NEW), self.path(request_id, ANNOUNCED)];
        let removed = tokio::task::spawn_blocking(move || {
            // Both, whatever the first one finds.
            let [new, announced] = paths.map(|path| remove_quietly(&path));
            new || announced
        })
        .await
        .unwrap_or(false);
        if removed {
            // Never below zero: a recount may have already left this record out.
            let _ = self
                .count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Every record, unordered.
    pub async fn list(&self) -> std::io::Result<Vec<Entry>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || list_blocking(&dir))
            .await
            .map_err(std::io::Error::other)?
    }
}

fn list_blocking(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((id, ext)) = name.split_once('.') else {
            continue;
        };
        let announced = match ext {
            NEW => false,
            ANNOUNCED => true,
            _ => continue,
        };
        // A record removed while listing is simply skipped.
        let Ok(modified) = item.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        entries.push(Entry {
            request_id: id.to_owned(),
            announced,
            modified,
        });
    }
    Ok(entries)
}

/// How many payloads `entries` hold records of (a payload may have a `.new` and a `.json`).
fn payloads(entries: &[Entry]) -> u64 {
    let ids: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.request_id.as_str()).collect();
    ids.len() as u64
}

/// Writes `record` to `path` and syncs it. Returns whether it is a new payload's record: neither
/// `path` nor `other` (the payload's record under its other name) existed before.
async fn write_durably(
    path: PathBuf,
    record: Record,
    other: Option<PathBuf>,
) -> std::io::Result<bool> {
    let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    tokio::task::spawn_blocking(move || {
        let (mut file, fresh) = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => (file, true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                (std::fs::File::create(&path)?, false)
            }
            Err(e) => return Err(e),
        };
        file.write_all(&bytes)?;
        file.sync_data()?;
        Ok(fresh && !other.is_some_and(|o| o.exists()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Removes `path`; whether there was one to remove. Blocking.
fn remove_quietly(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a pending-announce record");
            false
        }
    }
}
