//! The embedded bus's reads (topics, message log, group offsets) and checkpoints, and
//! the helpers every statement shares. Writes are the writer's (`write`). The schema lives in `schema`, group membership and leases in `groups`.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::codec;
use crate::{BusError, ReceivedMessage};

/// Most partitions a topic may have on the embedded bus.
pub const MAX_PARTITIONS: i32 = 1024;

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
        Err(BusError::config(format!(
            "invalid topic name {name:?}: use 1 to 249 of A-Z a-z 0-9 . _ -"
        )))
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn millis(d: Duration) -> i64 {
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
    let context = format!("embedded bus, {context}");
    if contention {
        BusError::unavailable_from(context, e)
    } else {
        BusError::backend_from(context, e)
    }
}

/// The partitions a topic gets: `requested` when positive (at most [`MAX_PARTITIONS`]), else
/// `default` (Kafka's -1, "the broker's default").
pub(crate) fn partition_count(name: &str, requested: i32, default: i32) -> Result<i32, BusError> {
    let count = if requested > 0 { requested } else { default };
    if (1..=MAX_PARTITIONS).contains(&count) {
        Ok(count)
    } else {
        Err(BusError::config(format!(
            "topic {name:?}: {count} partitions; the embedded bus allows 1 to {MAX_PARTITIONS}"
        )))
    }
}

pub(crate) async fn list_topics(pool: &SqlitePool) -> Result<Vec<String>, BusError> {
    sqlx::query_scalar("SELECT name FROM topics ORDER BY name")
        .fetch_all(pool)
        .await
        .map_err(|e| db_error("listing topics", e))
}

/// How many partitions each existing topic has, in one query (a consumer subscribed to many
/// topics that do not exist yet looks for all of them at every rebalance).
pub(crate) async fn partition_counts(pool: &SqlitePool) -> Result<HashMap<String, i32>, BusError> {
    let rows: Vec<(String, i32)> = sqlx::query_as("SELECT name, partitions FROM topics")
        .fetch_all(pool)
        .await
        .map_err(|e| db_error("listing topics", e))?;
    Ok(rows.into_iter().collect())
}

/// Up to `limit` messages of one partition from offset `from` on, in offset order.
pub(crate) async fn fetch(
    pool: &SqlitePool,
    topic: &str,
    partition: i32,
    from: i64,
    limit: i64,
) -> Result<Vec<ReceivedMessage>, BusError> {
    let rows = sqlx::query(
        "SELECT pos, key, headers, value, timestamp_ms FROM messages
         WHERE topic = ?1 AND part = ?2 AND pos >= ?3 ORDER BY pos LIMIT ?4",
    )
    .bind(topic)
    .bind(partition)
    .bind(from)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("reading messages", e))?;
    rows.iter()
        .map(|row| received(topic, partition, row))
        .collect()
}

fn received(topic: &str, partition: i32, row: &SqliteRow) -> Result<ReceivedMessage, BusError> {
    let fail = |e| db_error("decoding a message", e);
    let headers: Vec<u8> = row.try_get("headers").map_err(fail)?;
    Ok(ReceivedMessage {
        topic: topic.to_owned(),
        partition,
        offset: row.try_get("pos").map_err(fail)?,
        key: row.try_get("key").map_err(fail)?,
        headers: codec::decode_headers(&headers)?,
        value: row.try_get("value").map_err(fail)?,
        timestamp_ms: Some(row.try_get("timestamp_ms").map_err(fail)?),
    })
}

/// Every partition of `topic` with the offset its next message will get, in partition order
/// (empty for a topic that does not exist).
pub(crate) async fn partition_ends(
    pool: &SqlitePool,
    topic: &str,
) -> Result<Vec<(i32, i64)>, BusError> {
    sqlx::query_as("SELECT part, next_pos FROM partitions WHERE topic = ?1 ORDER BY part")
        .bind(topic)
        .fetch_all(pool)
        .await
        .map_err(|e| db_error("reading a topic's ends", e))
}

/// The offset the next message of a partition will get (0 for a partition that does not exist).
pub(crate) async fn end_offset(
    pool: &SqlitePool,
    topic: &str,
    partition: i32,
) -> Result<i64, BusError> {
    let next: Option<i64> =
        sqlx::query_scalar("SELECT next_pos FROM partitions WHERE topic = ?1 AND part = ?2")
            .bind(topic)
            .bind(partition)
            .fetch_optional(pool)
            .await
            .map_err(|e| db_error("reading a partition's end", e))?;
    Ok(next.unwrap_or(0))
}

/// The oldest offset of a partition still kept, if it holds any message.
pub(crate) async fn start_offset(
    pool: &SqlitePool,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, BusError> {
    sqlx::query_scalar("SELECT MIN(pos) FROM messages WHERE topic = ?1 AND part = ?2")
        .bind(topic)
        .bind(partition)
        .fetch_one(pool)
        .await
        .map_err(|e| db_error("reading a partition's start", e))
}

/// The group's committed offset on a partition (the next offset to read), if any.
pub(crate) async fn committed(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, BusError> {
    sqlx::query_scalar(
        "SELECT next_pos FROM group_offsets WHERE grp = ?1 AND topic = ?2 AND part = ?3",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .fetch_optional(pool)
    .await
    .map_err(|e| db_error("reading a committed offset", e))
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::Notify;

    use super::*;
    use crate::embedded::write::SWEEP_BATCH;
    use crate::embedded::{schema, writer, EmbeddedOptions, Shared};
    use crate::OutgoingMessage;

    #[tokio::test]
    async fn sweep_deletes_in_batches_until_nothing_old_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bus.sqlite3");
        let pool = schema::connect(&file, &EmbeddedOptions::default())
            .await
            .unwrap();
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            notify: Notify::new(),
            ends: Mutex::default(),
            options: EmbeddedOptions::default(),
        });
        let writes = writer::spawn(shared, file).unwrap();
        let mut last = None;
        for i in 0..SWEEP_BATCH + 7 {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let message = OutgoingMessage::new("t", i.to_string()).header("h", "v");
            last = Some(
                writer::submit(&writes, writer::Pending::Publish { message, reply }, answer)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(last.map(|d| d.offset), Some(SWEEP_BATCH + 6));
        let stored = now_ms();
        intake_testkit::poll::until_true(
            Duration::from_secs(5),
            "the clock to move on",
            || async { now_ms() > stored },
        )
        .await;
        assert_eq!(
            writer::sweep(&writes, Duration::ZERO).await.unwrap(),
            SWEEP_BATCH as u64 + 7
        );
        assert!(fetch(&pool, "t", 0, 0, 10).await.unwrap().is_empty());
        assert_eq!(
            end_offset(&pool, "t", 0).await.unwrap(),
            SWEEP_BATCH + 7,
            "offsets are never reused"
        );
    }
}
