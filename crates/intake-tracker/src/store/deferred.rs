//! A store whose database did not answer at start-up: every call fails as
//! [`StoreError::Unavailable`] with the reason (which names the database and its variable) until the
//! real store is [set](DeferredStore::set), after which every call goes to it. The tracker serves
//! its API and health in the meantime, not-ready, instead of exiting.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::{StatusStore, StoreError};
use crate::model::{
    BatchOutcome, NewStatus, Page, PayloadQuery, PayloadRow, RetentionReport, Scope, StatsData,
    StatusQuery, StatusRow,
};

/// A store opened later (see the module documentation).
pub struct DeferredStore {
    engine: &'static str,
    inner: OnceLock<Arc<dyn StatusStore>>,
    waiting: Mutex<String>,
}

impl DeferredStore {
    /// A store for `engine` that is not open yet, `why` saying what it waits for.
    pub fn new(engine: &'static str, why: String) -> Self {
        Self {
            engine,
            inner: OnceLock::new(),
            waiting: Mutex::new(why),
        }
    }

    /// Updates what the store waits for (the latest failure).
    pub fn set_waiting(&self, why: String) {
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) = why;
    }

    /// From now on every call goes to `store`. Only the first call counts.
    pub fn set(&self, store: Arc<dyn StatusStore>) {
        let _ = self.inner.set(store);
    }

    /// Whether the real store is there.
    pub fn is_open(&self) -> bool {
        self.inner.get().is_some()
    }

    fn store(&self) -> Result<&Arc<dyn StatusStore>, StoreError> {
        self.inner.get().ok_or_else(|| {
            StoreError::unavailable(
                self.waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            )
        })
    }
}

#[async_trait]
impl StatusStore for DeferredStore {
    fn engine(&self) -> &'static str {
        self.engine
    }

    async fn store_batch(&self, batch: &[NewStatus]) -> Result<BatchOutcome, StoreError> {
        self.store()?.store_batch(batch).await
    }

    async fn list_payloads(&self, query: &PayloadQuery) -> Result<Page<PayloadRow>, StoreError> {
        self.store()?.list_payloads(query).await
    }

    async fn payload(
        &self,
        request_id: &str,
        scope: &Scope,
    ) -> Result<Option<PayloadRow>, StoreError> {
        self.store()?.payload(request_id, scope).await
    }

    async fn payload_statuses(
        &self,
        payload: &PayloadRow,
        after_id: Option<i64>,
    ) -> Result<Vec<StatusRow>, StoreError> {
        self.store()?.payload_statuses(payload, after_id).await
    }

    async fn list_statuses(&self, query: &StatusQuery) -> Result<Page<StatusRow>, StoreError> {
        self.store()?.list_statuses(query).await
    }

    async fn stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<StatsData, StoreError> {
        self.store()?.stats(from, to, service, scope).await
    }

    async fn prepare_days(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<String>, StoreError> {
        self.store()?.prepare_days(first, last).await
    }

    async fn apply_retention(&self, cutoff: DateTime<Utc>) -> Result<RetentionReport, StoreError> {
        self.store()?.apply_retention(cutoff).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.store()?.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fails_with_the_reason_until_set_then_delegates() {
        let deferred = DeferredStore::new("sqlite", "db at x (VAR) does not answer".into());
        let err = deferred.ping().await.expect_err("not open yet");
        assert!(matches!(&err, StoreError::Unavailable { context, .. } if context.contains("VAR")));
        deferred.set_waiting("db at x (VAR) still down".into());
        let err = deferred.ping().await.expect_err("not open yet");
        assert!(err.to_string().contains("still down"), "{err}");
        let dir = std::env::temp_dir().join(format!("deferred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let real = super::super::open(&url).await.expect("sqlite opens");
        deferred.set(real);
        assert!(deferred.is_open());
        deferred.ping().await.expect("delegates to the open store");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
