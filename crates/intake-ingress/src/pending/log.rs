//! The record log: one file of frames, appended by one writer thread that syncs once per batch of
//! changes (a group commit), and compacted when most of it is superseded.
//!
//! ```text
//! frame = body length: u32 LE | CRC-32 of the body: u32 LE | body: JSON of a `Frame`
//! ```
//!
//! A crash can leave the last batch half written: reading stops at the first frame that is
//! incomplete or fails its CRC, and the file is cut there. Only changes whose callers were not yet
//! answered can be in that tail (a durable change is answered after the sync).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::Record;

/// How many processes can have a log of their own in one folder.
const MAX_LOGS: u32 = 64;
const HEADER: usize = 8;
/// A record is a few KiB; a length past this is damage, not a record.
const MAX_BODY: u32 = 16 << 20;
/// Most changes one batch takes (one write, one sync).
const MAX_BATCH: usize = 4096;

/// One change, as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Frame<R> {
    /// The payload's record (new, or replacing the one before); `at` is its last announce, in
    /// milliseconds since the epoch.
    Put { record: R, announced: bool, at: u64 },
    /// The announce of the record put last was acknowledged.
    Announced { id: String },
    /// The payload has no record any more.
    Forget { id: String },
}

/// Where a payload's record is, and its state.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    offset: u64,
    len: u32,
    pub announced: bool,
    pub modified: SystemTime,
}

/// What the writer has written, for readers: the live records and the file they are in.
#[derive(Debug)]
pub(super) struct Index {
    pub slots: HashMap<String, Slot>,
    file: Arc<File>,
}

/// The index, shared by the handles and the writer, and how many records it holds.
#[derive(Debug)]
pub(super) struct Book {
    index: Mutex<Index>,
    pub count: AtomicU64,
    /// Syncs of the log for changes (one per batch that asked for one).
    pub syncs: AtomicU64,
}

impl Book {
    pub fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock leaves a consistent map (every change is one insert or
        // remove): keep serving it.
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The record of `id` if its state is `announced`; blocking (one positioned read).
    pub fn read(&self, id: &str, announced: bool) -> std::io::Result<Record> {
        let (file, slot) = {
            let index = self.index();
            match index.slots.get(id) {
                Some(slot) if slot.announced == announced => (index.file.clone(), slot.clone()),
                _ => return Err(std::io::ErrorKind::NotFound.into()),
            }
        };
        let mut bytes = vec![0; slot.len as usize];
        file.read_exact_at(&mut bytes, slot.offset)?;
        match decode(&bytes)? {
            Frame::Put { record, .. } => Ok(record),
            _ => Err(std::io::Error::other(
                "a record's place holds another change",
            )),
        }
    }
}

/// A change asked of the writer.
pub(super) enum Change {
    Put {
        record: Box<Record>,
        announced: bool,
    },
    Announced(String),
    Forget(String),
}

/// A change, whether its answer waits for the sync, and where the answer goes: for a put, whether
/// it is a new payload's record; for a forget, whether there was one.
pub(super) struct Op {
    pub change: Change,
    pub durable: bool,
    pub done: oneshot::Sender<std::io::Result<bool>>,
}

/// Log number `n` of a folder: its file, the file a compaction writes first, and its lock file.
/// Log 0 is `records.log` with `lock`; log `n` is `records-<n>.log` with `lock-<n>`.
pub(super) fn log_name(n: u32) -> String {
    if n == 0 {
        "records.log".to_owned()
    } else {
        format!("records-{n}.log")
    }
}

fn lock_name(n: u32) -> String {
    if n == 0 {
        "lock".to_owned()
    } else {
        format!("lock-{n}")
    }
}

fn compacting_name(n: u32) -> String {
    format!("{}.compact", log_name(n))
}

/// Opens a log of `dir`: the first one no other process holds (each process writes only its own;
/// its lock says so). Reads it (cutting a damaged tail), takes in the records of every other log
/// no process holds (left by a process that stopped) and of the one-file-per-record layout of
/// earlier versions, and starts the writer. Blocking. Returns the index, the writer's queue and
/// the writer's thread (which ends when the queue's last sender is dropped).
pub(super) fn open(
    dir: &Path,
    compact_above: u64,
) -> std::io::Result<(
    Arc<Book>,
    mpsc::UnboundedSender<Op>,
    std::thread::JoinHandle<()>,
)> {
    std::fs::create_dir_all(dir)?;
    let (number, lock) = claim(dir)?;
    remove_if_there(&dir.join(compacting_name(number)))?;
    let path = dir.join(log_name(number));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let (slots, len) = read_log(&file, &path)?;
    let book = Arc::new(Book {
        count: AtomicU64::new(slots.len() as u64),
        syncs: AtomicU64::new(0),
        index: Mutex::new(Index {
            slots,
            file: Arc::new(file),
        }),
    });
    let mut writer = Writer {
        dir: dir.to_path_buf(),
        number,
        book: book.clone(),
        file: book.index().file.clone(),
        len,
        live: 0,
        compact_above,
        _lock: lock,
    };
    writer.live = writer.live_bytes();
    writer.adopt_others()?;
    writer.import_files()?;
    if writer.len > writer.live {
        writer.compact()?;
    }
    let (ops, rx) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("ingress-pending".into())
        .spawn(move || writer.run(rx))?;
    Ok((book, ops, thread))
}

/// Takes the lock of the first log of `dir` that no process holds.
fn claim(dir: &Path) -> std::io::Result<(u32, File)> {
    for n in 0..MAX_LOGS {
        if let Some(lock) = try_lock(&dir.join(lock_name(n)))? {
            return Ok((n, lock));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::ResourceBusy,
        format!(
            "{} already has {MAX_LOGS} ingress processes writing to it; give instances data directories of their own",
            dir.display()
        ),
    ))
}

/// The lock at `path` if no process holds it.
fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The live records of a log read by [`read_log`]: each with its state and last announce.
fn live_records(
    file: &File,
    slots: HashMap<String, Slot>,
) -> std::io::Result<Vec<(Record, bool, SystemTime)>> {
    let mut records = Vec::with_capacity(slots.len());
    let mut frame = Vec::new();
    for slot in slots.into_values() {
        frame.resize(slot.len as usize, 0);
        file.read_exact_at(&mut frame, slot.offset)?;
        let Frame::Put { record, .. } = decode(&frame)? else {
            return Err(std::io::Error::other(
                "a record's place holds another change",
            ));
        };
        records.push((record, slot.announced, slot.modified));
    }
    Ok(records)
}

/// Reads every frame; cuts the file after the last good one. Returns the live records and the
/// length kept.
fn read_log(file: &File, path: &Path) -> std::io::Result<(HashMap<String, Slot>, u64)> {
    let total = file.metadata()?.len();
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut header = [0u8; HEADER];
    let mut body = Vec::new();
    loop {
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_BODY {
            break;
        }
        body.resize(len as usize, 0);
        if reader.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
            break;
        }
        let Ok(frame) = serde_json::from_slice::<Frame<Record>>(&body) else {
            break;
        };
        let frame_len = HEADER as u32 + len;
        match frame {
            Frame::Put {
                record,
                announced,
                at,
            } => {
                slots.insert(
                    record.announce.request_id,
                    Slot {
                        offset,
                        len: frame_len,
                        announced,
                        modified: from_millis(at),
                    },
                );
            }
            Frame::Announced { id } => {
                if let Some(slot) = slots.get_mut(&id) {
                    slot.announced = true;
                }
            }
            Frame::Forget { id } => {
                slots.remove(&id);
            }
        }
        offset += u64::from(frame_len);
    }
    if offset < total {
        tracing::warn!(
            path = %path.display(),
            kept = offset,
            dropped = total - offset,
            "the pending-announce log ends in a damaged or half-written part (a crash while writing); cutting it off"
        );
        file.set_len(offset)?;
        file.sync_all()?;
    }
    Ok((slots, offset))
}

/// Appends `frame` to `out`.
pub(super) fn encode<R: Serialize>(frame: &Frame<R>, out: &mut Vec<u8>) -> std::io::Result<u32> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    serde_json::to_writer(&mut *out, frame).map_err(std::io::Error::other)?;
    let body = &out[start + HEADER..];
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l <= MAX_BODY)
        .ok_or_else(|| std::io::Error::other("a pending-announce record over 16 MiB"))?;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(HEADER as u32 + len)
}

fn decode(frame: &[u8]) -> std::io::Result<Frame<Record>> {
    let body = frame
        .get(HEADER..)
        .ok_or_else(|| std::io::Error::other("a pending-announce frame too short"))?;
    serde_json::from_slice(body).map_err(std::io::Error::other)
}

pub(super) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What a written change does to the index.
enum Effect {
    Put { id: String, slot: Slot },
    Announced(String),
    Forget(String),
}

/// The one writer of the log: owns the file's end.
struct Writer {
    dir: PathBuf,
    /// Which log of the folder this is.
    number: u32,
    book: Arc<Book>,
    file: Arc<File>,
    /// The file's length: where the next batch goes.
    len: u64,
    /// Bytes of the frames the live records are in.
    live: u64,
    /// The log is compacted when longer than this and than four times the live bytes.
    compact_above: u64,
    _lock: File,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut buf = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.apply(batch, &mut buf);
            if self.len > self.compact_above && self.len > 4 * self.live {
                if let Err(e) = self.compact() {
                    tracing::warn!(error = %e, "compacting the pending-announce log failed; it keeps growing until the next try");
                }
            }
        }
    }

    /// Writes a batch: one write, then one sync if a change asks for it; answers each change.
    fn apply(&mut self, batch: Vec<Op>, buf: &mut Vec<u8>) {
        buf.clear();
        let at = millis(SystemTime::now());
        let mut planned = Vec::with_capacity(batch.len());
        let mut answers = Vec::with_capacity(batch.len());
        {
            let index = self.book.index();
            let mut put_here = std::collections::HashSet::new();
            for op in batch {
                let offset = self.len + buf.len() as u64;
                let effect = match op.change {
                    Change::Put { record, announced } => {
                        let frame = Frame::Put {
                            record: &record,
                            announced,
                            at,
                        };
                        encode(&frame, buf).map(|len| {
                            let id = record.announce.request_id.clone();
                            put_here.insert(id.clone());
                            let modified = from_millis(at);
                            Some(Effect::Put {
                                id,
                                slot: Slot {
                                    offset,
                                    len,
                                    announced,
                                    modified,
                                },
                            })
                        })
                    }
                    // Only of a record there is (a change of nothing is not written).
                    Change::Announced(id)
                        if index.slots.contains_key(&id) || put_here.contains(&id) =>
                    {
                        encode(&Frame::<Record>::Announced { id: id.clone() }, buf)
                            .map(|_| Some(Effect::Announced(id)))
                    }
                    Change::Forget(id)
                        if index.slots.contains_key(&id) || put_here.contains(&id) =>
                    {
                        encode(&Frame::<Record>::Forget { id: id.clone() }, buf)
                            .map(|_| Some(Effect::Forget(id)))
                    }
                    Change::Announced(_) | Change::Forget(_) => Ok(None),
                };
                if effect.is_err() {
                    // Nothing of a change that could not be encoded is written.
                    buf.truncate((offset - self.len) as usize);
                }
                planned.push(effect);
                answers.push((op.durable, op.done));
            }
        }
        if let Err(e) = self.file.write_all_at(buf, self.len) {
            // Whatever part went is cut off again; no change is made.
            let _ = self.file.set_len(self.len);
            for (_, done) in answers {
                let _ = done.send(Err(copy(&e)));
            }
            return;
        }
        self.len += buf.len() as u64;
        let results = self.record(planned);
        let mut durable = Vec::new();
        for ((wants_sync, done), result) in answers.into_iter().zip(results) {
            if wants_sync && result.is_ok() {
                durable.push((done, result));
            } else if let Err(Err(e)) = done.send(result) {
                // Nobody waits for this change's answer (a mark queued by `announced_later`).
                tracing::warn!(error = %e, "a pending-announce change nobody waits for failed");
            }
        }
        if durable.is_empty() {
            return;
        }
        let synced = self.file.sync_data();
        self.book.syncs.fetch_add(1, Ordering::Relaxed);
        for (done, result) in durable {
            let _ = done.send(match &synced {
                Ok(()) => result,
                Err(e) => Err(copy(e)),
            });
        }
    }

    /// Makes the written effects visible; per change, its answer (a change of nothing: `false`).
    fn record(
        &mut self,
        planned: Vec<std::io::Result<Option<Effect>>>,
    ) -> Vec<std::io::Result<bool>> {
        let book = self.book.clone();
        let mut index = book.index();
        let answers = planned
            .into_iter()
            .map(|effect| {
                Ok(match effect? {
                    None => false,
                    Some(Effect::Put { id, slot }) => {
                        self.live += u64::from(slot.len);
                        match index.slots.insert(id, slot) {
                            Some(old) => {
                                self.live -= u64::from(old.len);
                                false
                            }
                            None => true,
                        }
                    }
                    Some(Effect::Announced(id)) => {
                        if let Some(slot) = index.slots.get_mut(&id) {
                            slot.announced = true;
                        }
                        true
                    }
                    Some(Effect::Forget(id)) => match index.slots.remove(&id) {
                        Some(old) => {
                            self.live -= u64::from(old.len);
                            true
                        }
                        None => false,
                    },
                })
            })
            .collect();
        book.count
            .store(index.slots.len() as u64, Ordering::Relaxed);
        answers
    }

    fn live_bytes(&self) -> u64 {
        self.book
            .index()
            .slots
            .values()
            .map(|s| u64::from(s.len))
            .sum()
    }

    /// Appends `records` (each with its state and last announce) and syncs them.
    fn bring_in(&mut self, records: Vec<(Record, bool, SystemTime)>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut planned = Vec::with_capacity(records.len());
        for (record, announced, modified) in records {
            let offset = self.len + buf.len() as u64;
            let at = millis(modified);
            let len = encode(
                &Frame::Put {
                    record: &record,
                    announced,
                    at,
                },
                &mut buf,
            )?;
            planned.push(Ok(Some(Effect::Put {
                id: record.announce.request_id,
                slot: Slot {
                    offset,
                    len,
                    announced,
                    modified: from_millis(at),
                },
            })));
        }
        self.file.write_all_at(&buf, self.len)?;
        self.file.sync_data()?;
        self.len += buf.len() as u64;
        self.record(planned);
        Ok(())
    }

    /// Takes in the records of every other log of the folder that no process holds (its process
    /// stopped), then removes that log. One held by a running process is left to it.
    fn adopt_others(&mut self) -> std::io::Result<()> {
        let mine = self.number;
        for n in (0..MAX_LOGS).filter(|&n| n != mine) {
            let path = self.dir.join(log_name(n));
            if !path.exists() {
                continue;
            }
            let Some(_lock) = try_lock(&self.dir.join(lock_name(n)))? else {
                continue;
            };
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let (slots, _) = read_log(&file, &path)?;
            let records = live_records(&file, slots)?;
            let taken = records.len();
            self.bring_in(records)?;
            remove_if_there(&path)?;
            remove_if_there(&self.dir.join(compacting_name(n)))?;
            File::open(&self.dir)?.sync_all()?;
            if taken > 0 {
                tracing::info!(
                    records = taken,
                    from = %path.display(),
                    "took over the pending-announce records of a process that stopped"
                );
            }
        }
        Ok(())
    }

    /// Brings in the records of the one-file-per-record layout (`<id>.new`: announce not
    /// acknowledged, `<id>.json`: announced, `<id>.tmp`: a rewrite left half done), then removes
    /// the files. A file that cannot be read is left where it is, with a warning.
    fn import_files(&mut self) -> std::io::Result<()> {
        let mut found = Vec::new();
        for item in std::fs::read_dir(&self.dir)? {
            let path = item?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => remove_if_there(&path)?,
                Some("new") => found.push((path, false)),
                Some("json") => found.push((path, true)),
                _ => {}
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        // A payload with both: the `.json` is the later state.
        found.sort_by_key(|(_, announced)| *announced);
        let mut records = Vec::new();
        let mut imported = Vec::new();
        for (path, announced) in found {
            let read = std::fs::read(&path).and_then(|bytes| {
                serde_json::from_slice::<Record>(&bytes).map_err(std::io::Error::other)
            });
            let modified = std::fs::metadata(&path).and_then(|m| m.modified());
            match (read, modified) {
                (Ok(record), Ok(modified)) => records.push((record, announced, modified)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "a pending-announce record of an earlier version cannot be read; left in place");
                    continue;
                }
            }
            imported.push(path);
        }
        self.bring_in(records)?;
        for path in imported {
            remove_if_there(&path)?;
        }
        File::open(&self.dir)?.sync_all()?;
        tracing::info!(
            records = self.book.count.load(Ordering::Relaxed),
            "pending-announce records moved into {}",
            log_name(self.number)
        );
        Ok(())
    }

    /// Writes the live records to a new file and puts it in the log's place.
    fn compact(&mut self) -> std::io::Result<()> {
        let live: Vec<(String, Slot)> = self
            .book
            .index()
            .slots
            .iter()
            .map(|(id, slot)| (id.clone(), slot.clone()))
            .collect();
        let path = self.dir.join(compacting_name(self.number));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let mut buf = Vec::new();
        let mut moved = HashMap::with_capacity(live.len());
        let mut len = 0u64;
        let mut frame = Vec::new();
        for (id, slot) in live {
            frame.resize(slot.len as usize, 0);
            self.file.read_exact_at(&mut frame, slot.offset)?;
            let Frame::Put { record, .. } = decode(&frame)? else {
                return Err(std::io::Error::other(
                    "a record's place holds another change",
                ));
            };
            let offset = len + buf.len() as u64;
            let frame_len = encode(
                &Frame::Put {
                    record: &record,
                    announced: slot.announced,
                    at: millis(slot.modified),
                },
                &mut buf,
            )?;
            moved.insert(
                id,
                Slot {
                    offset,
                    len: frame_len,
                    ..slot
                },
            );
            if buf.len() >= 1 << 20 {
                file.write_all_at(&buf, len)?;
                len += buf.len() as u64;
                buf.clear();
            }
        }
        file.write_all_at(&buf, len)?;
        len += buf.len() as u64;
        file.sync_all()?;
        std::fs::rename(&path, self.dir.join(log_name(self.number)))?;
        File::open(&self.dir)?.sync_all()?;
        let file = Arc::new(file);
        let mut index = self.book.index();
        index.slots = moved;
        index.file = file.clone();
        drop(index);
        tracing::debug!(from = self.len, to = len, "pending-announce log compacted");
        self.file = file;
        self.len = len;
        self.live = len;
        Ok(())
    }
}

fn copy(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}
