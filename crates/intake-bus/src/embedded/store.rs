//! Every SQL statement of the embedded bus: schema, topics, the message log, group offsets, leases
//! and retention.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

use super::codec;
use super::EmbeddedOptions;
use crate::{BusError, Delivery, OutgoingMessage, ReceivedMessage, TopicSpec};

/// Bumped when the schema changes; stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
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

/// Opens the pool (WAL, `synchronous=FULL`, busy timeout) and creates the schema.
pub(crate) async fn connect(
    file: &Path,
    options: &EmbeddedOptions,
) -> Result<SqlitePool, BusError> {
    let connect = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(options.busy_timeout)
        // Checkpoints run in the background (`checkpoint`), not inside whichever commit crosses
        // the threshold: one there stalls every publish waiting on that commit.
        .pragma("wal_autocheckpoint", "0");
    let pool = SqlitePoolOptions::new()
        // One connection is the writer's for good; the rest serve consumers' reads and leases.
        .max_connections(8)
        .acquire_timeout(options.busy_timeout + Duration::from_secs(5))
        .connect_with(connect)
        .await
        .map_err(|e| db_error(&format!("opening {}", file.display()), e))?;
    // IMMEDIATE: take the write lock first, so another process cannot make the upgrade fail.
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| db_error("creating the schema", e))?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("creating the schema", e))?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error("reading the schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(BusError::Config(format!(
            "{} has schema version {version}, newer than this program's {SCHEMA_VERSION}",
            file.display()
        )));
    }
    sqlx::raw_sql(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("writing the schema version", e))?;
    tx.commit()
        .await
        .map_err(|e| db_error("creating the schema", e))?;
    Ok(pool)
}

/// Topic names as Kafka allows them (1–249 of `[A-Za-z0-9._-]`), so both drivers accept the same.
pub(crate) fn validate_topic(name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BusError::Config(format!(
            "invalid topic name {name:?}: use 1 to 249 of A-Z a-z 0-9 . _ -"
        )))
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Maps a database error: lock contention and I/O are `Unavailable` (retry later), the rest `Backend`.
pub(crate) fn db_error(context: &str, e: sqlx::Error) -> BusError {
    let contention = match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    };
    let text = format!("embedded bus, {context}: {e}");
    if contention {
        BusError::Unavailable(text)
    } else {
        BusError::Backend(text)
    }
}

pub(crate) async fn create_topics(pool: &SqlitePool, topics: &[TopicSpec]) -> Result<(), BusError> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| db_error("creating topics", e))?;
    for spec in topics {
        sqlx::query("INSERT OR IGNORE INTO topics (name, partitions, next_pos, created_ms) VALUES (?1, ?2, 0, ?3)")
            .bind(&spec.name)
            .bind(spec.partitions)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("creating topics", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| db_error("creating topics", e))
}

pub(crate) async fn list_topics(pool: &SqlitePool) -> Result<Vec<String>, BusError> {
    sqlx::query_scalar("SELECT name FROM topics ORDER BY name")
        .fetch_all(pool)
        .await
        .map_err(|e| db_error("listing topics", e))
}

/// A consumer's commit, applied by the writer.
pub(crate) struct OffsetCommit {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) holder: String,
    pub(crate) next: i64,
}

/// Messages per multi-row INSERT (6 parameters each). Binding a numbered parameter walks the
/// statement's parameter list, so small statements keep binding cheap.
const ROWS_PER_INSERT: usize = 32;

/// Appends messages and stores offset commits in one transaction (one fsync), creating missing
/// topics. Returns each message's delivery and, for each commit, whether it was stored.
pub(crate) async fn write(
    conn: &mut sqlx::SqliteConnection,
    messages: &[&OutgoingMessage],
    commits: &[&OffsetCommit],
) -> Result<(Vec<Delivery>, Vec<bool>), BusError> {
    let fail = |e| db_error("writing", e);
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE")
        .await
        .map_err(fail)?;
    let deliveries = append_in(&mut tx, messages).await?;
    let mut stored = Vec::with_capacity(commits.len());
    for commit in commits {
        stored.push(commit_in(&mut tx, commit).await?);
    }
    tx.commit().await.map_err(fail)?;
    Ok((deliveries, stored))
}

/// Appends messages in one transaction (one fsync), creating missing topics.
#[cfg(test)]
pub(crate) async fn append(
    pool: &SqlitePool,
    messages: &[&OutgoingMessage],
) -> Result<Vec<Delivery>, BusError> {
    let mut conn = pool.acquire().await.map_err(|e| db_error("writing", e))?;
    write(&mut conn, messages, &[])
        .await
        .map(|(deliveries, _)| deliveries)
}

/// Takes a range of offsets per topic (one statement per topic), then inserts the messages in
/// multi-row statements.
async fn append_in(
    tx: &mut sqlx::SqliteConnection,
    messages: &[&OutgoingMessage],
) -> Result<Vec<Delivery>, BusError> {
    let fail = |e| db_error("publishing", e);
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let timestamp = now_ms();
    let mut counts: Vec<(&str, i64)> = Vec::new();
    for m in messages {
        match counts.iter_mut().find(|(topic, _)| *topic == m.topic) {
            Some((_, n)) => *n += 1,
            None => counts.push((&m.topic, 1)),
        }
    }
    let mut next: HashMap<&str, i64> = HashMap::with_capacity(counts.len());
    for (topic, n) in counts {
        let first: Option<i64> = sqlx::query_scalar(
            "UPDATE topics SET next_pos = next_pos + ?2 WHERE name = ?1 RETURNING next_pos - ?2",
        )
        .bind(topic)
        .bind(n)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        let first = match first {
            Some(first) => first,
            None => {
                sqlx::query("INSERT INTO topics (name, partitions, next_pos, created_ms) VALUES (?1, 1, ?2, ?3)")
                    .bind(topic)
                    .bind(n)
                    .bind(timestamp)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                0
            }
        };
        next.insert(topic, first);
    }
    let mut deliveries = Vec::with_capacity(messages.len());
    for m in messages {
        let pos = next.get_mut(m.topic.as_str()).ok_or(BusError::Closed)?;
        deliveries.push(Delivery {
            partition: 0,
            offset: *pos,
        });
        *pos += 1;
    }
    for (chunk, offsets) in messages
        .chunks(ROWS_PER_INSERT)
        .zip(deliveries.chunks(ROWS_PER_INSERT))
    {
        let mut rows = Vec::with_capacity(chunk.len());
        for (m, delivery) in chunk.iter().zip(offsets) {
            rows.push((*m, delivery.offset, codec::encode_headers(&m.headers)?));
        }
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO messages (topic, pos, key, headers, value, timestamp_ms) ",
        );
        insert.push_values(rows, |mut row, (m, pos, headers)| {
            row.push_bind(m.topic.as_str())
                .push_bind(pos)
                .push_bind(m.key.as_deref())
                .push_bind(headers)
                .push_bind(m.value.as_slice())
                .push_bind(timestamp);
        });
        insert.build().execute(&mut *tx).await.map_err(fail)?;
    }
    Ok(deliveries)
}

/// Up to `limit` messages of `topic` from offset `from` on, in offset order.
pub(crate) async fn fetch(
    pool: &SqlitePool,
    topic: &str,
    from: i64,
    limit: i64,
) -> Result<Vec<ReceivedMessage>, BusError> {
    let rows = sqlx::query(
        "SELECT pos, key, headers, value, timestamp_ms FROM messages
         WHERE topic = ?1 AND pos >= ?2 ORDER BY pos LIMIT ?3",
    )
    .bind(topic)
    .bind(from)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("reading messages", e))?;
    rows.iter().map(|row| received(topic, row)).collect()
}

fn received(topic: &str, row: &SqliteRow) -> Result<ReceivedMessage, BusError> {
    let fail = |e| db_error("decoding a message", e);
    let headers: Vec<u8> = row.try_get("headers").map_err(fail)?;
    Ok(ReceivedMessage {
        topic: topic.to_owned(),
        partition: 0,
        offset: row.try_get("pos").map_err(fail)?,
        key: row.try_get("key").map_err(fail)?,
        headers: codec::decode_headers(&headers)?,
        value: row.try_get("value").map_err(fail)?,
        timestamp_ms: Some(row.try_get("timestamp_ms").map_err(fail)?),
    })
}

/// The offset the next message of `topic` will get (0 for a topic never published to).
pub(crate) async fn end_offset(pool: &SqlitePool, topic: &str) -> Result<i64, BusError> {
    let next: Option<i64> = sqlx::query_scalar("SELECT next_pos FROM topics WHERE name = ?1")
        .bind(topic)
        .fetch_optional(pool)
        .await
        .map_err(|e| db_error("reading a topic's end", e))?;
    Ok(next.unwrap_or(0))
}

/// The oldest offset of `topic` still kept, if it holds any message.
pub(crate) async fn start_offset(pool: &SqlitePool, topic: &str) -> Result<Option<i64>, BusError> {
    sqlx::query_scalar("SELECT MIN(pos) FROM messages WHERE topic = ?1")
        .bind(topic)
        .fetch_one(pool)
        .await
        .map_err(|e| db_error("reading a topic's start", e))
}

/// The group's committed offset on `topic` (the next offset to read), if any.
pub(crate) async fn committed(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
) -> Result<Option<i64>, BusError> {
    sqlx::query_scalar("SELECT next_pos FROM group_offsets WHERE grp = ?1 AND topic = ?2")
        .bind(group)
        .bind(topic)
        .fetch_optional(pool)
        .await
        .map_err(|e| db_error("reading a committed offset", e))
}

/// Stores `commit.next` as the group's offset on the topic, only while `commit.holder` holds the
/// lease. Returns whether it was stored.
async fn commit_in(
    tx: &mut sqlx::SqliteConnection,
    commit: &OffsetCommit,
) -> Result<bool, BusError> {
    let done = sqlx::query(
        "INSERT INTO group_offsets (grp, topic, next_pos)
         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM leases WHERE grp = ?1 AND topic = ?2 AND holder = ?4)
         ON CONFLICT (grp, topic) DO UPDATE SET next_pos = excluded.next_pos",
    )
    .bind(&commit.group)
    .bind(&commit.topic)
    .bind(commit.next)
    .bind(&commit.holder)
    .execute(&mut *tx)
    .await
    .map_err(|e| db_error("committing an offset", e))?;
    Ok(done.rows_affected() == 1)
}

/// Takes or renews the lease on (group, topic) for `holder` when it is free, expired or already
/// `holder`'s. Returns whether `holder` now holds it.
pub(crate) async fn acquire_lease(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
    holder: &str,
    expiry: Duration,
) -> Result<bool, BusError> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO leases (grp, topic, holder, expires_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (grp, topic) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
         WHERE leases.holder = excluded.holder OR leases.expires_ms < ?5",
    )
    .bind(group)
    .bind(topic)
    .bind(holder)
    .bind(now.saturating_add(millis(expiry)))
    .bind(now)
    .execute(pool)
    .await
    .map_err(|e| db_error("taking a group lease", e))?;
    Ok(done.rows_affected() == 1)
}

/// Extends `holder`'s lease; false when it is no longer `holder`'s.
pub(crate) async fn renew_lease(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
    holder: &str,
    expiry: Duration,
) -> Result<bool, BusError> {
    let done = sqlx::query(
        "UPDATE leases SET expires_ms = ?4 WHERE grp = ?1 AND topic = ?2 AND holder = ?3",
    )
    .bind(group)
    .bind(topic)
    .bind(holder)
    .bind(now_ms().saturating_add(millis(expiry)))
    .execute(pool)
    .await
    .map_err(|e| db_error("renewing a group lease", e))?;
    Ok(done.rows_affected() == 1)
}

/// Gives up every lease `holder` has in `group`.
pub(crate) async fn release_leases(
    pool: &SqlitePool,
    group: &str,
    holder: &str,
) -> Result<(), BusError> {
    sqlx::query("DELETE FROM leases WHERE grp = ?1 AND holder = ?2")
        .bind(group)
        .bind(holder)
        .execute(pool)
        .await
        .map_err(|e| db_error("releasing group leases", e))?;
    Ok(())
}

/// Copies committed WAL frames into the database without waiting for readers or writers
/// (`PASSIVE`); returns the WAL's size and how much of it is now checkpointed, in pages.
pub(crate) async fn checkpoint(pool: &SqlitePool) -> Result<(i64, i64), BusError> {
    let (_busy, log, checkpointed): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await
            .map_err(|e| db_error("checkpointing", e))?;
    Ok((log, checkpointed))
}

/// Rows deleted per retention statement, so the write lock is held briefly and publishes in other
/// processes are not starved.
const SWEEP_BATCH: i64 = 5000;

/// Deletes messages stored more than `retention` ago; returns how many.
pub(crate) async fn sweep(pool: &SqlitePool, retention: Duration) -> Result<u64, BusError> {
    let cutoff = now_ms().saturating_sub(millis(retention));
    let mut deleted = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM messages WHERE rowid IN
             (SELECT rowid FROM messages WHERE timestamp_ms < ?1 LIMIT ?2)",
        )
        .bind(cutoff)
        .bind(SWEEP_BATCH)
        .execute(pool)
        .await
        .map_err(|e| db_error("deleting old messages", e))?;
        deleted += done.rows_affected();
        if done.rows_affected() < SWEEP_BATCH as u64 {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sweep_deletes_in_batches_until_nothing_old_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let pool = connect(&dir.path().join("bus.sqlite3"), &EmbeddedOptions::default())
            .await
            .unwrap();
        let messages: Vec<OutgoingMessage> = (0..SWEEP_BATCH + 7)
            .map(|i| OutgoingMessage::new("t", i.to_string()).header("h", "v"))
            .collect();
        let refs: Vec<&OutgoingMessage> = messages.iter().collect();
        let deliveries = append(&pool, &refs).await.unwrap();
        assert_eq!(deliveries.last().map(|d| d.offset), Some(SWEEP_BATCH + 6));
        let stored = now_ms();
        intake_testkit::poll::until_true(
            Duration::from_secs(5),
            "the clock to move on",
            || async { now_ms() > stored },
        )
        .await;
        assert_eq!(
            sweep(&pool, Duration::ZERO).await.unwrap(),
            SWEEP_BATCH as u64 + 7
        );
        assert!(fetch(&pool, "t", 0, 10).await.unwrap().is_empty());
        assert_eq!(
            end_offset(&pool, "t").await.unwrap(),
            SWEEP_BATCH + 7,
            "offsets are never reused"
        );
    }
}
