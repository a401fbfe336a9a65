//! The embedded bus's schema: its versions and the migrations between them, applied when a bus
//! directory is opened.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::store::db_error;
use super::EmbeddedOptions;
use crate::BusError;

/// Bumped when the schema changes; stored in `PRAGMA user_version`. [`MIGRATIONS`] brings a
/// database of any older version up to this one.
const SCHEMA_VERSION: i64 = 2;

/// The statements that bring the schema from version `i` to `i + 1`, in order. A fresh database
/// (version 0) runs them all, so it has exactly the shape an upgraded one has.
const MIGRATIONS: [&str; 2] = [SCHEMA_V1, PARTITIONS_V2];

/// Version 1: one partition per topic.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY NOT NULL,
    partitions INTEGER NOT NULL,
    next_pos INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL,
    pos INTEGER NOT NULL,
    key BLOB,
    headers BLOB NOT NULL,
    value BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_topic_pos ON messages (topic, pos);
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    next_pos INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
);
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
);
";

/// Version 2: partitions. Every message, offset, group offset and lease gains a partition (`part`);
/// what version 1 stored becomes partition 0 of a one-partition topic (whatever count it was created
/// with, since all its messages are there). Each partition's next offset moves to `partitions`, and
/// group members announce themselves in `members` so that they can split a topic's partitions.
const PARTITIONS_V2: &str = "
ALTER TABLE messages ADD COLUMN part INTEGER NOT NULL DEFAULT 0;
DROP INDEX messages_by_topic_pos;
CREATE UNIQUE INDEX messages_by_partition_pos ON messages (topic, part, pos);

CREATE TABLE partitions (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_pos INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
);
INSERT INTO partitions (topic, part, next_pos) SELECT name, 0, next_pos FROM topics;
CREATE TABLE topics_v2 (
    name TEXT PRIMARY KEY NOT NULL,
    partitions INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
INSERT INTO topics_v2 (name, partitions, created_ms) SELECT name, 1, created_ms FROM topics;
DROP TABLE topics;
ALTER TABLE topics_v2 RENAME TO topics;

CREATE TABLE group_offsets_v2 (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_pos INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)
);
INSERT INTO group_offsets_v2 (grp, topic, part, next_pos) SELECT grp, topic, 0, next_pos FROM group_offsets;
DROP TABLE group_offsets;
ALTER TABLE group_offsets_v2 RENAME TO group_offsets;

CREATE TABLE leases_v2 (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)
);
INSERT INTO leases_v2 (grp, topic, part, holder, expires_ms) SELECT grp, topic, 0, holder, expires_ms FROM leases;
DROP TABLE leases;
ALTER TABLE leases_v2 RENAME TO leases;

CREATE TABLE members (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, member)
);
";

/// Opens the pool (WAL, `synchronous=FULL`, busy timeout) and creates or upgrades the schema.
///
/// Processes started together on a new directory (`intake ingress` and `intake validator`) race to
/// create it, and SQLite answers some of those races (switching a new file to WAL) "database is
/// locked" at once instead of waiting: a busy open is tried again until the busy timeout.
pub(crate) async fn connect(
    file: &Path,
    options: &EmbeddedOptions,
) -> Result<SqlitePool, BusError> {
    let deadline = std::time::Instant::now() + options.busy_timeout;
    loop {
        match open(file, options).await {
            Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "the embedded bus is busy opening; trying again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            opened => return opened,
        }
    }
}

async fn open(file: &Path, options: &EmbeddedOptions) -> Result<SqlitePool, BusError> {
    let connect = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(options.busy_timeout)
        // Checkpoints run in the background (`checkpoint`), not inside whichever commit crosses
        // the threshold: one there stalls every publish waiting on that commit.
        .pragma("wal_autocheckpoint", "0")
        .pragma("journal_size_limit", options.wal_size_limit.to_string());
    let pool = SqlitePoolOptions::new()
        // Consumers' reads, leases and checkpoints; the writer has a connection of its own (`write`).
        .max_connections(8)
        .acquire_timeout(options.busy_timeout + Duration::from_secs(5))
        .connect_with(connect)
        .await
        .map_err(|e| db_error(&format!("opening {}", file.display()), e))?;
    migrate(&pool, file).await?;
    Ok(pool)
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, so another process opening the same
/// directory sees either the old schema or the new one.
async fn migrate(pool: &SqlitePool, file: &Path) -> Result<(), BusError> {
    // IMMEDIATE: take the write lock first, so another process cannot make the upgrade fail.
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| db_error("upgrading the schema", e))?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error("reading the schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(BusError::config(format!(
            "{} has schema version {version}, newer than this program's {SCHEMA_VERSION}",
            file.display()
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    for (from, statements) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        sqlx::raw_sql(statements)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&format!("upgrading the schema from version {from}"), e))?;
    }
    sqlx::raw_sql(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("writing the schema version", e))?;
    tx.commit()
        .await
        .map_err(|e| db_error("upgrading the schema", e))?;
    if version > 0 {
        tracing::info!(
            file = %file.display(), from = version, to = SCHEMA_VERSION,
            "embedded bus schema upgraded"
        );
    }
    Ok(())
}
