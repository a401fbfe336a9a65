//! The status-store seam: [`StatusStore`], written in the tracker's words, with two drivers chosen
//! once at start-up by [`open`]: `sqlite` (embedded default, WAL) and `postgres` (day partitions).
//! Both run the same SQL text (built in [`sql`]) and pass one contract suite (`testsuite`).
//! [`faults::FaultyStore`] wraps any store to inject outages in tests.

pub mod deferred;
pub mod faults;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::model::{
    BatchOutcome, NewStatus, Page, PayloadQuery, PayloadRow, RetentionReport, Scope, StatsData,
    StatusQuery, StatusRow,
};

/// The failure underneath a [`StoreError`] (a sqlx, migration or I/O error), kept for
/// [`std::error::Error::source`]. Boxed rather than shared: `source()` then hands out the error
/// itself, which a caller can downcast (`Arc<dyn Error>` is an error of its own and would be what
/// `source()` returns, hiding the sqlx error's type).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in the store. Each kind holds what was being done (`context`, empty when the
/// cause says it all) and the underlying error when there is one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database does not answer (connection refused or lost, pool exhausted, locked). Retry later;
    /// nothing was stored.
    #[error("database unavailable: {}", with_cause(context, source))]
    Unavailable {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// The database refused the data itself (a constraint, a value out of range). Retrying the same
    /// rows fails again.
    #[error("database refused the data: {}", with_cause(context, source))]
    Rejected {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// The schema could not be created or migrated.
    #[error("database migration failed: {}", with_cause(context, source))]
    Migration {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// The database URL or options are wrong.
    #[error("bad database configuration: {}", with_cause(context, source))]
    Config {
        context: String,
        #[source]
        source: Option<Cause>,
    },
}

impl StoreError {
    /// [`StoreError::Unavailable`] without an underlying error.
    pub fn unavailable(context: impl Into<String>) -> Self {
        StoreError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// [`StoreError::Unavailable`] caused by `source`.
    pub fn unavailable_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// [`StoreError::Rejected`] without an underlying error.
    pub fn rejected(context: impl Into<String>) -> Self {
        StoreError::Rejected {
            context: context.into(),
            source: None,
        }
    }

    /// [`StoreError::Rejected`] caused by `source`.
    pub fn rejected_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Rejected {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// [`StoreError::Migration`] caused by `source`.
    pub fn migration_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Migration {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// [`StoreError::Config`] without an underlying error.
    pub fn config(context: impl Into<String>) -> Self {
        StoreError::Config {
            context: context.into(),
            source: None,
        }
    }

    /// [`StoreError::Config`] caused by `source`.
    pub fn config_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Config {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// What went wrong without the kind's prefix: the context, then the cause's message. This is
    /// what a dead letter's `dlq_detail` and the readiness answer carry.
    pub fn detail(&self) -> String {
        match self {
            StoreError::Unavailable { context, source }
            | StoreError::Rejected { context, source }
            | StoreError::Migration { context, source }
            | StoreError::Config { context, source } => with_cause(context, source),
        }
    }
}

/// `context`, then the cause's own message when there is one: log lines print errors with `%`,
/// which shows only the top error, and the cause is the part that says what the database answered.
fn with_cause(context: &str, source: &Option<Cause>) -> String {
    match source {
        Some(cause) if context.is_empty() => cause.to_string(),
        Some(cause) => format!("{context}: {cause}"),
        None => context.to_owned(),
    }
}

/// Where statuses live. Every method is one database round-trip or transaction; none holds a
/// transaction open across calls.
#[async_trait]
pub trait StatusStore: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn engine(&self) -> &'static str;

    /// Stores `batch` in **one transaction**: all of it or nothing. Creates each payload on its first
    /// status; a status whose dedup key (with its date) is already stored is skipped and counted as a
    /// duplicate. Tenant fields: the first non-empty value wins, later different ones are reported as
    /// conflicts. `created_at` becomes the earliest date seen; `last_*` the newest status (tie: the one
    /// stored last). Fails with [`StoreError::Unavailable`] when the database does not answer and with
    /// [`StoreError::Rejected`] when it refuses a row; in both cases nothing of the batch is stored.
    async fn store_batch(&self, batch: &[NewStatus]) -> Result<BatchOutcome, StoreError>;

    /// One page of payloads matching `query`, the exact number that match, and where the next page
    /// starts when more follow. Ties are broken by id.
    async fn list_payloads(&self, query: &PayloadQuery) -> Result<Page<PayloadRow>, StoreError>;

    /// The payload `request_id` if it exists and `scope` may see it.
    async fn payload(
        &self,
        request_id: &str,
        scope: &Scope,
    ) -> Result<Option<PayloadRow>, StoreError>;

    /// Every status of a payload with an id above `after_id` (all when `None`), oldest id first.
    async fn payload_statuses(
        &self,
        payload: &PayloadRow,
        after_id: Option<i64>,
    ) -> Result<Vec<StatusRow>, StoreError>;

    /// One page of statuses matching `query` (statuses without a source included), with the exact count.
    async fn list_statuses(&self, query: &StatusQuery) -> Result<Page<StatusRow>, StoreError>;

    /// Per-service counts and journeys over the statuses whose date lies in `[from, to)`.
    async fn stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<StatsData, StoreError>;

    /// Makes sure storage exists for statuses dated `first ..= last` (PostgreSQL: the day partitions,
    /// idempotent and safe across instances). Returns the partitions it created. SQLite: nothing to do.
    async fn prepare_days(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<String>, StoreError>;

    /// Deletes statuses dated before `cutoff` (PostgreSQL: drops every day partition that ended before
    /// it) and payloads whose last status is older than `cutoff`, in batches. Idempotent; one instance
    /// at a time on PostgreSQL.
    async fn apply_retention(&self, cutoff: DateTime<Utc>) -> Result<RetentionReport, StoreError>;

    /// The database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store a database URL names (`sqlite://<path>`, `postgres://…` or `postgresql://…`),
/// creating and migrating its schema.
pub async fn open(url: &str) -> Result<Arc<dyn StatusStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        Err(StoreError::config(
            "expected sqlite://<path> or postgres://user:pass@host:port/db",
        ))
    }
}

/// Sorts a sqlx error into unavailable (retry later) or rejected (the data). Only errors that name
/// the data itself count as rejected; anything else (full disk, locks, I/O, a lost connection, an
/// unexpected code) is an outage, because a rejected row is dead-lettered and its offset committed,
/// while an outage keeps it on the bus until it can be stored.
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let rejected = if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite primary codes (extended codes keep them in the low byte): 18 too big,
                // 19 constraint, 20 type mismatch, 25 bind parameter out of range.
                code.parse::<i64>()
                    .map(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
                    .unwrap_or(false)
            } else {
                // PostgreSQL classes 22 (data exception) and 23 (integrity constraint violation).
                code.starts_with("22") || code.starts_with("23")
            };
            if rejected {
                StoreError::rejected_from("", error)
            } else {
                StoreError::unavailable_from("", error)
            }
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => StoreError::rejected_from("", error),
        _ => StoreError::unavailable_from("", error),
    }
}

#[cfg(feature = "testsuite")]
pub mod testsuite;

#[cfg(test)]
mod tests;
