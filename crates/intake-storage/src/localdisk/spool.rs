//! Streaming a large body to a file on a thread of its own: the request's task only reads the body
//! and hands chunks over; hashing and writing run beside it, and the disk starts writing back while
//! the body still arrives, so the final fsync has little left to do.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// Bytes in flight between the reading task and the writing thread, the memory one upload holds
/// beyond the multipart parser's buffer. Chunks are what the parser had when polled: ~400 KiB on
/// average, a few MiB at most.
const IN_FLIGHT_BYTES: u32 = 4 * 1024 * 1024;

/// Every this many bytes written, the written part is handed to the disk (an fdatasync on another
/// thread, at most one at a time) instead of piling up as dirty pages for the final fsync.
const WRITEBACK_EVERY: u64 = 32 * 1024 * 1024;

/// What the writing thread hands back once the body has ended.
pub(super) struct Spooled {
    pub file: File,
    pub size: u64,
    pub sha256: String,
}

/// A file being written by its own thread.
pub(super) struct Spool {
    chunks: mpsc::UnboundedSender<(Bytes, u32)>,
    budget: Arc<Semaphore>,
    writer: JoinHandle<std::io::Result<Spooled>>,
}

impl Spool {
    /// Creates `path` (create-only) on the blocking pool and starts the writing thread.
    pub async fn create(path: &Path) -> std::io::Result<Self> {
        let path = path.to_owned();
        let file = tokio::task::spawn_blocking(move || File::create_new(path))
            .await
            .map_err(std::io::Error::other)??;
        Ok(Self::start(file))
    }

    /// Starts the writing thread on an open file.
    fn start(file: File) -> Self {
        // Unbounded in count, bounded in bytes by `budget`.
        let (chunks, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(IN_FLIGHT_BYTES as usize));
        let runtime = tokio::runtime::Handle::current();
        let returned = budget.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let written = write_all(file, rx, &returned, &runtime);
            // Whatever is still queued will not be written: a sender waiting for room stops.
            returned.close();
            written
        });
        Self {
            chunks,
            budget,
            writer,
        }
    }

    /// Hands one chunk to the writing thread, waiting while [`IN_FLIGHT_BYTES`] are queued (a chunk
    /// larger than that waits for an empty queue). A failed write ends the thread; its error is
    /// returned here.
    pub async fn write(&mut self, chunk: Bytes) -> std::io::Result<()> {
        let cost = u32::try_from(chunk.len()).map_or(IN_FLIGHT_BYTES, |n| n.min(IN_FLIGHT_BYTES));
        let sent = match self.budget.acquire_many(cost).await {
            Ok(permit) => {
                permit.forget();
                self.chunks.send((chunk, cost)).is_ok()
            }
            Err(_) => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped taking chunks, so it has ended: its error says why.
        match (&mut self.writer).await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => Err(std::io::Error::other("the payload writer stopped early")),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Ends the body: waits for every chunk to be written and returns the file, its size and its
    /// SHA-256. The data is written but not yet fsync'd.
    pub async fn finish(self) -> std::io::Result<Spooled> {
        drop(self.chunks);
        self.writer.await.map_err(std::io::Error::other)?
    }
}

/// The writing thread: hash and write each chunk; every [`WRITEBACK_EVERY`] bytes start an
/// fdatasync of what is written so far on another blocking thread, unless one still runs.
fn write_all(
    mut file: File,
    mut chunks: mpsc::UnboundedReceiver<(Bytes, u32)>,
    budget: &Semaphore,
    runtime: &tokio::runtime::Handle,
) -> std::io::Result<Spooled> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut unsynced = 0u64;
    let mut flusher: Option<JoinHandle<()>> = None;
    while let Some((chunk, cost)) = chunks.blocking_recv() {
        hasher.update(&chunk);
        let written = file.write_all(&chunk);
        budget.add_permits(cost as usize);
        written?;
        size += chunk.len() as u64;
        unsynced += chunk.len() as u64;
        if unsynced >= WRITEBACK_EVERY && flusher.as_ref().is_none_or(|f| f.is_finished()) {
            // A second handle on the same file: the sync covers everything written through either.
            // Its outcome does not matter here; the final fsync reports any error.
            let early = file.try_clone()?;
            flusher = Some(runtime.spawn_blocking(move || {
                let _ = early.sync_data();
            }));
            unsynced = 0;
        }
    }
    Ok(Spooled {
        file,
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_every_chunk_in_order_and_hashes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payload");
        let mut spool = Spool::create(&path).await.unwrap();
        let mut expected = Vec::new();
        // Small chunks, and one larger than the whole in-flight budget.
        for i in 0..200u32 {
            let len = if i == 100 {
                IN_FLIGHT_BYTES as usize + 12345
            } else {
                1000 + i as usize
            };
            let chunk: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            spool.write(Bytes::from(chunk)).await.unwrap();
        }
        let spooled = spool.finish().await.unwrap();
        assert_eq!(spooled.size, expected.len() as u64);
        assert_eq!(spooled.sha256, hex::encode(Sha256::digest(&expected)));
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_disk_is_reported_to_the_writer_instead_of_blocking_it() {
        // /dev/full takes the open and fails every write with ENOSPC.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut spool = Spool::start(file);
        // Sizes that leave queued chunks holding most of the budget when the thread gives up, so
        // a sender would wait for room forever if the thread's end did not release it.
        let mib = 1024 * 1024;
        let sizes = [mib, 7 * mib, 2 * mib];
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            for size in sizes.iter().cycle().take(30) {
                spool.write(Bytes::from(vec![7u8; *size])).await?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await
        .expect("a failed write must not leave the sender waiting for room");
        let err = outcome.expect_err("writes to a full disk fail");
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC, got {err}");
    }
}
