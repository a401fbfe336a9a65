//! Payloads announced (or about to be) that have no verdict yet: one small JSON record per payload
//! in a folder of the data directory, so that a payload left in quarantine can be announced again
//! after a restart (spec messages.md, "A verdict is about content only").
//!
//! ```text
//! <dir>/<request id>.new    written (and fsync'd) before the announce hand-off
//! <dir>/<request id>.json   the same record once the hand-off was acknowledged (a rename)
//! ```
//!
//! A `.new` record left by an earlier process means the process stopped between storing the
//! payload and its announce; [`crate::sweeper`] announces it. A `.json` record's modification time
//! is its last announce. The record goes when the verdict has moved the payload out of quarantine,
//! when the upload is discarded, or when the sweeper finds the payload gone or gives up on it.

use std::io::Write;
use std::path::{Path, PathBuf};
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

/// The folder of records.
#[derive(Debug, Clone)]
pub struct Pending {
    dir: PathBuf,
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
        Ok(Self { dir })
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
        write_durably(path, record).await
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
        write_durably(temp.clone(), record).await?;
        tokio::fs::rename(&temp, self.path(&id, ANNOUNCED)).await?;
        // A `.new` record of the same payload is now superseded.
        remove_quietly(&self.path(&id, NEW)).await;
        Ok(())
    }

    /// Removes every record of `request_id` (a missing one is fine).
    pub async fn forget(&self, request_id: &str) {
        remove_quietly(&self.path(request_id, NEW)).await;
        remove_quietly(&self.path(request_id, ANNOUNCED)).await;
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

async fn write_durably(path: PathBuf, record: Record) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&bytes)?;
        file.sync_data()
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn remove_quietly(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a pending-announce record")
        }
    }
}
