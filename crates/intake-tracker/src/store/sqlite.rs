//! The embedded driver: SQLite in WAL mode, times stored as INTEGER microseconds since the epoch.
//! Retention deletes old statuses in batches of 10 000. The statements themselves are shared with
//! the PostgreSQL driver (`engine.rs`).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool};

use super::{classify, StatusStore, StoreError};
use crate::model::{
    BatchOutcome, NewStatus, Page, PayloadQuery, PayloadRow, RetentionReport, Scope, StatsData,
    StatusQuery, StatusRow,
};

type Db = Sqlite;
type Row = SqliteRow;

/// Page cache per connection, in KiB (SQLite's default is 2 MiB).
pub const CACHE_KIB: u32 = 32 * 1024;

/// WAL pages (4 KiB) after which a commit copies the WAL back into the database file (SQLite's
/// default is 1 000). Between two checkpoints a page rewritten by many batches (the ends of the
/// indexes statuses append to) is copied once, and the database file is synced once: at 1 000,
/// commits (checkpoints mostly) took over half of a batch's time at 1 M statuses. The WAL file grows to about 64 MiB
/// and stays at that size.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// Statuses deleted per retention statement.
pub const RETENTION_BATCH: i64 = 10_000;

fn bind<'q>(
    q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    arg: &super::sql::Arg,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    use super::sql::Arg;
    match arg {
        Arg::Text(t) => q.bind(t.clone()),
        Arg::Time(t) => q.bind(t.timestamp_micros()),
        Arg::Int(i) => q.bind(*i),
    }
}

fn from_micros(micros: i64) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| sqlx::Error::Decode(format!("time {micros} out of range").into()))
}

fn get_time(row: &Row, index: usize) -> Result<DateTime<Utc>, sqlx::Error> {
    use sqlx::Row as _;
    from_micros(row.try_get::<i64, _>(index)?)
}

fn get_opt_time(row: &Row, index: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    use sqlx::Row as _;
    row.try_get::<Option<i64>, _>(index)?
        .map(from_micros)
        .transpose()
}

mod statements {
    use super::{bind, get_opt_time, get_time, Db, Row};
    /// Rows per multi-row statement: a whole batch of the default size (500 rows of at most 9
    /// parameters, far below SQLite's limit of 32 766). The batch statements use anonymous
    /// parameters, whose binding costs grow with their number, not its square as numbered ones
    /// (`$n`) do: with those, 64 rows per statement still spent a sixth of the ingest's CPU binding.
    const ROWS_PER_STATEMENT: usize = 500;
    /// Takes the write lock at once: a deferred transaction that reads first and upgrades later
    /// fails with "database is locked" at once when another writer committed meanwhile, whatever
    /// the busy timeout.
    const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
    include!("engine.rs");
    include!("sqlite_batch.rs");
}

/// The SQLite status store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating the file if missing) and migrates `url` (`sqlite://<path>`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::config_from(url, e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // The dedup index takes random keys: a larger page cache keeps its inserts off the disk.
            .pragma("cache_size", format!("-{}", CACHE_KIB))
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            // Rows a statement returns wait here for the caller; a batch's lookups return up to a
            // batch of rows, which a smaller channel hands over with a thread switch every few rows.
            .row_buffer_size(1024);
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::config_from(format!("cannot create {}", parent.display()), e)
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(classify)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::migration_from("", e))?;
        payload_per_org(&pool)
            .await
            .map_err(|e| StoreError::migration_from("one payload per (request id, org)", e))?;
        Ok(Self { pool })
    }

    /// The connection pool (benchmarks and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Rebuilds `payloads` without the UNIQUE on `request_id` (unique per org instead), once: see
/// `sqlite_payload_per_org.sql`. Its connection is closed afterwards, so foreign keys being off
/// never outlives it.
fn payload_per_org(pool: &SqlitePool) -> futures::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    // Boxed so the caller's future stays `Send` (sqlx's executor bounds defeat the inference).
    Box::pin(async move {
        let mut conn = pool.acquire().await?;
        conn.close_on_drop();
        rebuild_payloads(&mut conn).await
    })
}

async fn rebuild_payloads(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *conn)
        .await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let old = sqlx::query(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = 'payloads' \
         AND name LIKE 'sqlite_autoindex_payloads_%'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if old.is_some() {
        for statement in include_str!("sqlite_payload_per_org.sql")
            .split(';')
            .map(|s| {
                s.lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .filter(|s| !s.trim().is_empty())
        {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
        let broken = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut *conn)
            .await?;
        if !broken.is_empty() {
            return Err(sqlx::Error::Protocol(format!(
                "{} statuses lost their payload in the rebuild",
                broken.len()
            )));
        }
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(())
}

#[async_trait]
impl StatusStore for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    async fn store_batch(&self, batch: &[NewStatus]) -> Result<BatchOutcome, StoreError> {
        statements::store_batch_in(&self.pool, batch)
            .await
            .map_err(classify)
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
        _first: NaiveDate,
        _last: NaiveDate,
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn apply_retention(&self, cutoff: DateTime<Utc>) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        loop {
            let done = sqlx::query(
                "DELETE FROM payload_statuses WHERE id IN (SELECT id FROM payload_statuses WHERE date < $1 LIMIT $2)",
            )
            .bind(cutoff.timestamp_micros())
            .bind(RETENTION_BATCH)
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected();
            report.statuses_deleted += done;
            if done < RETENTION_BATCH as u64 {
                break;
            }
        }
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
