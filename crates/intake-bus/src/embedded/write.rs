//! The embedded bus's writes: publishes, offset commits, topic creations, group changes and the
//! retention's deletes, applied by the writer thread ([`super::writer`]) on its own synchronous connection, a batch in one transaction.
//!
//! A synchronous connection, because the writer applies a whole batch in one trip: through the
//! async pool every statement (begin, offsets, inserts, commit) was a hand-off to the connection's
//! worker thread and back, most of a small publish's cost.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::codec;
use super::groups::{self, GroupWrite};
use super::partitioner::Partitioner;
use super::store::{now_ms, partition_count};
use super::EmbeddedOptions;
use crate::{BusError, Delivery, OutgoingMessage};

/// A consumer's commit, applied by the writer.
pub(crate) struct OffsetCommit {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) holder: String,
    pub(crate) next: i64,
}

/// Maps a database error: lock contention is `Unavailable` (retry later), the rest `Backend`, as
/// [`super::store::db_error`] does for the async pool.
pub(crate) fn db_error(context: &str, e: rusqlite::Error) -> BusError {
    let contention = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    let context = format!("embedded bus, {context}");
    if contention {
        BusError::unavailable_from(context, e)
    } else {
        BusError::backend_from(context, e)
    }
}

/// Opens the writer's connection to a database the pool already created and upgraded: the same
/// settings as the pool's (`synchronous=FULL`, busy timeout, no checkpoint inside a commit, the
/// log's size limit; WAL mode is the file's).
pub(crate) fn open(file: &Path, options: &EmbeddedOptions) -> Result<Connection, BusError> {
    let fail = |e| db_error(&format!("opening {}", file.display()), e);
    let conn = Connection::open(file).map_err(fail)?;
    conn.busy_timeout(options.busy_timeout).map_err(fail)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(fail)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(fail)?;
    // The writer starts the log over once it is all checkpointed, and cuts it back then.
    conn.pragma_update(None, "journal_size_limit", options.wal_size_limit)
        .map_err(fail)?;
    Ok(conn)
}

/// What one transaction applies: messages to append, offsets to commit, topics to create, group
/// changes.
#[derive(Default)]
pub(crate) struct Writes<'a> {
    pub(crate) messages: Vec<&'a OutgoingMessage>,
    pub(crate) commits: Vec<&'a OffsetCommit>,
    /// Topic names with their partition counts (already checked).
    pub(crate) topics: Vec<(&'a str, i32)>,
    pub(crate) groups: Vec<&'a GroupWrite>,
    /// Retention: for each cutoff (ms since the epoch), up to [`SWEEP_BATCH`] messages stored
    /// before it are deleted.
    pub(crate) sweeps: Vec<i64>,
}

/// Messages deleted by one retention write, so that a sweep holds the write lock briefly, and
/// publishes in this and other processes are not held up behind it.
pub(crate) const SWEEP_BATCH: i64 = 5000;

/// What a transaction did, in the order of each kind's writes.
pub(crate) struct Applied {
    /// Where each message went.
    pub(crate) deliveries: Vec<Delivery>,
    /// Whether each commit was stored.
    pub(crate) stored: Vec<bool>,
    /// Each group change's outcome ([`groups::apply`]).
    pub(crate) groups: Vec<bool>,
    /// How many messages each retention write deleted.
    pub(crate) swept: Vec<u64>,
}

/// Applies `writes` in one transaction (one fsync), creating topics first, then the messages'
/// missing topics with `default_partitions`, then the commits and, last, the group changes (a
/// commit and a lease change in one batch come from different tasks, so neither was waiting for
/// the other).
pub(crate) fn apply(
    conn: &mut Connection,
    writes: &Writes<'_>,
    partitioner: &mut Partitioner,
    default_partitions: i32,
) -> Result<Applied, BusError> {
    let fail = |e| db_error("writing", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let now = now_ms();
    // Topics this transaction reads or creates; the partitioner learns them once it is committed
    // (a rolled-back creation must not be taken for an existing topic).
    let mut learned = HashMap::new();
    for (name, partitions) in &writes.topics {
        learned.insert(*name, create_topic(&tx, name, *partitions, now)?);
    }
    let deliveries = append(
        &tx,
        &writes.messages,
        partitioner,
        &mut learned,
        default_partitions,
        now,
    )?;
    let mut stored = Vec::with_capacity(writes.commits.len());
    for commit in &writes.commits {
        stored.push(commit_offset(&tx, commit)?);
    }
    let mut changed = Vec::with_capacity(writes.groups.len());
    for op in &writes.groups {
        changed.push(groups::apply(&tx, op, now)?);
    }
    let mut swept = Vec::with_capacity(writes.sweeps.len());
    for cutoff in &writes.sweeps {
        swept.push(delete_old(&tx, *cutoff)?);
    }
    tx.commit().map_err(fail)?;
    for (name, count) in learned {
        partitioner.remember(name, count);
    }
    Ok(Applied {
        deliveries,
        stored,
        groups: changed,
        swept,
    })
}

/// Creates `name` with `partitions` partitions unless it exists; returns its partition count
/// (the existing one, when it existed: a topic keeps the count it was created with).
fn create_topic(tx: &Connection, name: &str, partitions: i32, now: i64) -> Result<i32, BusError> {
    let fail = |e| db_error("creating a topic", e);
    let created = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO topics (name, partitions, created_ms) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute((name, partitions, now)))
        .map_err(fail)?;
    if created == 0 {
        return tx
            .prepare_cached("SELECT partitions FROM topics WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |row| row.get(0)))
            .map_err(fail);
    }
    let mut insert = tx
        .prepare_cached("INSERT INTO partitions (topic, part, next_pos) VALUES (?1, ?2, 0)")
        .map_err(fail)?;
    for part in 0..partitions {
        insert.execute((name, part)).map_err(fail)?;
    }
    Ok(partitions)
}

/// Looks up (or creates) each topic once, chooses each message's partition, takes a range of
/// offsets per partition (one statement each), then inserts the messages. Topics read or created
/// here go into `learned`.
fn append<'a>(
    tx: &Connection,
    messages: &[&'a OutgoingMessage],
    partitioner: &mut Partitioner,
    learned: &mut HashMap<&'a str, i32>,
    default_partitions: i32,
    timestamp: i64,
) -> Result<Vec<Delivery>, BusError> {
    let fail = |e| db_error("publishing", e);
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let mut partitions: HashMap<&str, i32> = HashMap::new();
    for m in messages {
        if partitions.contains_key(m.topic.as_str()) {
            continue;
        }
        let known = partitioner
            .count(&m.topic)
            .or_else(|| learned.get(m.topic.as_str()).copied());
        let count = match known {
            Some(count) => count,
            None => {
                let read: Option<i32> = tx
                    .prepare_cached("SELECT partitions FROM topics WHERE name = ?1")
                    .and_then(|mut s| {
                        let mut rows = s.query([&m.topic])?;
                        rows.next()?.map(|row| row.get(0)).transpose()
                    })
                    .map_err(fail)?;
                let count = match read {
                    Some(count) => count,
                    None => {
                        let count = partition_count(&m.topic, default_partitions, 1)?;
                        create_topic(tx, &m.topic, count, timestamp)?
                    }
                };
                learned.insert(&m.topic, count);
                count
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
    {
        let mut take = tx
            .prepare_cached(
                "UPDATE partitions SET next_pos = next_pos + ?3 WHERE topic = ?1 AND part = ?2
                 RETURNING next_pos - ?3",
            )
            .map_err(fail)?;
        for ((topic, part), n) in counts {
            let first: i64 = take
                .query_row((topic, part, n), |row| row.get(0))
                .map_err(fail)?;
            next.insert((topic, part), first);
        }
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO messages (topic, part, pos, key, headers, value, timestamp_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(fail)?;
    let mut deliveries = Vec::with_capacity(messages.len());
    for (m, part) in messages.iter().zip(&chosen) {
        let pos = next
            .get_mut(&(m.topic.as_str(), *part))
            .ok_or(BusError::Closed)?;
        let delivery = Delivery {
            partition: *part,
            offset: *pos,
        };
        *pos += 1;
        let headers = codec::encode_headers(&m.headers)?;
        insert
            .execute((
                m.topic.as_str(),
                delivery.partition,
                delivery.offset,
                m.key.as_deref(),
                headers,
                m.value.as_slice(),
                timestamp,
            ))
            .map_err(fail)?;
        deliveries.push(delivery);
    }
    Ok(deliveries)
}

/// Deletes up to [`SWEEP_BATCH`] messages stored before `cutoff`; returns how many.
fn delete_old(tx: &Connection, cutoff: i64) -> Result<u64, BusError> {
    let deleted = tx
        .prepare_cached(
            "DELETE FROM messages WHERE rowid IN
             (SELECT rowid FROM messages WHERE timestamp_ms < ?1 LIMIT ?2)",
        )
        .and_then(|mut s| s.execute((cutoff, SWEEP_BATCH)))
        .map_err(|e| db_error("deleting old messages", e))?;
    Ok(deleted as u64)
}

/// Stores `commit.next` as the group's offset on the partition, only while `commit.holder` holds
/// the partition's lease. Returns whether it was stored.
fn commit_offset(tx: &Connection, commit: &OffsetCommit) -> Result<bool, BusError> {
    let done = tx
        .prepare_cached(
            "INSERT INTO group_offsets (grp, topic, part, next_pos)
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS
                 (SELECT 1 FROM leases WHERE grp = ?1 AND topic = ?2 AND part = ?3 AND holder = ?5)
             ON CONFLICT (grp, topic, part) DO UPDATE SET next_pos = excluded.next_pos",
        )
        .and_then(|mut s| {
            s.execute((
                &commit.group,
                &commit.topic,
                commit.partition,
                commit.next,
                &commit.holder,
            ))
        })
        .map_err(|e| db_error("committing an offset", e))?;
    Ok(done == 1)
}
