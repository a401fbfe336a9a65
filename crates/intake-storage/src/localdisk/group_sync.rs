//! Group commit for directory fsyncs. Every write, copy and delete makes its new or removed names
//! durable with an fsync of the bucket folder; one fsync covers every change made before it
//! started, so concurrent callers share one instead of queueing one each.
//!
//! Callers wait as tasks, not threads: only the leader's fsync runs on the blocking pool. (Waiting
//! on a condition variable kept one blocking thread per waiter, so a burst of uploads grew the
//! pool by dozens of threads that were created, switched between and retired again.)

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// One per bucket folder.
#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    state: Mutex<State>,
    done: Notify,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_all_return_after_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::default());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (group, dir) = (group.clone(), dir.path().to_owned());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        group.sync(&dir).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let state = group.lock();
        assert_eq!(state.issued, 320);
        assert_eq!(state.synced, 320);
        assert!(!state.running);
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
