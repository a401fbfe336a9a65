//! Consumer-group membership on the embedded bus: members' announcements per topic and the lease
//! rows through which one member at a time holds a partition.

use std::time::Duration;

use sqlx::SqlitePool;

use super::store::{db_error, millis, now_ms};
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

/// Takes or renews the lease on (group, topic, partition) for `holder` when it is free, expired or
/// already `holder`'s. Returns whether `holder` now holds it.
pub(crate) async fn acquire_lease(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
    partition: i32,
    holder: &str,
    expiry: Duration,
) -> Result<bool, BusError> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO leases (grp, topic, part, holder, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (grp, topic, part) DO UPDATE
             SET holder = excluded.holder, expires_ms = excluded.expires_ms
         WHERE leases.holder = excluded.holder OR leases.expires_ms < ?6",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .bind(holder)
    .bind(now.saturating_add(millis(expiry)))
    .bind(now)
    .execute(pool)
    .await
    .map_err(|e| db_error("taking a group lease", e))?;
    Ok(done.rows_affected() == 1)
}

/// Extends `holder`'s lease on a partition; false when it is no longer `holder`'s.
pub(crate) async fn renew_lease(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
    partition: i32,
    holder: &str,
    expiry: Duration,
) -> Result<bool, BusError> {
    let done = sqlx::query(
        "UPDATE leases SET expires_ms = ?5
         WHERE grp = ?1 AND topic = ?2 AND part = ?3 AND holder = ?4",
    )
    .bind(group)
    .bind(topic)
    .bind(partition)
    .bind(holder)
    .bind(now_ms().saturating_add(millis(expiry)))
    .execute(pool)
    .await
    .map_err(|e| db_error("renewing a group lease", e))?;
    Ok(done.rows_affected() == 1)
}

/// Gives up `holder`'s lease on one partition (another member is to take it).
pub(crate) async fn release_lease(
    pool: &SqlitePool,
    group: &str,
    topic: &str,
    partition: i32,
    holder: &str,
) -> Result<(), BusError> {
    sqlx::query("DELETE FROM leases WHERE grp = ?1 AND topic = ?2 AND part = ?3 AND holder = ?4")
        .bind(group)
        .bind(topic)
        .bind(partition)
        .bind(holder)
        .execute(pool)
        .await
        .map_err(|e| db_error("releasing a group lease", e))?;
    Ok(())
}

/// Announces (or keeps announcing) `member` as a live member of `group` on each of `topics` until
/// `expiry` from now, and forgets members of those topics whose announcement ran out. A member
/// keeps its place in the join order while it renews in time.
pub(crate) async fn announce_member(
    pool: &SqlitePool,
    group: &str,
    topics: &[String],
    member: &str,
    expiry: Duration,
) -> Result<(), BusError> {
    let fail = |e| db_error("announcing a group member", e);
    let now = now_ms();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(fail)?;
    for topic in topics {
        sqlx::query("DELETE FROM members WHERE grp = ?1 AND topic = ?2 AND expires_ms < ?3")
            .bind(group)
            .bind(topic)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query(
            "INSERT INTO members (grp, topic, member, expires_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (grp, topic, member) DO UPDATE SET expires_ms = excluded.expires_ms",
        )
        .bind(group)
        .bind(topic)
        .bind(member)
        .bind(now.saturating_add(millis(expiry)))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)
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

/// `member` leaves `group`: its leases and announcements go at once.
pub(crate) async fn leave_group(
    pool: &SqlitePool,
    group: &str,
    member: &str,
) -> Result<(), BusError> {
    let fail = |e| db_error("leaving a group", e);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(fail)?;
    sqlx::query("DELETE FROM leases WHERE grp = ?1 AND holder = ?2")
        .bind(group)
        .bind(member)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    sqlx::query("DELETE FROM members WHERE grp = ?1 AND member = ?2")
        .bind(group)
        .bind(member)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    tx.commit().await.map_err(fail)
}
