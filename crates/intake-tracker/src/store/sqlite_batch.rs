// SQLite's batch statements, included by `sqlite.rs` next to `engine.rs` (which calls them): multi-row
// `VALUES` lists of up to `ROWS_PER_STATEMENT` rows each, with anonymous parameters.
// (An included file cannot carry an inner doc comment; the including module documents it.)

/// `(?, ?, …), (?, …)` for `rows` rows of `width` parameters. Anonymous parameters, bound in order:
/// sqlx finds where a named one (`$n`) goes by asking SQLite its name, which walks the statement's
/// list of names, so binding named parameters costs the square of their number.
fn values_list(rows: usize, width: usize) -> String {
    let row = format!("({})", placeholders(width));
    vec![row; rows].join(", ")
}

/// `?, ?, …` for `n` parameters.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Every payload row of the given request ids, oldest first.
async fn select_payloads(
    conn: &mut sqlx::SqliteConnection,
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

/// Inserts the new payloads (`rows[k]` is the row of the one `batch[creators[k]]` creates), skipping
/// any another writer created first; returns the ids of those inserted by (request id, org).
async fn insert_payloads(
    conn: &mut sqlx::SqliteConnection,
    batch: &[NewStatus],
    creators: &[usize],
    rows: &[PayloadState],
) -> Result<HashMap<(String, String), i64>, sqlx::Error> {
    let mut ids = HashMap::new();
    let pairs: Vec<(usize, &PayloadState)> = creators.iter().copied().zip(rows).collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO payloads (request_id, account, org_id, inventory_id, system_id, created_at, last_status_at, \
             last_service, last_status) VALUES {} ON CONFLICT (request_id, org_id) DO NOTHING RETURNING id, request_id, org_id",
            values_list(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for (i, p) in chunk {
            q = q
                .bind(batch[*i].request_id.clone())
                .bind(p.ids[0].clone())
                .bind(p.ids[1].clone())
                .bind(p.ids[2].clone())
                .bind(p.ids[3].clone());
            q = bind(bind(q, &Arg::Time(p.created_at)), &Arg::Time(p.last_status_at))
                .bind(p.last_service.clone())
                .bind(p.last_status.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            ids.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
        }
    }
    Ok(ids)
}

/// Inserts the statuses, skipping known dedup keys; returns for each status of `batch` whether it
/// is the one stored (the first of its key in the batch, when the key was not known).
/// The known keys are looked up first, then only the others inserted, without `RETURNING`: a first
/// delivery then sends no row back through the driver's channel. Exact because the write
/// transaction (`BEGIN IMMEDIATE`) keeps every other writer out meanwhile.
async fn insert_statuses(
    conn: &mut sqlx::SqliteConnection,
    batch: &[NewStatus],
    targets: &[i64],
    stored_at: DateTime<Utc>,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut known: HashSet<(String, DateTime<Utc>)> = HashSet::new();
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH v (date, dedup_key) AS (VALUES {}) SELECT s.dedup_key, s.date FROM v \
             JOIN payload_statuses s ON s.date = v.date AND s.dedup_key = v.dedup_key",
            values_list(chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for s in chunk {
            q = bind(q, &Arg::Time(s.date)).bind(s.dedup_key.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            known.insert((row.try_get::<String, _>(0)?, get_time(&row, 1)?));
        }
    }
    // The first occurrence of each unknown key is stored.
    let mut inserted = vec![false; batch.len()];
    let mut seen: HashSet<(&str, DateTime<Utc>)> = HashSet::with_capacity(batch.len());
    let mut new: Vec<(&NewStatus, i64)> = Vec::with_capacity(batch.len());
    for (i, (s, payload_id)) in batch.iter().zip(targets.iter().copied()).enumerate() {
        if !seen.insert((s.dedup_key.as_str(), s.date))
            || (!known.is_empty() && known.contains(&(s.dedup_key.clone(), s.date)))
        {
            continue;
        }
        inserted[i] = true;
        new.push((s, payload_id));
    }
    for chunk in new.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO payload_statuses (payload_id, service, source, status, status_msg, date, created_at, dedup_key) \
             VALUES {} ON CONFLICT (dedup_key, date) DO NOTHING",
            values_list(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for (s, payload_id) in chunk {
            q = q
                .bind(*payload_id)
                .bind(s.service.clone())
                .bind(s.source.clone())
                .bind(s.status.clone())
                .bind(s.status_msg.clone());
            q = bind(bind(q, &Arg::Time(s.date)), &Arg::Time(stored_at)).bind(s.dedup_key.clone());
        }
        let done = q.execute(&mut *conn).await?.rows_affected();
        if done != chunk.len() as u64 {
            return Err(sqlx::Error::Protocol(format!(
                "{} of {} statuses not known before their insert were skipped by it",
                chunk.len() as u64 - done.min(chunk.len() as u64),
                chunk.len()
            )));
        }
    }
    Ok(inserted)
}

/// Per `(payload, service)`: the first date, the first terminal date and the number of terminal
/// statuses; the batch statements add `WHERE payload_id …` and the grouping.
const DURATIONS_SELECT: &str = "SELECT payload_id, service, MIN(date), \
     MIN(CASE WHEN status IN ('success', 'error', 'rejected') THEN date END), \
     SUM(CASE WHEN status IN ('success', 'error', 'rejected') THEN 1 ELSE 0 END) FROM payload_statuses";

/// For each `(payload, service)` whose first terminal status this batch stored: the seconds from the
/// service's first status to that terminal status.
async fn first_terminal_durations(
    conn: &mut sqlx::SqliteConnection,
    terminal_counts: &HashMap<(i64, String), i64>,
) -> Result<Vec<(String, f64)>, sqlx::Error> {
    let mut out = Vec::new();
    let ids: Vec<i64> = terminal_counts.keys().map(|(id, _)| *id).collect::<BTreeSet<i64>>().into_iter().collect();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "{DURATIONS_SELECT} WHERE payload_id IN ({}) GROUP BY payload_id, service",
            placeholders(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        out.extend(durations_of(&q.fetch_all(&mut *conn).await?, terminal_counts)?);
    }
    Ok(out)
}

/// Writes the payload rows the batch changed.
async fn update_payloads(
    conn: &mut sqlx::SqliteConnection,
    dirty: &[&PayloadState],
) -> Result<(), sqlx::Error> {
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


/// Writes the `last_*` columns of payloads the batch changed nothing else of: no index entry moves.
async fn update_last_status(
    conn: &mut sqlx::SqliteConnection,
    changed: &[&PayloadState],
) -> Result<(), sqlx::Error> {
    for chunk in changed.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH v (id, last_status_at, last_service, last_status) AS (VALUES {}) \
             UPDATE payloads SET last_status_at = v.last_status_at, last_service = v.last_service, \
             last_status = v.last_status FROM v WHERE payloads.id = v.id",
            values_list(chunk.len(), 4)
        );
        let mut q = sqlx::query(&sql);
        for state in chunk {
            q = bind(q.bind(state.id), &Arg::Time(state.last_status_at))
                .bind(state.last_service.clone())
                .bind(state.last_status.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
