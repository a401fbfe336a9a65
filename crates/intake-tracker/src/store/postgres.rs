//! The PostgreSQL driver: `payload_statuses` partitioned by UTC day (`payload_statuses_YYYYMMDD`),
//! partitions created ahead by the tracker under an advisory lock, retention by dropping whole
//! partitions. The statements themselves are shared with the SQLite driver (`engine.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Days, NaiveDate, Utc};
use std::str::FromStr as _;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Row as _};

use super::{classify, StatusStore, StoreError};
use crate::model::{
    BatchOutcome, NewStatus, Page, PayloadQuery, PayloadRow, RetentionReport, Scope, StatsData,
    StatusQuery, StatusRow,
};

type Db = Postgres;
type Row = PgRow;

/// Advisory lock keys: partition creation and retention (one instance at a time across pods).
const PARTITION_LOCK: i64 = 0x7472_6b5f_7061_7274;
const RETENTION_LOCK: i64 = 0x7472_6b5f_7265_746e;
/// Longest the first connection may take before the server counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a PostgreSQL URL points, without its user or password: `host:port/database`.
pub fn describe_url(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or(o.get_username())
        ),
        Err(_) => "an unreadable URL".to_owned(),
    }
}

/// Sorts a connection error: rejected credentials (SQLSTATE class 28) and a database that does not
/// exist (3D000) are configuration errors; anything else is an outage.
fn classify_connect(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        if code.starts_with("28") || code == "3D000" {
            return StoreError::config_from("", error);
        }
    }
    match classify(error) {
        StoreError::Rejected { context, source } => StoreError::Unavailable { context, source },
        other => other,
    }
}

/// What the server said when it refused the tracker (rejected credentials, no such database), in
/// its own words as an operator reads them; any other error's detail. Never holds the password: the
/// server does not repeat it.
pub fn refusal(error: &StoreError) -> String {
    let server = std::error::Error::source(error)
        .and_then(|cause| cause.downcast_ref::<sqlx::Error>())
        .and_then(|cause| match cause {
            sqlx::Error::Database(db) => Some(db.message().to_owned()),
            _ => None,
        });
    server.unwrap_or_else(|| error.detail())
}

/// Payloads deleted per retention statement.
pub const RETENTION_BATCH: i64 = 10_000;

fn bind<'q>(
    q: sqlx::query::Query<'q, Postgres, PgArguments>,
    arg: &super::sql::Arg,
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    use super::sql::Arg;
    match arg {
        Arg::Text(t) => q.bind(t.clone()),
        Arg::Time(t) => q.bind(*t),
        Arg::Int(i) => q.bind(*i),
    }
}

fn get_time(row: &Row, index: usize) -> Result<DateTime<Utc>, sqlx::Error> {
    row.try_get::<DateTime<Utc>, _>(index)
}

fn get_opt_time(row: &Row, index: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    row.try_get::<Option<DateTime<Utc>>, _>(index)
}

mod statements {
    use super::{bind, get_opt_time, get_time, Db, Row};
    const BEGIN_WRITE: &str = "BEGIN";
    include!("engine.rs");
    include!("postgres_batch.rs");
}

/// The name of the partition holding `day`.
pub fn partition_name(day: NaiveDate) -> String {
    format!("payload_statuses_{}", day.format("%Y%m%d"))
}

/// Statuses stored since the store opened after which `payloads` is analyzed at once: each power
/// of ten from 10 000 to 1 000 000 (see [`PostgresStore::analyze_as_it_grows`]).
const ANALYZE_AT: [u64; 3] = [10_000, 100_000, 1_000_000];

/// The PostgreSQL status store.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Days whose partition is known to exist, so a batch does not ask every time.
    known_days: Mutex<HashSet<NaiveDate>>,
    /// Statuses stored since the store opened.
    stored: AtomicU64,
}

impl PostgresStore {
    /// Connects to `url` and migrates the schema (partitions are created by [`StatusStore::prepare_days`]).
    /// A server that does not answer is [`StoreError::Unavailable`] (try again later); credentials it
    /// rejects or a database it does not have are [`StoreError::Config`] (retrying cannot help).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::config_from("cannot read the URL", e))?;
        // One connection first, so a failure says why: the pool would only say that it timed out.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                StoreError::unavailable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
            })?
            .map_err(classify_connect)?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(classify_connect)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::migration_from("", e))?;
        Ok(Self {
            pool,
            known_days: Mutex::new(HashSet::new()),
            stored: AtomicU64::new(0),
        })
    }

    /// The connection pool (benchmarks and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Names of the existing day partitions, oldest first.
    pub async fn partitions(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class parent ON parent.oid = i.inhparent WHERE parent.relname = 'payload_statuses' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(classify))
            .collect()
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<NaiveDate>> {
        self.known_days
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Analyzes `payloads` when the statuses stored since opening cross one of [`ANALYZE_AT`].
    /// Autovacuum analyzes a table a minute or so after it changed; until then a table filled from
    /// empty has no statistics, and the planner, taking an id to match hundreds of rows, reads
    /// `/payloads?inventory_id=…` newest first along `created_at` through the whole table (25 ms at
    /// 200 000 payloads) instead of looking the id up. A failure only costs that until autovacuum.
    async fn analyze_as_it_grows(&self, stored: usize) {
        let before = self.stored.fetch_add(stored as u64, Ordering::Relaxed);
        let after = before + stored as u64;
        if ANALYZE_AT.iter().any(|&at| before < at && at <= after) {
            if let Err(e) = sqlx::query("ANALYZE payloads").execute(&self.pool).await {
                tracing::warn!(error = %e, "ANALYZE payloads failed; autovacuum will do it later");
            }
        }
    }

    async fn ensure_days_of(&self, batch: &[NewStatus]) -> Result<(), StoreError> {
        let missing: Vec<NaiveDate> = {
            let known = self.known();
            // A batch's statuses fall on a day or two: a list, not a set hashing every status.
            let mut days: Vec<NaiveDate> = Vec::new();
            for s in batch {
                let day = s.date.date_naive();
                if !days.contains(&day) {
                    days.push(day);
                }
            }
            days.retain(|d| !known.contains(d));
            days
        };
        for day in missing {
            self.prepare_days(day, day).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl StatusStore for PostgresStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    async fn store_batch(&self, batch: &[NewStatus]) -> Result<BatchOutcome, StoreError> {
        self.ensure_days_of(batch).await?;
        let outcome = match statements::store_batch_in(&self.pool, batch).await {
            Ok(outcome) => outcome,
            // 23514: no partition for the row (dropped or never made by another pod's view): make it, retry.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514") => {
                self.known().clear();
                self.ensure_days_of(batch).await?;
                statements::store_batch_in(&self.pool, batch)
                    .await
                    .map_err(classify)?
            }
            Err(e) => return Err(classify(e)),
        };
        self.analyze_as_it_grows(outcome.stored.len()).await;
        Ok(outcome)
    }

    async fn list_payloads(&self, query: &PayloadQuery) -> Result<Page<PayloadRow>, StoreError> {
        statements::list_payloads_in(&self.pool, query)
            .await
            .map_err(classify)
    }

    async fn payload(
        &self,
        request_id: &str,
        scope: &Scope,
    ) -> Result<Option<PayloadRow>, StoreError> {
        statements::payload_in(&self.pool, request_id, scope)
            .await
            .map_err(classify)
    }

    async fn payload_statuses(
        &self,
        payload: &PayloadRow,
        after_id: Option<i64>,
    ) -> Result<Vec<StatusRow>, StoreError> {
        statements::payload_statuses_in(&self.pool, payload, after_id)
            .await
            .map_err(classify)
    }

    async fn list_statuses(&self, query: &StatusQuery) -> Result<Page<StatusRow>, StoreError> {
        statements::list_statuses_in(&self.pool, query)
            .await
            .map_err(classify)
    }

    async fn stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<StatsData, StoreError> {
        statements::stats_in(&self.pool, from, to, service, scope)
            .await
            .map_err(classify)
    }

    async fn prepare_days(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let mut created = Vec::new();
        let mut days = Vec::new();
        let mut day = first;
        while day <= last {
            let name = partition_name(day);
            let exists: Option<String> = sqlx::query("SELECT to_regclass($1)::text")
                .bind(name.clone())
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(classify)?;
            let next = day
                .checked_add_days(Days::new(1))
                .ok_or_else(|| StoreError::rejected(format!("day {day} out of range")))?;
            if exists.is_none() {
                // Names and bounds come from dates we format ourselves, never from input text.
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF payload_statuses \
                     FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')"
                ))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
                created.push(name);
            }
            days.push(day);
            day = next;
        }
        tx.commit().await.map_err(classify)?;
        self.known().extend(days);
        Ok(created)
    }

    async fn apply_retention(&self, cutoff: DateTime<Utc>) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let locked: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RETENTION_LOCK)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(classify)?;
        if !locked {
            return Ok(report);
        }
        for name in self.partitions().await? {
            let Some(day) = name
                .strip_prefix("payload_statuses_")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            else {
                continue;
            };
            let Some(end) = day
                .checked_add_days(Days::new(1))
                .and_then(|d| d.and_hms_opt(0, 0, 0))
            else {
                continue;
            };
            if end.and_utc() <= cutoff {
                sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                self.known().remove(&day);
                report.partitions_dropped.push(name);
            }
        }
        tx.commit().await.map_err(classify)?;
        report.payloads_deleted =
            statements::delete_old_payloads(&self.pool, cutoff, RETENTION_BATCH)
                .await
                .map_err(classify)?;
        Ok(report)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}
