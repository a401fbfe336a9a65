//! Group commit for directory fsyncs. Every write, copy and delete makes its new or removed names
//! durable with an fsync of the bucket folder; one fsync covers every change made before it
//! started, so concurrent callers share one instead of queueing one each.

use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};

/// One per bucket folder.
#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    state: Mutex<State>,
    done: Condvar,
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
    /// Returns once an fsync of `dir` that started after this call has completed. Blocking: call it
    /// on the blocking pool. A failed fsync fails its leader; callers it would have covered retry
    /// with a fsync of their own.
    pub(crate) fn sync(&self, dir: &Path) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if state.running {
                state = self
                    .done
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead: this fsync covers every ticket issued so far.
            state.running = true;
            let covers = state.issued;
            drop(state);
            let result = std::fs::File::open(dir).and_then(|d| d.sync_all());
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.running = false;
            if result.is_ok() {
                state.synced = state.synced.max(covers);
            }
            self.done.notify_all();
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_callers_all_return_after_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupSync::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (group, dir) = (group.clone(), dir.path().to_owned());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        group.sync(&dir).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let state = group.state.lock().unwrap();
        assert_eq!(state.issued, 320);
        assert_eq!(state.synced, 320);
        assert!(!state.running);
    }

    #[test]
    fn a_failed_sync_is_reported() {
        let group = GroupSync::default();
        let missing = Path::new("/nonexistent/intake-group-sync");
        assert!(group.sync(missing).is_err());
        assert_eq!(group.state.lock().unwrap().synced, 0);
    }
}
