// The statements both drivers run, included by `sqlite.rs` and `postgres.rs`, each of which defines
// `Db`, `Row`, `bind(query, &Arg)`, `get_time(&Row, index)`, `get_opt_time(&Row, index)` and
// `BEGIN_WRITE` (how a write transaction starts), and includes its own batch statements
// (`sqlite_batch.rs`, `postgres_batch.rs`: `select_payloads`, `insert_payloads`, `insert_statuses`,
// `first_terminal_durations`, `update_payloads`), which this file calls.
// (An included file cannot carry an inner doc comment; the including modules document it.)

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

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
    let count_exact = !list.count_is_estimate;
    let rows = build(&list.page).fetch_all(pool).await?;
    let mut rows: Vec<T> = rows.iter().map(map).collect::<Result<_, _>>()?;
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next = if more { rows.last().map(keyset) } else { None };
    Ok(Page { count, count_exact, rows, next })
}

/// A payload as the batch sees it while it runs.
#[derive(Debug, Clone)]
struct PayloadState {
    id: i64,
    ids: [String; 4],
    created_at: DateTime<Utc>,
    last_status_at: DateTime<Utc>,
    last_service: String,
    last_status: String,
    dirty: bool,
    /// Whether an indexed column changed (a tenant field or `created_at`), not only `last_*`: an
    /// update of `last_*` alone rewrites no index entry (SQLite rewrites the entries of every index
    /// whose column a `SET` names; PostgreSQL can then update the row in place, HOT).
    keys_dirty: bool,
    /// Whether this transaction created the row: no other can have changed it, so an update writes
    /// it as the batch computed it (correcting its prediction), where a row that existed before is
    /// merged with its current version (PostgreSQL, `update_payloads`).
    #[allow(
        dead_code,
        reason = "read by PostgreSQL's update statements; SQLite, which reads inside its write lock, has no use for it"
    )]
    created_here: bool,
}

const TENANT_FIELD_NAMES: [&str; 4] = ["account", "org_id", "inventory_id", "system_id"];

impl PayloadState {
    /// A payload row as its first status `s` creates it (its id not known yet).
    fn created_by(s: &NewStatus) -> Self {
        PayloadState {
            id: 0,
            ids: [s.account.clone(), s.org_id.clone(), s.inventory_id.clone(), s.system_id.clone()],
            created_at: s.date,
            last_status_at: s.date,
            last_service: s.service.clone(),
            last_status: s.status.clone(),
            dirty: false,
            keys_dirty: false,
            created_here: true,
        }
    }

    /// A payload without an org takes the first org of a status routed to it, stored or not.
    fn adopt(&mut self, s: &NewStatus) {
        if self.ids[1].is_empty() && !s.org_id.is_empty() {
            self.ids[1] = s.org_id.clone();
            self.dirty = true;
            self.keys_dirty = true;
        }
    }

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
                self.keys_dirty = true;
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
            self.keys_dirty = true;
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

    /// Whether both describe the same row values.
    fn same_row(&self, other: &Self) -> bool {
        self.ids == other.ids
            && self.created_at == other.created_at
            && self.last_status_at == other.last_status_at
            && self.last_service == other.last_service
            && self.last_status == other.last_status
    }
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
        keys_dirty: false,
        created_here: false,
    }
}

/// Where a status of the batch goes: a payload that exists (its id) or one the batch creates (its
/// index among the batch's new payloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Existing(i64),
    New(usize),
}

/// Where a status goes among the payloads of its request id (`rows`: their targets, `None` for one
/// not planned yet, and orgs, oldest first): one payload per (request id, org). A status naming an
/// org goes to that org's payload, else adopts the newest payload without an org, else needs a new
/// one; a status without an org goes to the newest payload. Returns the index in `rows` (pushing a
/// new row when needed); an adopted row takes the status's org.
fn resolve(rows: &mut Vec<(Option<Target>, String)>, org_id: &str) -> usize {
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

/// The payloads of a batch.
struct BatchPayloads {
    /// The existing payloads the batch's statuses go to, by id.
    states: HashMap<i64, PayloadState>,
    /// The payloads the batch creates: the index in the batch of each one's first status.
    creators: Vec<usize>,
    /// Each status's payload, in batch order.
    targets: Vec<Target>,
}

/// The batch's request ids: each one once, in the order of its first status, and the position
/// among them of each status's request id (so that a status's request id is hashed once a batch).
struct RequestIds<'a> {
    ids: Vec<&'a str>,
    of: Vec<usize>,
    by_id: HashMap<&'a str, usize>,
}

impl<'a> RequestIds<'a> {
    fn of_batch(batch: &'a [NewStatus]) -> Self {
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        let mut ids = Vec::new();
        let of = batch
            .iter()
            .map(|s| {
                *by_id.entry(s.request_id.as_str()).or_insert_with(|| {
                    ids.push(s.request_id.as_str());
                    ids.len() - 1
                })
            })
            .collect();
        RequestIds { ids, of, by_id }
    }
}

/// Routes every status of `batch` to an existing payload (`existing`: every payload row of the
/// batch's request ids, oldest first) or to one the batch creates (see [`resolve`]). Existing rows
/// adopt the first org routed to them.
fn plan(batch: &[NewStatus], request_ids: &RequestIds<'_>, existing: Vec<PayloadRow>) -> BatchPayloads {
    let mut rows: Vec<Vec<(Option<Target>, String)>> = vec![Vec::new(); request_ids.ids.len()];
    let mut states: HashMap<i64, PayloadState> = HashMap::with_capacity(existing.len());
    for p in existing {
        // Every row selected has one of the batch's request ids.
        if let Some(&slot) = request_ids.by_id.get(p.request_id.as_str()) {
            rows[slot].push((Some(Target::Existing(p.id)), p.org_id.clone()));
        }
        states.insert(p.id, state_of(p));
    }
    let mut creators = Vec::new();
    let mut targets = Vec::with_capacity(batch.len());
    for (index, s) in batch.iter().enumerate() {
        let rows = &mut rows[request_ids.of[index]];
        let i = resolve(rows, &s.org_id);
        let target = *rows[i].0.get_or_insert_with(|| {
            creators.push(index);
            Target::New(creators.len() - 1)
        });
        if let Target::Existing(id) = target {
            if let Some(state) = states.get_mut(&id) {
                state.adopt(s);
            }
        }
        targets.push(target);
    }
    BatchPayloads { states, creators, targets }
}

/// The rows the batch's new payloads will have once every status routed to them is stored, except
/// a status repeating an earlier one of the batch: what they are written with at once, so that a
/// first delivery needs no update afterwards.
fn predict(batch: &[NewStatus], plan: &BatchPayloads) -> Vec<PayloadState> {
    let mut predicted: Vec<PayloadState> = plan.creators.iter().map(|&i| PayloadState::created_by(&batch[i])).collect();
    for (s, target) in batch.iter().zip(&plan.targets) {
        if let Target::New(k) = target {
            predicted[*k].adopt(s);
        }
    }
    let mut seen = HashSet::new();
    let mut ignored = Vec::new();
    for (s, target) in batch.iter().zip(&plan.targets) {
        if seen.insert((s.dedup_key.as_str(), s.date)) {
            if let Target::New(k) = target {
                predicted[*k].apply(s, &mut ignored);
            }
        }
    }
    predicted
}

/// Plans the batch's payloads and creates the missing ones with their predicted rows. Returns the
/// plan and the rows written for the new payloads (ids set). When another writer created one of them
/// meanwhile, plans again on what now exists, creating nothing.
async fn load_payloads(
    conn: &mut <Db as sqlx::Database>::Connection,
    batch: &[NewStatus],
) -> Result<(BatchPayloads, Vec<PayloadState>), sqlx::Error> {
    let request_ids = RequestIds::of_batch(batch);
    let planned = plan(batch, &request_ids, select_payloads(conn, &request_ids.ids).await?);
    if planned.creators.is_empty() {
        return Ok((planned, Vec::new()));
    }
    let mut written = predict(batch, &planned);
    let created = insert_payloads(conn, batch, &planned.creators, &written).await?;
    let mut complete = true;
    for (k, state) in written.iter_mut().enumerate() {
        match created.get(&(batch[planned.creators[k]].request_id.clone(), state.ids[1].clone())) {
            Some(id) => state.id = *id,
            None => complete = false,
        }
    }
    if complete {
        return Ok((planned, written));
    }
    // Another writer created some of them first: route to what exists now (ours included).
    let replanned = plan(batch, &request_ids, select_payloads(conn, &request_ids.ids).await?);
    if let Some(i) = replanned.creators.first() {
        return Err(sqlx::Error::Protocol(format!(
            "payload {} vanished inside its transaction",
            batch[*i].request_id
        )));
    }
    Ok((replanned, Vec::new()))
}

/// A service's first date and first terminal date on a payload.
type Span = (DateTime<Utc>, Option<DateTime<Utc>>);

/// Stores a batch in one transaction (the promise of `StatusStore::store_batch`), with a handful of
/// multi-row statements rather than one round trip per status. New payloads are written once, with
/// their final row; only payloads that existed before (or whose prediction a stored duplicate
/// upset) are updated afterwards, and only their first-terminal durations need a query.
pub(super) async fn store_batch_in(pool: &sqlx::Pool<Db>, batch: &[NewStatus]) -> Result<BatchOutcome, sqlx::Error> {
    let mut outcome = BatchOutcome::default();
    if batch.is_empty() {
        return Ok(outcome);
    }
    let mut tx = WriteTx::begin(pool).await?;
    let conn = &mut *tx.conn;
    let stored_at = Utc::now().trunc_subsecs(6);
    let (BatchPayloads { states: mut payloads, creators, targets }, written) = load_payloads(conn, batch).await?;
    let payload_ids: Vec<i64> = targets
        .iter()
        .map(|t| match t {
            Target::Existing(id) => *id,
            Target::New(k) => written[*k].id,
        })
        .collect();
    // The new payloads' rows folded from their first status, as if written then.
    let mut fresh: Vec<PayloadState> = creators
        .iter()
        .zip(&written)
        .map(|(&i, w)| PayloadState { id: w.id, ..PayloadState::created_by(&batch[i]) })
        .collect();
    for (s, target) in batch.iter().zip(&targets) {
        if let Target::New(k) = target {
            fresh[*k].adopt(s);
        }
    }
    let inserted = insert_statuses(conn, batch, &payload_ids, stored_at).await?;
    let mut terminal_counts: HashMap<(i64, String), i64> = HashMap::new();
    // New payloads: (first date, first terminal date) per (payload, service), all stored now.
    let mut spans: BTreeMap<(i64, &str), Span> = BTreeMap::new();
    for (index, (s, target)) in batch.iter().zip(&targets).enumerate() {
        // The first occurrence of a key in the batch is the stored one; any later one is a duplicate.
        if !inserted[index] {
            outcome.duplicates += 1;
            continue;
        }
        let terminal = intake_core::status::is_terminal(&s.status);
        match target {
            Target::Existing(id) => {
                let Some(state) = payloads.get_mut(id) else { continue };
                state.apply(s, &mut outcome.conflicts);
                if terminal {
                    *terminal_counts.entry((*id, s.service.clone())).or_default() += 1;
                }
            }
            Target::New(k) => {
                let state = &mut fresh[*k];
                state.apply(s, &mut outcome.conflicts);
                let span = spans.entry((state.id, s.service.as_str())).or_insert((s.date, None));
                span.0 = span.0.min(s.date);
                if terminal {
                    span.1 = Some(span.1.map_or(s.date, |t| t.min(s.date)));
                }
            }
        }
        outcome.stored.push(index);
    }
    for ((_, service), (first, terminal)) in spans {
        if let Some(terminal) = terminal {
            let seconds = (terminal - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
            outcome.service_durations.push((service.to_owned(), seconds));
        }
    }
    if !terminal_counts.is_empty() {
        outcome.service_durations.extend(first_terminal_durations(conn, &terminal_counts).await?);
    }
    for (state, w) in fresh.iter_mut().zip(&written) {
        state.dirty = !state.same_row(w);
        state.keys_dirty = state.ids != w.ids || state.created_at != w.created_at;
    }
    let (mut keys, mut last_only): (Vec<&PayloadState>, Vec<&PayloadState>) =
        payloads.values().chain(fresh.iter()).filter(|p| p.dirty).partition(|p| p.keys_dirty);
    // In id order, so that concurrent transactions updating the same rows lock them in one order.
    keys.sort_by_key(|p| p.id);
    last_only.sort_by_key(|p| p.id);
    update_payloads(conn, &keys).await?;
    update_last_status(conn, &last_only).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// From rows of `(payload id, service, first date, first terminal date, terminal statuses)`: the
/// durations of those whose first terminal status is among those the batch stored
/// (`terminal_counts`: how many terminal statuses it stored per payload and service).
fn durations_of(rows: &[Row], terminal_counts: &HashMap<(i64, String), i64>) -> Result<Vec<(String, f64)>, sqlx::Error> {
    let mut out = Vec::new();
    for row in rows {
        let key: (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        let Some(now_stored) = terminal_counts.get(&key) else { continue };
        let total: Option<i64> = row.try_get(4)?;
        // No terminal status before this batch: the first one is among those just stored.
        if total != Some(*now_stored) {
            continue;
        }
        if let (Some(first), Some(terminal)) = (get_opt_time(row, 2)?, get_opt_time(row, 3)?) {
            let seconds = (terminal - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
            out.push((key.1, seconds));
        }
    }
    Ok(out)
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
        // Every row of the request id (a handful at most), the newest picked here: with
        // `ORDER BY p.id DESC LIMIT 1` a planner without statistics yet walks the primary key
        // backwards through the whole table instead of looking the request id up.
        Scope::All => sqlx::query(&sql)
            .bind(request_id.to_owned())
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|row| Ok::<_, sqlx::Error>((row.try_get::<i64, _>(0)?, row)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .max_by_key(|(id, _)| *id)
            .map(|(_, row)| row),
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
            // created_at <= last_status_at, so the created_at index finds every candidate.
            "DELETE FROM payloads WHERE id IN \
             (SELECT id FROM payloads WHERE created_at < $1 AND last_status_at < $1 LIMIT $2)",
        );
        let done = bind(q, &Arg::Time(cutoff)).bind(batch).execute(pool).await?.rows_affected();
        total += done;
        if done < batch as u64 {
            return Ok(total);
        }
    }
}
