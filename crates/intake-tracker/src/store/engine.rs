// The statements both drivers run, included by `sqlite.rs` and `postgres.rs`, each of which defines
// `Db`, `Row`, `bind(query, &Arg)`, `get_time(&Row, index)`, `get_opt_time(&Row, index)`,
// `ROWS_PER_STATEMENT` (rows per multi-row statement) and `BEGIN_WRITE` (how a write transaction
// starts) first.
// (An included file cannot carry an inner doc comment; the including modules document it.)

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::Row as _;

use crate::model::{
    BatchOutcome, IdentityConflict, Keyset, NewStatus, Page, PayloadRow, Scope, ServiceJourney, SortValue,
    StatsData, StatusRow,
};
use crate::store::sql::{Arg, Built, ListQuery, PAYLOAD_COLUMNS, STATUS_COLUMNS};

type Q<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;

fn build(b: &Built) -> Q<'_> {
    let mut q = sqlx::query(&b.sql);
    for arg in &b.args {
        q = bind(q, arg);
    }
    q
}

fn payload_row(row: &Row) -> Result<PayloadRow, sqlx::Error> {
    Ok(PayloadRow {
        id: row.try_get(0)?,
        request_id: row.try_get(1)?,
        account: row.try_get(2)?,
        org_id: row.try_get(3)?,
        inventory_id: row.try_get(4)?,
        system_id: row.try_get(5)?,
        created_at: get_time(row, 6)?,
        last_status_at: get_time(row, 7)?,
        last_service: row.try_get(8)?,
        last_status: row.try_get(9)?,
    })
}

fn status_row(row: &Row) -> Result<StatusRow, sqlx::Error> {
    Ok(StatusRow {
        id: row.try_get(0)?,
        payload_id: row.try_get(1)?,
        request_id: row.try_get(2)?,
        account: row.try_get(3)?,
        org_id: row.try_get(4)?,
        inventory_id: row.try_get(5)?,
        system_id: row.try_get(6)?,
        service: row.try_get(7)?,
        source: row.try_get(8)?,
        status: row.try_get(9)?,
        status_msg: row.try_get(10)?,
        date: get_time(row, 11)?,
        created_at: get_time(row, 12)?,
    })
}

/// Runs a list query: the exact count, one page, and the keyset of its last row when more follow.
async fn run_list<T>(
    pool: &sqlx::Pool<Db>,
    list: &ListQuery,
    page_size: u32,
    map: fn(&Row) -> Result<T, sqlx::Error>,
    keyset: impl Fn(&T) -> Keyset,
) -> Result<Page<T>, sqlx::Error> {
    let count: i64 = build(&list.count).fetch_one(pool).await?.try_get(0)?;
    let rows = build(&list.page).fetch_all(pool).await?;
    let mut rows: Vec<T> = rows.iter().map(map).collect::<Result<_, _>>()?;
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next = if more { rows.last().map(keyset) } else { None };
    Ok(Page { count, rows, next })
}

/// A payload as the batch sees it while it runs.
struct PayloadState {
    id: i64,
    ids: [String; 4],
    created_at: DateTime<Utc>,
    last_status_at: DateTime<Utc>,
    last_service: String,
    last_status: String,
    dirty: bool,
}

const TENANT_FIELD_NAMES: [&str; 4] = ["account", "org_id", "inventory_id", "system_id"];

impl PayloadState {
    /// Folds a newly stored status into the payload row.
    fn apply(&mut self, s: &NewStatus, conflicts: &mut Vec<IdentityConflict>) {
        let incoming = [&s.account, &s.org_id, &s.inventory_id, &s.system_id];
        for (i, value) in incoming.into_iter().enumerate() {
            if value.is_empty() || *value == self.ids[i] {
                continue;
            }
            if self.ids[i].is_empty() {
                self.ids[i] = value.clone();
                self.dirty = true;
            } else {
                conflicts.push(IdentityConflict {
                    request_id: s.request_id.clone(),
                    field: TENANT_FIELD_NAMES[i],
                    kept: self.ids[i].clone(),
                    ignored: value.clone(),
                });
            }
        }
        if s.date < self.created_at {
            self.created_at = s.date;
            self.dirty = true;
        }
        if s.date >= self.last_status_at
            && (s.date != self.last_status_at || s.service != self.last_service || s.status != self.last_status)
        {
            self.last_status_at = s.date;
            self.last_service = s.service.clone();
            self.last_status = s.status.clone();
            self.dirty = true;
        }
    }
}


/// `($1, $2, …), ($n, …)` for `rows` rows of `width` parameters.
fn values_list(rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", r * width + c + 1));
        }
        out.push(')');
    }
    out
}

/// `$1, $2, …` for `n` parameters.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

fn state_of(p: PayloadRow) -> PayloadState {
    PayloadState {
        id: p.id,
        ids: [p.account, p.org_id, p.inventory_id, p.system_id],
        created_at: p.created_at,
        last_status_at: p.last_status_at,
        last_service: p.last_service,
        last_status: p.last_status,
        dirty: false,
    }
}

/// Where a status goes among the payloads of its request id (`rows`: their ids, `None` for one not
/// created yet, and orgs, oldest first): one payload per (request id, org). A status naming an org
/// goes to that org's payload, else adopts the newest payload without an org, else needs a new one;
/// a status without an org goes to the newest payload. Returns the index in `rows` (pushing a new
/// row when needed); an adopted row takes the status's org.
fn resolve(rows: &mut Vec<(Option<i64>, String)>, org_id: &str) -> usize {
    if org_id.is_empty() {
        if rows.is_empty() {
            rows.push((None, String::new()));
        }
        return rows.len() - 1;
    }
    if let Some(i) = rows.iter().position(|(_, org)| org == org_id) {
        return i;
    }
    if let Some(i) = rows.iter().rposition(|(_, org)| org.is_empty()) {
        rows[i].1 = org_id.to_owned();
        return i;
    }
    rows.push((None, org_id.to_owned()));
    rows.len() - 1
}

/// Every payload row of the given request ids, oldest first.
async fn select_payloads(
    conn: &mut <Db as sqlx::Database>::Connection,
    request_ids: &[&str],
) -> Result<Vec<PayloadRow>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in request_ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {PAYLOAD_COLUMNS} FROM payloads p WHERE p.request_id IN ({}) ORDER BY p.id",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.push(payload_row(&row)?);
        }
    }
    out.sort_by_key(|p| p.id);
    Ok(out)
}

/// The payloads of a batch: their state by id, and the payload id of each status in batch order.
struct BatchPayloads {
    states: HashMap<i64, PayloadState>,
    targets: Vec<i64>,
}

/// Creates the payloads that do not exist yet (from their first status in `batch`), then loads every
/// payload the batch's statuses go to (see [`resolve`]).
async fn load_payloads(
    conn: &mut <Db as sqlx::Database>::Connection,
    batch: &[NewStatus],
) -> Result<BatchPayloads, sqlx::Error> {
    let mut request_ids: Vec<&str> = Vec::new();
    {
        let mut seen = std::collections::HashSet::new();
        for s in batch {
            if seen.insert(s.request_id.as_str()) {
                request_ids.push(s.request_id.as_str());
            }
        }
    }
    let rows_of = |existing: &[PayloadRow]| {
        let mut rows: HashMap<String, Vec<(Option<i64>, String)>> = HashMap::new();
        for p in existing {
            rows.entry(p.request_id.clone()).or_default().push((Some(p.id), p.org_id.clone()));
        }
        rows
    };
    // Plan on what exists: the statuses that need a payload created first.
    let existing = select_payloads(conn, &request_ids).await?;
    let mut plan = rows_of(&existing);
    let mut creators: Vec<&NewStatus> = Vec::new();
    for s in batch {
        let rows = plan.entry(s.request_id.clone()).or_default();
        let i = resolve(rows, &s.org_id);
        if rows[i].0.is_none() {
            rows[i].0 = Some(-1);
            creators.push(s);
        }
    }
    for chunk in creators.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO payloads (request_id, account, org_id, inventory_id, system_id, created_at, last_status_at, \
             last_service, last_status) VALUES {} ON CONFLICT (request_id, org_id) DO NOTHING",
            values_list(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for s in chunk {
            q = q
                .bind(s.request_id.clone())
                .bind(s.account.clone())
                .bind(s.org_id.clone())
                .bind(s.inventory_id.clone())
                .bind(s.system_id.clone());
            q = bind(bind(q, &Arg::Time(s.date)), &Arg::Time(s.date)).bind(s.service.clone()).bind(s.status.clone());
        }
        q.execute(&mut *conn).await?;
    }
    let existing = if creators.is_empty() { existing } else { select_payloads(conn, &request_ids).await? };
    let mut rows = rows_of(&existing);
    let mut states: HashMap<i64, PayloadState> = existing.into_iter().map(|p| (p.id, state_of(p))).collect();
    let mut targets = Vec::with_capacity(batch.len());
    for s in batch {
        let rows = rows.entry(s.request_id.clone()).or_default();
        let i = resolve(rows, &s.org_id);
        let id = rows[i].0.ok_or_else(|| {
            sqlx::Error::Protocol(format!("payload {} vanished inside its transaction", s.request_id))
        })?;
        targets.push(id);
        if let Some(state) = states.get_mut(&id) {
            // Adopted by its first org (the row is written with it even if the status is a duplicate).
            if state.ids[1].is_empty() && !s.org_id.is_empty() {
                state.ids[1] = s.org_id.clone();
                state.dirty = true;
            }
        }
    }
    Ok(BatchPayloads { states, targets })
}

/// Inserts the statuses, skipping known dedup keys; returns the `(dedup_key, date)` of those stored.
async fn insert_statuses(
    conn: &mut <Db as sqlx::Database>::Connection,
    batch: &[NewStatus],
    targets: &[i64],
    stored_at: DateTime<Utc>,
) -> Result<std::collections::HashSet<(String, DateTime<Utc>)>, sqlx::Error> {
    let mut inserted = std::collections::HashSet::new();
    for (chunk, chunk_targets) in batch.chunks(ROWS_PER_STATEMENT).zip(targets.chunks(ROWS_PER_STATEMENT)) {
        let sql = format!(
            "INSERT INTO payload_statuses (payload_id, service, source, status, status_msg, date, created_at, dedup_key) \
             VALUES {} ON CONFLICT (dedup_key, date) DO NOTHING RETURNING dedup_key, date",
            values_list(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for (s, payload_id) in chunk.iter().zip(chunk_targets) {
            q = q
                .bind(*payload_id)
                .bind(s.service.clone())
                .bind(s.source.clone())
                .bind(s.status.clone())
                .bind(s.status_msg.clone());
            q = bind(bind(q, &Arg::Time(s.date)), &Arg::Time(stored_at)).bind(s.dedup_key.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            inserted.insert((row.try_get::<String, _>(0)?, get_time(&row, 1)?));
        }
    }
    Ok(inserted)
}

/// For each `(payload, service)` whose first terminal status this batch stored: the seconds from the
/// service's first status to that terminal status.
async fn first_terminal_durations(
    conn: &mut <Db as sqlx::Database>::Connection,
    terminal_counts: &HashMap<(i64, String), i64>,
) -> Result<Vec<(String, f64)>, sqlx::Error> {
    let mut out = Vec::new();
    let ids: Vec<i64> = {
        let set: std::collections::BTreeSet<i64> = terminal_counts.keys().map(|(id, _)| *id).collect();
        set.into_iter().collect()
    };
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT payload_id, service, MIN(date), \
             MIN(CASE WHEN status IN ('success', 'error', 'rejected') THEN date END), \
             SUM(CASE WHEN status IN ('success', 'error', 'rejected') THEN 1 ELSE 0 END) \
             FROM payload_statuses WHERE payload_id IN ({}) GROUP BY payload_id, service",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let key: (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            let Some(now_stored) = terminal_counts.get(&key) else { continue };
            let total: Option<i64> = row.try_get(4)?;
            // No terminal status before this batch: the first one is among those just stored.
            if total != Some(*now_stored) {
                continue;
            }
            if let (Some(first), Some(terminal)) = (get_opt_time(&row, 2)?, get_opt_time(&row, 3)?) {
                let seconds = (terminal - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
                out.push((key.1, seconds));
            }
        }
    }
    Ok(out)
}

/// Writes the payload rows the batch changed.
async fn update_payloads(
    conn: &mut <Db as sqlx::Database>::Connection,
    payloads: &HashMap<i64, PayloadState>,
) -> Result<(), sqlx::Error> {
    let dirty: Vec<&PayloadState> = payloads.values().filter(|p| p.dirty).collect();
    for chunk in dirty.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH v (id, account, org_id, inventory_id, system_id, created_at, last_status_at, last_service, last_status) \
             AS (VALUES {}) \
             UPDATE payloads SET account = v.account, org_id = v.org_id, inventory_id = v.inventory_id, \
             system_id = v.system_id, created_at = v.created_at, last_status_at = v.last_status_at, \
             last_service = v.last_service, last_status = v.last_status FROM v WHERE payloads.id = v.id",
            values_list(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for state in chunk {
            q = q
                .bind(state.id)
                .bind(state.ids[0].clone())
                .bind(state.ids[1].clone())
                .bind(state.ids[2].clone())
                .bind(state.ids[3].clone());
            q = bind(bind(q, &Arg::Time(state.created_at)), &Arg::Time(state.last_status_at))
                .bind(state.last_service.clone())
                .bind(state.last_status.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A pooled connection inside a write transaction. It goes back to the pool only after its COMMIT
/// succeeded; after anything else (a failed statement, a failed COMMIT, a cancelled future) the
/// transaction's state is unknown, so the connection is closed, which rolls back whatever it held.
/// A connection returned with a transaction still open would keep the write lock, show its
/// uncommitted rows to whoever borrows it next, and report later batches as stored that never are.
struct WriteTx {
    conn: sqlx::pool::PoolConnection<Db>,
    committed: bool,
}

impl WriteTx {
    async fn begin(pool: &sqlx::Pool<Db>) -> Result<Self, sqlx::Error> {
        let mut tx = Self { conn: pool.acquire().await?, committed: false };
        sqlx::query(BEGIN_WRITE).execute(&mut *tx.conn).await?;
        Ok(tx)
    }

    async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::query("COMMIT").execute(&mut *self.conn).await?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

/// Stores a batch in one transaction (the promise of `StatusStore::store_batch`), with a handful of
/// multi-row statements rather than one round trip per status.
pub(super) async fn store_batch_in(pool: &sqlx::Pool<Db>, batch: &[NewStatus]) -> Result<BatchOutcome, sqlx::Error> {
    let mut outcome = BatchOutcome::default();
    if batch.is_empty() {
        return Ok(outcome);
    }
    let mut tx = WriteTx::begin(pool).await?;
    let conn = &mut *tx.conn;
    let stored_at = Utc::now().trunc_subsecs(6);
    let BatchPayloads { states: mut payloads, targets } = load_payloads(conn, batch).await?;
    let mut inserted = insert_statuses(conn, batch, &targets, stored_at).await?;
    let mut terminal_counts: HashMap<(i64, String), i64> = HashMap::new();
    for (s, target) in batch.iter().zip(&targets) {
        // The first occurrence of a key in the batch is the stored one; any later one is a duplicate.
        if !inserted.remove(&(s.dedup_key.clone(), s.date)) {
            outcome.duplicates += 1;
            continue;
        }
        let Some(state) = payloads.get_mut(target) else { continue };
        state.apply(s, &mut outcome.conflicts);
        if intake_core::status::is_terminal(&s.status) {
            *terminal_counts.entry((state.id, s.service.clone())).or_default() += 1;
        }
        outcome.stored.push(s.clone());
    }
    if !terminal_counts.is_empty() {
        outcome.service_durations = first_terminal_durations(conn, &terminal_counts).await?;
    }
    update_payloads(conn, &payloads).await?;
    tx.commit().await?;
    Ok(outcome)
}

fn payload_keyset(sort: crate::model::PayloadSort) -> impl Fn(&PayloadRow) -> Keyset {
    use crate::model::PayloadSort as S;
    move |p: &PayloadRow| Keyset {
        id: p.id,
        value: match sort {
            S::Account => SortValue::Text(p.account.clone()),
            S::OrgId => SortValue::Text(p.org_id.clone()),
            S::InventoryId => SortValue::Text(p.inventory_id.clone()),
            S::SystemId => SortValue::Text(p.system_id.clone()),
            S::CreatedAt => SortValue::Time(p.created_at),
        },
    }
}

fn status_keyset(sort: crate::model::StatusSort) -> impl Fn(&StatusRow) -> Keyset {
    use crate::model::StatusSort as S;
    move |s: &StatusRow| Keyset {
        id: s.id,
        value: match sort {
            S::Service => SortValue::Text(s.service.clone()),
            S::Source => SortValue::Text(s.source.clone().unwrap_or_default()),
            S::RequestId => SortValue::Text(s.request_id.clone()),
            S::Status => SortValue::Text(s.status.clone()),
            S::StatusMsg => SortValue::Text(s.status_msg.clone()),
            S::Date => SortValue::Time(s.date),
            S::CreatedAt => SortValue::Time(s.created_at),
        },
    }
}

pub(super) async fn list_payloads_in(
    pool: &sqlx::Pool<Db>,
    q: &crate::model::PayloadQuery,
) -> Result<Page<PayloadRow>, sqlx::Error> {
    run_list(pool, &crate::store::sql::payloads(q), q.page_size, payload_row, payload_keyset(q.sort_by)).await
}

pub(super) async fn list_statuses_in(
    pool: &sqlx::Pool<Db>,
    q: &crate::model::StatusQuery,
) -> Result<Page<StatusRow>, sqlx::Error> {
    run_list(pool, &crate::store::sql::statuses(q), q.page_size, status_row, status_keyset(q.sort_by)).await
}

pub(super) async fn payload_in(
    pool: &sqlx::Pool<Db>,
    request_id: &str,
    scope: &Scope,
) -> Result<Option<PayloadRow>, sqlx::Error> {
    // One payload per (request id, org): a caller of an org sees its own; a caller who sees every org
    // gets the newest payload of that request id.
    let sql = format!("SELECT {PAYLOAD_COLUMNS} FROM payloads p WHERE p.request_id = $1");
    let row = match scope {
        Scope::Nothing => return Ok(None),
        Scope::All => {
            sqlx::query(&format!("{sql} ORDER BY p.id DESC LIMIT 1"))
                .bind(request_id.to_owned())
                .fetch_optional(pool)
                .await?
        }
        Scope::Org(org) => {
            sqlx::query(&format!("{sql} AND p.org_id = $2"))
                .bind(request_id.to_owned())
                .bind(org.clone())
                .fetch_optional(pool)
                .await?
        }
    };
    row.as_ref().map(payload_row).transpose()
}

pub(super) async fn payload_statuses_in(
    pool: &sqlx::Pool<Db>,
    payload: &PayloadRow,
    after_id: Option<i64>,
) -> Result<Vec<StatusRow>, sqlx::Error> {
    // `date >= created_at` lets PostgreSQL skip partitions older than the payload.
    let sql = format!(
        "SELECT {STATUS_COLUMNS} FROM payload_statuses s JOIN payloads p ON p.id = s.payload_id \
         WHERE s.payload_id = $1 AND s.id > $2 AND s.date >= $3 ORDER BY s.id"
    );
    let q = sqlx::query(&sql);
    let q = bind(q.bind(payload.id).bind(after_id.unwrap_or(0)), &Arg::Time(payload.created_at));
    let rows = q.fetch_all(pool).await?;
    rows.iter().map(status_row).collect()
}

pub(super) async fn stats_in(
    pool: &sqlx::Pool<Db>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    service: Option<&str>,
    scope: &Scope,
) -> Result<StatsData, sqlx::Error> {
    let (counts, journeys) = crate::store::sql::stats(from, to, service, scope);
    let mut data = StatsData::default();
    for row in build(&counts).fetch_all(pool).await? {
        data.status_counts.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
    }
    for row in build(&journeys).fetch_all(pool).await? {
        let first_terminal = get_opt_time(&row, 3)?;
        let first_success = get_opt_time(&row, 4)?;
        data.journeys.push(ServiceJourney {
            service: row.try_get(0)?,
            payload_id: row.try_get(1)?,
            first: get_time(&row, 2)?,
            first_terminal,
            succeeded: first_terminal.is_some() && first_terminal == first_success,
        });
    }
    Ok(data)
}

/// Deletes payloads whose last status is older than `cutoff`, `batch` rows per statement.
pub(super) async fn delete_old_payloads(pool: &sqlx::Pool<Db>, cutoff: DateTime<Utc>, batch: i64) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let q = sqlx::query(
            "DELETE FROM payloads WHERE id IN (SELECT id FROM payloads WHERE last_status_at < $1 LIMIT $2)",
        );
        let done = bind(q, &Arg::Time(cutoff)).bind(batch).execute(pool).await?.rows_affected();
        total += done;
        if done < batch as u64 {
            return Ok(total);
        }
    }
}
