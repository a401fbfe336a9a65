//! Consumer-group membership on the embedded bus: members' announcements per topic and the lease
//! rows through which one member at a time holds a partition. Reads go through the async pool;
//! changes ([`GroupWrite`]) through the bus's writer thread.

use std::time::Duration;

use rusqlite::Connection;
use sqlx::SqlitePool;

use super::store::{db_error, millis, now_ms};
use super::write;
use crate::BusError;

/// A partition's lease as stored: who holds it, until when.
pub(crate) struct LeaseRow {
    pub(crate) partition: i32,
    pub(crate) holder: String,
    pub(crate) expires_ms: i64,
}

/// Every lease row of `group` on `topic` (live or expired).
pub(crate) async fn leases(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
) -> Result<Vec<LeaseRow>, BusError> {
    let rows: Vec<(i32, String, i64)> =
        sqlx::query_as("SELECT part, holder, expires_ms FROM leases WHERE grp = ?1 AND topic = ?2")
            .bind(group)
            .bind(topic)
            .fetch_all(pool)
            .await
            .map_err(|e| db_error("reading group leases", e))?;
    Ok(rows
        .into_iter()
        .map(|(partition, holder, expires_ms)| LeaseRow {
            partition,
            holder,
            expires_ms,
        })
        .collect())
}

/// The live members of `group` on `topic`, in the order they joined.
pub(crate) async fn live_members(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
) -> Result<Vec<String>, BusError> {
    sqlx::query_scalar(
        "SELECT member FROM members WHERE grp = ?1 AND topic = ?2 AND expires_ms >= ?3
         ORDER BY rowid",
    )
    .bind(group)
    .bind(topic)
    .bind(now_ms())
    .fetch_all(pool)
    .await
    .map_err(|e| db_error("reading group members", e))
}

/// A change to a group's membership or leases. These go through the bus's writer like publishes
/// and commits: written from the async pool they waited for SQLite's write lock in its busy
/// handler, which retries with sleeps while the writer takes the lock again and again, so under a
/// steady load a renewal could wait longer than the lease lasts and the member lost its partitions.
pub(crate) enum GroupWrite {
    /// Takes or renews the lease on a partition for `holder` when it is free, expired or already
    /// `holder`'s; the outcome says whether `holder` now holds it.
    Acquire { lease: LeaseKey, expiry: Duration },
    /// Extends `holder`'s lease; the outcome is false when it is no longer `holder`'s.
    Renew { lease: LeaseKey, expiry: Duration },
    /// Gives up `holder`'s lease on one partition (another member is to take it).
    Release { lease: LeaseKey },
    /// Announces (or keeps announcing) `member` as a live member of `group` on each of `topics`
    /// until `expiry` from now, and forgets members of those topics whose announcement ran out. A
    /// member keeps its place in the join order while it renews in time.
    Announce {
        group: String,
        topics: Vec<String>,
        member: String,
        expiry: Duration,
    },
    /// `member` leaves `group`: its leases and announcements go at once.
    Leave { group: String, member: String },
}

/// One partition's lease in a group, as held by `holder`.
pub(crate) struct LeaseKey {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) holder: String,
}

/// Applies `op` inside the writer's transaction, `now` being the batch's time. Returns whether an
/// acquire or renewal left the lease with its holder; true for the others.
pub(crate) fn apply(tx: &Connection, op: &GroupWrite, now: i64) -> Result<bool, BusError> {
    let run = |context: &str, sql: &str, params: &[&dyn rusqlite::ToSql]| {
        tx.prepare_cached(sql)
            .and_then(|mut s| s.execute(params))
            .map_err(|e| write::db_error(context, e))
    };
    match op {
        GroupWrite::Acquire { lease, expiry } => {
            let changed = run(
                "taking a group lease",
                "INSERT INTO leases (grp, topic, part, holder, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (grp, topic, part) DO UPDATE
                     SET holder = excluded.holder, expires_ms = excluded.expires_ms
                 WHERE leases.holder = excluded.holder OR leases.expires_ms < ?6",
                &[
                    &lease.group,
                    &lease.topic,
                    &lease.partition,
                    &lease.holder,
                    &now.saturating_add(millis(*expiry)),
                    &now,
                ],
            )?;
            Ok(changed == 1)
        }
        GroupWrite::Renew { lease, expiry } => {
            let changed = run(
                "renewing a group lease",
                "UPDATE leases SET expires_ms = ?5
                 WHERE grp = ?1 AND topic = ?2 AND part = ?3 AND holder = ?4",
                &[
                    &lease.group,
                    &lease.topic,
                    &lease.partition,
                    &lease.holder,
                    &now.saturating_add(millis(*expiry)),
                ],
            )?;
            Ok(changed == 1)
        }
        GroupWrite::Release { lease } => {
            run(
                "releasing a group lease",
                "DELETE FROM leases WHERE grp = ?1 AND topic = ?2 AND part = ?3 AND holder = ?4",
                &[&lease.group, &lease.topic, &lease.partition, &lease.holder],
            )?;
            Ok(true)
        }
        GroupWrite::Announce {
            group,
            topics,
            member,
            expiry,
        } => {
            for topic in topics {
                run(
                    "announcing a group member",
                    "DELETE FROM members WHERE grp = ?1 AND topic = ?2 AND expires_ms < ?3",
                    &[group, topic, &now],
                )?;
                run(
                    "announcing a group member",
                    "INSERT INTO members (grp, topic, member, expires_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (grp, topic, member) DO UPDATE SET expires_ms = excluded.expires_ms",
                    &[group, topic, member, &now.saturating_add(millis(*expiry))],
                )?;
            }
            Ok(true)
        }
        GroupWrite::Leave { group, member } => {
            run(
                "leaving a group",
                "DELETE FROM leases WHERE grp = ?1 AND holder = ?2",
                &[group, member],
            )?;
            run(
                "leaving a group",
                "DELETE FROM members WHERE grp = ?1 AND member = ?2",
                &[group, member],
            )?;
            Ok(true)
        }
    }
}
