//! A wrapper driver that injects failures, **for tests**: other crates use it to show what happens
//! when storage fails (503 answers, retries, nothing lost) without mocking the seam. It wraps a real
//! driver and, when told to, makes an operation fail with [`StorageError::Backend`] (an "unavailable"
//! error) before or, for `put_new`, during the write; after `as_no_space(true)` the failures are a
//! full disk ([`StorageError::NoSpace`]) instead.
//!
//! ```no_run
//! # async fn demo(inner: std::sync::Arc<dyn intake_storage::PayloadStore>) {
//! use intake_storage::faults::{Fault, FaultyStore, Operation};
//! let store = FaultyStore::new(inner);
//! let faults = store.faults();
//! faults.fail_put_after(1024, Fault::Always); // streams 1 KiB into the inner store, then fails
//! faults.set(Operation::Copy, Fault::Times(2)); // the next two copies fail, then copies pass
//! faults.set(Operation::Check, Fault::Hang); // checks wait without answering until cleared
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use intake_core::RequestId;

use crate::{Bucket, ByteStream, Object, ObjectMeta, PayloadStore, StorageError};

/// The operations a fault can be set on. `locate` goes through `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    PutNew,
    Head,
    Get,
    Copy,
    Delete,
    Url,
    Check,
}

/// How often an armed operation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every call fails until the fault is cleared.
    Always,
    /// The next `n` calls fail, then calls pass again.
    Times(u32),
    /// Every call waits without answering, as a store that stopped responding does, until the
    /// fault is cleared; then it goes through.
    Hang,
}

#[derive(Default)]
struct State {
    armed: HashMap<Operation, Fault>,
    /// For `put_new`: fail after this many bytes went to the inner store (or at the body's end, if it
    /// is shorter) instead of before the write starts.
    put_after_bytes: Option<u64>,
    /// Injected failures are a full disk ([`StorageError::NoSpace`]) instead of an unavailable
    /// backend.
    no_space: bool,
    calls: HashMap<Operation, u64>,
}

/// The switchboard of a [`FaultyStore`]; clones share it.
#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults(..)")
    }
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms `operation`. For [`Operation::PutNew`] the call fails before anything is written.
    pub fn set(&self, operation: Operation, fault: Fault) {
        let mut state = self.lock();
        state.armed.insert(operation, fault);
        if operation == Operation::PutNew {
            state.put_after_bytes = None;
        }
    }

    /// Arms `put_new` to stream `bytes` bytes into the inner store and then fail, as a store that
    /// breaks mid-upload does. The inner driver sees a body error and must leave nothing visible.
    pub fn fail_put_after(&self, bytes: u64, fault: Fault) {
        let mut state = self.lock();
        state.armed.insert(Operation::PutNew, fault);
        state.put_after_bytes = Some(bytes);
    }

    /// Makes every injected failure a full disk ([`StorageError::NoSpace`], ENOSPC) while `on`.
    pub fn as_no_space(&self, on: bool) {
        self.lock().no_space = on;
    }

    fn error(&self, operation: Operation) -> StorageError {
        let context = format!("{operation:?} (injected fault)");
        if self.lock().no_space {
            let full = std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device (injected)",
            );
            return StorageError::io(context, full);
        }
        StorageError::backend(context, "the store is failing on purpose")
    }

    /// Disarms `operation`.
    pub fn clear(&self, operation: Operation) {
        let mut state = self.lock();
        state.armed.remove(&operation);
        if operation == Operation::PutNew {
            state.put_after_bytes = None;
        }
    }

    /// Disarms everything (call counts are kept).
    pub fn clear_all(&self) {
        let mut state = self.lock();
        state.armed.clear();
        state.put_after_bytes = None;
    }

    /// How many times `operation` was called, failed or not.
    pub fn calls(&self, operation: Operation) -> u64 {
        self.lock().calls.get(&operation).copied().unwrap_or(0)
    }

    /// Counts the call, then waits while `operation` is armed to hang.
    async fn stall(&self, operation: Operation) {
        *self.lock().calls.entry(operation).or_default() += 1;
        while self.lock().armed.get(&operation) == Some(&Fault::Hang) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Decides whether the call (counted by [`Faults::stall`]) fails; `Some(after)` for a put that
    /// fails mid-stream.
    fn trip(&self, operation: Operation) -> Option<Option<u64>> {
        let mut state = self.lock();
        let fails = match state.armed.get_mut(&operation) {
            None | Some(Fault::Hang) => false,
            Some(Fault::Always) => true,
            Some(Fault::Times(0)) => false,
            Some(Fault::Times(n)) => {
                *n -= 1;
                true
            }
        };
        fails.then_some(if operation == Operation::PutNew {
            state.put_after_bytes
        } else {
            None
        })
    }
}

/// Marks the I/O error that [`FaultyStore`] puts into a body, so that it can be told apart from the
/// body's own errors.
#[derive(Debug, thiserror::Error)]
#[error("injected storage fault")]
struct InjectedFault;

/// A [`PayloadStore`] that passes every call to `inner` unless a fault is armed (see the module doc).
pub struct FaultyStore {
    inner: Arc<dyn PayloadStore>,
    faults: Faults,
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultyStore(..)")
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn PayloadStore>) -> Self {
        Self {
            inner,
            faults: Faults::default(),
        }
    }

    /// The handle that arms and clears faults; keep a clone in the test.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }
}

/// Passes `limit` bytes of `body` through, then yields an [`InjectedFault`] error (also when the
/// body ends first).
fn failing_after(body: ByteStream, limit: u64) -> ByteStream {
    let stream = futures::stream::unfold(
        (body, 0u64, false),
        move |(mut body, sent, done)| async move {
            if done {
                return None;
            }
            let fault = || Err(std::io::Error::other(InjectedFault));
            if sent >= limit {
                return Some((fault(), (body, sent, true)));
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    let room = usize::try_from(limit - sent).unwrap_or(usize::MAX);
                    let chunk: Bytes = if chunk.len() > room {
                        chunk.slice(..room)
                    } else {
                        chunk
                    };
                    let sent = sent + chunk.len() as u64;
                    Some((Ok(chunk), (body, sent, false)))
                }
                Some(Err(e)) => Some((Err(e), (body, sent, true))),
                None => Some((fault(), (body, sent, true))),
            }
        },
    );
    Box::pin(stream)
}

#[async_trait]
impl PayloadStore for FaultyStore {
    fn bucket_name(&self, bucket: Bucket) -> &str {
        self.inner.bucket_name(bucket)
    }

    async fn put_new(
        &self,
        bucket: Bucket,
        key: &RequestId,
        body: ByteStream,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta, StorageError> {
        self.faults.stall(Operation::PutNew).await;
        let body = match self.faults.trip(Operation::PutNew) {
            None => body,
            Some(None) => return Err(self.faults.error(Operation::PutNew)),
            Some(Some(limit)) => failing_after(body, limit),
        };
        self.inner
            .put_new(bucket, key, body, meta)
            .await
            .map_err(|e| match e {
                StorageError::Body(io)
                    if io
                        .get_ref()
                        .is_some_and(|inner| inner.is::<InjectedFault>()) =>
                {
                    self.faults.error(Operation::PutNew)
                }
                other => other,
            })
    }

    async fn head(&self, bucket: Bucket, key: &RequestId) -> Result<ObjectMeta, StorageError> {
        self.faults.stall(Operation::Head).await;
        if self.faults.trip(Operation::Head).is_some() {
            return Err(self.faults.error(Operation::Head));
        }
        self.inner.head(bucket, key).await
    }

    async fn get(&self, bucket: Bucket, key: &RequestId) -> Result<Object, StorageError> {
        self.faults.stall(Operation::Get).await;
        if self.faults.trip(Operation::Get).is_some() {
            return Err(self.faults.error(Operation::Get));
        }
        self.inner.get(bucket, key).await
    }

    async fn copy(&self, src: Bucket, dst: Bucket, key: &RequestId) -> Result<(), StorageError> {
        self.faults.stall(Operation::Copy).await;
        if self.faults.trip(Operation::Copy).is_some() {
            return Err(self.faults.error(Operation::Copy));
        }
        self.inner.copy(src, dst, key).await
    }

    async fn delete(&self, bucket: Bucket, key: &RequestId) -> Result<(), StorageError> {
        self.faults.stall(Operation::Delete).await;
        if self.faults.trip(Operation::Delete).is_some() {
            return Err(self.faults.error(Operation::Delete));
        }
        self.inner.delete(bucket, key).await
    }

    /// Counts as a delete: it is the delete step of a move.
    async fn retire(&self, key: &RequestId) -> Result<(), StorageError> {
        self.faults.stall(Operation::Delete).await;
        if self.faults.trip(Operation::Delete).is_some() {
            return Err(self.faults.error(Operation::Delete));
        }
        self.inner.retire(key).await
    }

    async fn sweep_retired(&self) -> Result<crate::Swept, StorageError> {
        self.inner.sweep_retired().await
    }

    async fn url(&self, bucket: Bucket, key: &RequestId) -> Result<String, StorageError> {
        self.faults.stall(Operation::Url).await;
        if self.faults.trip(Operation::Url).is_some() {
            return Err(self.faults.error(Operation::Url));
        }
        self.inner.url(bucket, key).await
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.faults.stall(Operation::Check).await;
        if self.faults.trip(Operation::Check).is_some() {
            return Err(self.faults.error(Operation::Check));
        }
        self.inner.check().await
    }
}
