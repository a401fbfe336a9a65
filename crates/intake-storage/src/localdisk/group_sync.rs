//! Group commit for directory fsyncs. Every write, copy and delete makes its new or removed names
//! durable with an fsync of the bucket folder; one fsync covers every change made before it
//! started, so concurrent callers share one instead of queueing one each.
//!
//! Async callers wait as tasks, not threads: only the leader's fsync runs on the blocking pool.
//! (Waiting on a condition variable kept one blocking thread per waiter, so a burst of uploads grew
//! the pool by dozens of threads that were created, switched between and retired again.) Code that
//! already runs on a blocking thread for the whole of its write ([`GroupSync::sync_blocking`]) waits
//! there instead of handing off to the pool and back.

use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// One per bucket folder.
#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    state: Mutex<State>,
    done: Notify,
    /// The same signal as `done`, for callers waiting on a thread.
    done_blocking: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out: a caller takes one after its change is made.
    issued: u64,
    /// Every ticket up to this one is covered by a completed fsync.
    synced: u64,
    /// An fsync is running.
    running: bool,
}

impl GroupSync {
    /// Returns once an fsync of `dir` that started after this call has completed. A failed fsync
    /// fails its leader; callers it would have covered retry with a fsync of their own. Dropping
    /// the future is safe: a leader that goes away hands the lead to a waiter.
    pub(crate) async fn sync(&self, dir: &Path) -> std::io::Result<()> {
        let ticket = {
            let mut state = self.lock();
            state.issued += 1;
            state.issued
        };
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let covers = {
                let mut state = self.lock();
                if state.synced >= ticket {
                    return Ok(());
                }
                if state.running {
                    None
                } else {
                    // Lead: this fsync covers every ticket issued so far.
                    state.running = true;
                    Some(state.issued)
                }
            };
            let Some(covers) = covers else {
                notified.await;
                continue;
            };
            let mut lead = Lead {
                group: self,
                covered: None,
            };
            let dir = dir.to_owned();
            let result = tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            lead.covered = result.is_ok().then_some(covers);
            drop(lead);
            result?;
        }
    }

    /// [`GroupSync::sync`] for a caller on a blocking thread: it waits on this thread and, when it
    /// leads, runs the fsync here. Shares its groups with async callers.
    pub(crate) fn sync_blocking(&self, dir: &Path) -> std::io::Result<()> {
        let mut state = self.lock();
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if state.running {
                state = self
                    .done_blocking
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.running = true;
            let covers = state.issued;
            drop(state);
            let mut lead = Lead {
                group: self,
                covered: None,
            };
            let result = std::fs::File::open(dir).and_then(|d| d.sync_all());
            lead.covered = result.is_ok().then_some(covers);
            drop(lead);
            result?;
            state = self.lock();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The lead of one fsync: when it ends (done, failed or its caller gone), the next fsync may start
/// and every waiter looks again.
struct Lead<'a> {
    group: &'a GroupSync,
    /// The tickets the completed fsync covers.
    covered: Option<u64>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut state = self.group.lock();
        state.running = false;
        if let Some(covers) = self.covered {
            state.synced = state.synced.max(covers);
        }
        drop(state);
        self.group.done.notify_waiters();
        self.group.done_blocking.notify_all();
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "test tasks, each awaited before the test ends"
)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// `n` tasks, each syncing `dir` 20 times through `group`.
    fn async_callers(
        group: &Arc<GroupSync>,
        dir: &Path,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let (group, dir) = (group.clone(), dir.to_owned());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        group.sync(&dir).await.unwrap();
                    }
                })
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_all_return_after_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::default());
        for t in async_callers(&group, dir.path(), 16) {
            t.await.unwrap();
        }
        let state = group.lock();
        assert_eq!(state.issued, 320);
        assert_eq!(state.synced, 320);
        assert!(!state.running);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_on_threads_and_tasks_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, dir) = (group.clone(), dir.path().to_owned());
                tokio::task::spawn_blocking(move || {
                    for _ in 0..20 {
                        group.sync_blocking(&dir).unwrap();
                    }
                })
            })
            .collect();
        let tasks = async_callers(&group, dir.path(), 8);
        for t in threads.into_iter().chain(tasks) {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("every caller returns")
                .unwrap();
        }
        let state = group.lock();
        assert_eq!(state.issued, 320);
        assert_eq!(state.synced, 320);
        assert!(!state.running);
    }

    #[test]
    fn a_failed_sync_on_a_thread_is_reported() {
        let group = GroupSync::default();
        let missing = Path::new("/nonexistent/intake-group-sync");
        assert!(group.sync_blocking(missing).is_err());
        let state = group.lock();
        assert_eq!(state.synced, 0);
        assert!(!state.running, "a failed leader gives the lead back");
    }

    #[tokio::test]
    async fn a_failed_sync_is_reported() {
        let group = GroupSync::default();
        let missing = Path::new("/nonexistent/intake-group-sync");
        assert!(group.sync(missing).await.is_err());
        assert_eq!(group.lock().synced, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_that_goes_away_hands_the_lead_on() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::default());
        // Dropped while it leads (its fsync may still be running on the blocking pool).
        let mut leader = Box::pin(group.sync(dir.path()));
        let _ = futures::poll!(leader.as_mut());
        assert!(group.lock().running, "the first caller leads");
        let waiter = {
            let (group, dir) = (group.clone(), dir.path().to_owned());
            tokio::spawn(async move { group.sync(&dir).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(leader);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter finished")
            .unwrap()
            .unwrap();
        assert!(!group.lock().running);
    }
}
