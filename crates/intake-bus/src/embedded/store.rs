//! The embedded bus's topics, message log, group offsets, checkpoints and retention, and the helpers
//! every statement shares. The schema lives in `schema`, group membership and leases in `groups`.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::codec;
use super::partitioner::Partitioner;
use crate::{BusError, Delivery, OutgoingMessage, ReceivedMessage, TopicSpec};

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

pub(crate) async fn create_topics(
    pool: &SqlitePool,
    topics: &[TopicSpec],
    default_partitions: i32,
) -> Result<(), BusError> {
    let mut counts = Vec::with_capacity(topics.len());
    for spec in topics {
        counts.push(partition_count(
            &spec.name,
            spec.partitions,
            default_partitions,
        )?);
    }
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| db_error("creating topics", e))?;
    for (spec, partitions) in topics.iter().zip(counts) {
        create_topic_in(&mut tx, &spec.name, partitions, now_ms()).await?;
    }
    tx.commit()
        .await
        .map_err(|e| db_error("creating topics", e))
}

/// Creates `name` with `partitions` partitions unless it exists; returns its partition count
/// (the existing one, when it existed: a topic keeps the count it was created with).
async fn create_topic_in(
    tx: &mut sqlx::SqliteConnection,
    name: &str,
    partitions: i32,
    now: i64,
) -> Result<i32, BusError> {
    let fail = |e| db_error("creating a topic", e);
    let created = sqlx::query(
        "INSERT OR IGNORE INTO topics (name, partitions, created_ms) VALUES (?1, ?2, ?3)",
    )
    .bind(name)
    .bind(partitions)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(fail)?;
    if created.rows_affected() == 0 {
        let existing: i32 = sqlx::query_scalar("SELECT partitions FROM topics WHERE name = ?1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        return Ok(existing);
    }
    let mut insert =
        sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO partitions (topic, part, next_pos) ");
    insert.push_values(0..partitions, |mut row, part| {
        row.push_bind(name).push_bind(part).push_bind(0i64);
    });
    insert.build().execute(&mut *tx).await.map_err(fail)?;
    Ok(partitions)
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

/// A consumer's commit, applied by the writer.
pub(crate) struct OffsetCommit {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) holder: String,
    pub(crate) next: i64,
}

/// Messages per multi-row INSERT (7 parameters each). Binding a numbered parameter walks the
/// statement's parameter list, so small statements keep binding cheap.
const ROWS_PER_INSERT: usize = 32;

/// Appends messages and stores offset commits in one transaction (one fsync), creating missing
/// topics with `default_partitions`. Returns each message's delivery and, for each commit, whether
/// it was stored.
pub(crate) async fn write(
    conn: &mut sqlx::SqliteConnection,
    messages: &[&OutgoingMessage],
    commits: &[&OffsetCommit],
    partitioner: &mut Partitioner,
    default_partitions: i32,
) -> Result<(Vec<Delivery>, Vec<bool>), BusError> {
    let fail = |e| db_error("writing", e);
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE")
        .await
        .map_err(fail)?;
    let deliveries = append_in(&mut tx, messages, partitioner, default_partitions).await?;
    let mut stored = Vec::with_capacity(commits.len());
    for commit in commits {
        stored.push(commit_in(&mut tx, commit).await?);
    }
    tx.commit().await.map_err(fail)?;
    Ok((deliveries, stored))
}

/// Appends messages in one transaction (one fsync), creating missing topics with one partition.
#[cfg(test)]
pub(crate) async fn append(
    pool: &SqlitePool,
    messages: &[&OutgoingMessage],
) -> Result<Vec<Delivery>, BusError> {
    let mut conn = pool.acquire().await.map_err(|e| db_error("writing", e))?;
    write(&mut conn, messages, &[], &mut Partitioner::default(), 1)
        .await
        .map(|(deliveries, _)| deliveries)
}

/// Looks up (or creates) each topic once, chooses each message's partition, takes a range of
/// offsets per partition (one statement each), then inserts the messages in multi-row statements.
async fn append_in(
    tx: &mut sqlx::SqliteConnection,
    messages: &[&OutgoingMessage],
    partitioner: &mut Partitioner,
    default_partitions: i32,
) -> Result<Vec<Delivery>, BusError> {
    let fail = |e| db_error("publishing", e);
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let timestamp = now_ms();
    let mut partitions: HashMap<&str, i32> = HashMap::new();
    for m in messages {
        if partitions.contains_key(m.topic.as_str()) {
            continue;
        }
        let known = match partitioner.count(&m.topic) {
            Some(count) => Some(count),
            None => {
                let read: Option<i32> =
                    sqlx::query_scalar("SELECT partitions FROM topics WHERE name = ?1")
                        .bind(&m.topic)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(fail)?;
                if let Some(count) = read {
                    partitioner.remember(&m.topic, count);
                }
                read
            }
        };
        let count = match known {
            Some(count) => count,
            None => {
                let count = partition_count(&m.topic, default_partitions, 1)?;
                create_topic_in(tx, &m.topic, count, timestamp).await?
            }
        };
        partitions.insert(&m.topic, count);
    }
    let mut chosen = Vec::with_capacity(messages.len());
    let mut counts: Vec<((&str, i32), i64)> = Vec::new();
    for m in messages {
        let count = partitions.get(m.topic.as_str()).copied().unwrap_or(1);
        let part = partitioner.choose(&m.topic, m.key.as_deref(), count);
        chosen.push(part);
        match counts
            .iter_mut()
            .find(|(tp, _)| *tp == (m.topic.as_str(), part))
        {
            Some((_, n)) => *n += 1,
            None => counts.push(((&m.topic, part), 1)),
        }
    }
    let mut next: HashMap<(&str, i32), i64> = HashMap::with_capacity(counts.len());
    for ((topic, part), n) in counts {
        let first: i64 = sqlx::query_scalar(
            "UPDATE partitions SET next_pos = next_pos + ?3 WHERE topic = ?1 AND part = ?2
             RETURNING next_pos - ?3",
        )
        .bind(topic)
        .bind(part)
        .bind(n)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        next.insert((topic, part), first);
    }
    let mut deliveries = Vec::with_capacity(messages.len());
    for (m, part) in messages.iter().zip(&chosen) {
        let pos = next
            .get_mut(&(m.topic.as_str(), *part))
            .ok_or(BusError::Closed)?;
        deliveries.push(Delivery {
            partition: *part,
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
            rows.push((*m, *delivery, codec::encode_headers(&m.headers)?));
        }
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO messages (topic, part, pos, key, headers, value, timestamp_ms) ",
        );
        insert.push_values(rows, |mut row, (m, delivery, headers)| {
            row.push_bind(m.topic.as_str())
                .push_bind(delivery.partition)
                .push_bind(delivery.offset)
                .push_bind(m.key.as_deref())
                .push_bind(headers)
                .push_bind(m.value.as_slice())
                .push_bind(timestamp);
        });
        insert.build().execute(&mut *tx).await.map_err(fail)?;
    }
    Ok(deliveries)
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

/// Stores `commit.next` as the group's offset on the partition, only while `commit.holder` holds
/// the partition's lease. Returns whether it was stored.
async fn commit_in(
    tx: &mut sqlx::SqliteConnection,
    commit: &OffsetCommit,
) -> Result<bool, BusError> {
    let done = sqlx::query(
        "INSERT INTO group_offsets (grp, topic, part, next_pos)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS
             (SELECT 1 FROM leases WHERE grp = ?1 AND topic = ?2 AND part = ?3 AND holder = ?5)
         ON CONFLICT (grp, topic, part) DO UPDATE SET next_pos = excluded.next_pos",
    )
    .bind(&commit.group)
    .bind(&commit.topic)
    .bind(commit.partition)
    .bind(commit.next)
    .bind(&commit.holder)
    .execute(&mut *tx)
    .await
    .map_err(|e| db_error("committing an offset", e))?;
    Ok(done.rows_affected() == 1)
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
    use crate::embedded::{schema, EmbeddedOptions};

    #[tokio::test]
    async fn sweep_deletes_in_batches_until_nothing_old_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let pool = schema::connect(&dir.path().join("bus.sqlite3"), &EmbeddedOptions::default())
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
        assert!(fetch(&pool, "t", 0, 0, 10).await.unwrap().is_empty());
        assert_eq!(
            end_offset(&pool, "t", 0).await.unwrap(),
            SWEEP_BATCH + 7,
            "offsets are never reused"
        );
    }
}
