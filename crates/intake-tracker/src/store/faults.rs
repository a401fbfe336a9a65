//! A wrapper that makes any store look down (every call fails with [`StoreError::Unavailable`]),
//! unable to write while it still answers reads (a full disk, a lock held elsewhere), refuse given
//! statuses (as the database refusing a row), or fail or hold back the batches of given request ids
//! (one transaction of several failing or slow), for tests of the ingest loop and health.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{StatusStore, StoreError};
use crate::model::{
    BatchOutcome, NewStatus, Page, PayloadQuery, PayloadRow, RetentionReport, Scope, StatsData,
    StatusQuery, StatusRow,
};

/// Switches for one [`FaultyStore`]; clone freely.
#[derive(Debug, Clone, Default)]
pub struct StoreFaults {
    down: Arc<AtomicBool>,
    write_error: Arc<Mutex<Option<String>>>,
    refused: Arc<Mutex<HashSet<String>>>,
    unwritable: Arc<Mutex<HashSet<String>>>,
    held: Arc<tokio::sync::watch::Sender<HashSet<String>>>,
    failed_calls: Arc<AtomicU64>,
}

impl StoreFaults {
    /// Every call fails as if the database were unreachable while `down` is true.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// While `Some`, every `store_batch` fails as unavailable with this text (as a database whose
    /// disk is full) while reads and pings still succeed.
    pub fn set_write_error(&self, error: Option<&str>) {
        *self
            .write_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error.map(str::to_owned);
    }

    /// A batch holding a status of this request id is refused as bad data.
    pub fn refuse_request_id(&self, request_id: &str) {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request_id.to_owned());
    }

    /// While `on`, a batch holding a status of this request id fails as unavailable (an outage that
    /// hits one transaction of several) and stores nothing.
    pub fn fail_writes_of(&self, request_id: &str, on: bool) {
        let mut unwritable = self
            .unwritable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if on {
            unwritable.insert(request_id.to_owned());
        } else {
            unwritable.remove(request_id);
        }
    }

    /// A batch holding a status of this request id waits, before it is stored, until
    /// [`release`](Self::release) (a slow transaction).
    pub fn hold(&self, request_id: &str) {
        self.held.send_modify(|held| {
            held.insert(request_id.to_owned());
        });
    }

    /// Lets the batches [`hold`](Self::hold) keeps waiting for `request_id` go on.
    pub fn release(&self, request_id: &str) {
        self.held.send_modify(|held| {
            held.remove(request_id);
        });
    }

    /// Calls that failed because of an injected fault.
    pub fn failed_calls(&self) -> u64 {
        self.failed_calls.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            self.failed_calls.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::unavailable("injected outage"));
        }
        Ok(())
    }
}

/// A store whose calls fail on demand.
pub struct FaultyStore {
    inner: Arc<dyn StatusStore>,
    faults: StoreFaults,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn StatusStore>) -> Self {
        Self {
            inner,
            faults: StoreFaults::default(),
        }
    }

    pub fn faults(&self) -> StoreFaults {
        self.faults.clone()
    }
}

#[async_trait]
impl StatusStore for FaultyStore {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn store_batch(&self, batch: &[NewStatus]) -> Result<BatchOutcome, StoreError> {
        self.faults.check()?;
        let write_error = self
            .faults
            .write_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(error) = write_error {
            self.faults.failed_calls.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::unavailable(error));
        }
        let refused = self
            .faults
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let unwritable = self
            .faults
            .unwritable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hit) = batch.iter().find(|s| unwritable.contains(&s.request_id)) {
            self.faults.failed_calls.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::unavailable(format!(
                "injected outage for {}",
                hit.request_id
            )));
        }
        let mut held = self.faults.held.subscribe();
        // The sender lives in `self.faults`, so waiting cannot end with it dropped.
        let _ = held
            .wait_for(|held| !batch.iter().any(|s| held.contains(&s.request_id)))
            .await;
        if let Some(bad) = batch.iter().find(|s| refused.contains(&s.request_id)) {
            self.faults.failed_calls.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::rejected(format!(
                "injected refusal of {}",
                bad.request_id
            )));
        }
        self.inner.store_batch(batch).await
    }

    async fn list_payloads(&self, query: &PayloadQuery) -> Result<Page<PayloadRow>, StoreError> {
        self.faults.check()?;
        self.inner.list_payloads(query).await
    }

    async fn payload(
        &self,
        request_id: &str,
        scope: &Scope,
    ) -> Result<Option<PayloadRow>, StoreError> {
        self.faults.check()?;
        self.inner.payload(request_id, scope).await
    }

    async fn payload_statuses(
        &self,
        payload: &PayloadRow,
        after_id: Option<i64>,
    ) -> Result<Vec<StatusRow>, StoreError> {
        self.faults.check()?;
        self.inner.payload_statuses(payload, after_id).await
    }

    async fn list_statuses(&self, query: &StatusQuery) -> Result<Page<StatusRow>, StoreError> {
        self.faults.check()?;
        self.inner.list_statuses(query).await
    }

    async fn stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<StatsData, StoreError> {
        self.faults.check()?;
        self.inner.stats(from, to, service, scope).await
    }

    async fn prepare_days(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<String>, StoreError> {
        self.faults.check()?;
        self.inner.prepare_days(first, last).await
    }

    async fn apply_retention(&self, cutoff: DateTime<Utc>) -> Result<RetentionReport, StoreError> {
        self.faults.check()?;
        self.inner.apply_retention(cutoff).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.faults.check()?;
        self.inner.ping().await
    }
}
