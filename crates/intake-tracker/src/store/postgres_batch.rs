// PostgreSQL's batch statements, included by `postgres.rs` next to `engine.rs` (which calls them):
// each column of a batch is bound as one array and unnested, so every statement's text, plan and
// parameter count stay the same whatever the batch's size, and each is one round trip.
// (An included file cannot carry an inner doc comment; the including module documents it.)

/// Every payload row of the given request ids, oldest first. One lookup per request id
/// (`OFFSET 0` keeps the planner from turning it into a join): without statistics yet (a new
/// database, before autovacuum's first `ANALYZE`) the planner takes `request_id = ANY($1)` to match
/// half the table and scans all of it, every batch.
async fn select_payloads(
    conn: &mut sqlx::PgConnection,
    request_ids: &[&str],
) -> Result<Vec<PayloadRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {PAYLOAD_COLUMNS} FROM UNNEST($1::text[]) AS r (request_id) \
         CROSS JOIN LATERAL (SELECT * FROM payloads WHERE payloads.request_id = r.request_id OFFSET 0) p"
    );
    let rows = sqlx::query(&sql).bind(request_ids.to_vec()).fetch_all(&mut *conn).await?;
    let mut out = rows.iter().map(payload_row).collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|p| p.id);
    Ok(out)
}

/// Inserts the new payloads (`rows[k]` is the row of the one `batch[creators[k]]` creates), skipping
/// any another writer created first; returns the ids of those inserted by (request id, org).
async fn insert_payloads(
    conn: &mut sqlx::PgConnection,
    batch: &[NewStatus],
    creators: &[usize],
    rows: &[PayloadState],
) -> Result<HashMap<(String, String), i64>, sqlx::Error> {
    let column = |f: fn(&PayloadState) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let request_ids: Vec<&str> = creators.iter().map(|&i| batch[i].request_id.as_str()).collect();
    let created_at: Vec<DateTime<Utc>> = rows.iter().map(|p| p.created_at).collect();
    let last_status_at: Vec<DateTime<Utc>> = rows.iter().map(|p| p.last_status_at).collect();
    let inserted = sqlx::query(
        "INSERT INTO payloads (request_id, account, org_id, inventory_id, system_id, created_at, last_status_at, \
         last_service, last_status) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], \
         $7::timestamptz[], $8::text[], $9::text[]) \
         ON CONFLICT (request_id, org_id) DO NOTHING RETURNING id, request_id, org_id",
    )
    .bind(request_ids)
    .bind(column(|p| &p.ids[0]))
    .bind(column(|p| &p.ids[1]))
    .bind(column(|p| &p.ids[2]))
    .bind(column(|p| &p.ids[3]))
    .bind(created_at)
    .bind(last_status_at)
    .bind(column(|p| &p.last_service))
    .bind(column(|p| &p.last_status))
    .fetch_all(&mut *conn)
    .await?;
    let mut ids = HashMap::with_capacity(inserted.len());
    for row in inserted {
        ids.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
    }
    Ok(ids)
}

/// Inserts the statuses, skipping known dedup keys; returns for each status of `batch` whether it
/// is the one stored (the first of its key in the batch, when the key was not known).
async fn insert_statuses(
    conn: &mut sqlx::PgConnection,
    batch: &[NewStatus],
    targets: &[i64],
    stored_at: DateTime<Utc>,
) -> Result<Vec<bool>, sqlx::Error> {
    let column = |f: fn(&NewStatus) -> &str| batch.iter().map(f).collect::<Vec<&str>>();
    let sources: Vec<Option<&str>> = batch.iter().map(|s| s.source.as_deref()).collect();
    let dates: Vec<DateTime<Utc>> = batch.iter().map(|s| s.date).collect();
    let rows = sqlx::query(
        "INSERT INTO payload_statuses (payload_id, service, source, status, status_msg, date, created_at, dedup_key) \
         SELECT u.payload_id, u.service, u.source, u.status, u.status_msg, u.date, $7, u.dedup_key \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $8::text[]) \
         AS u (payload_id, service, source, status, status_msg, date, dedup_key) \
         ON CONFLICT (dedup_key, date) DO NOTHING RETURNING dedup_key, date",
    )
    .bind(targets.to_vec())
    .bind(column(|s| &s.service))
    .bind(sources)
    .bind(column(|s| &s.status))
    .bind(column(|s| &s.status_msg))
    .bind(dates)
    .bind(stored_at)
    .bind(column(|s| &s.dedup_key))
    .fetch_all(&mut *conn)
    .await?;
    let mut inserted = vec![false; batch.len()];
    if rows.is_empty() {
        return Ok(inserted);
    }
    let mut first: HashMap<(&str, DateTime<Utc>), usize> = HashMap::with_capacity(batch.len());
    for (i, s) in batch.iter().enumerate() {
        first.entry((s.dedup_key.as_str(), s.date)).or_insert(i);
    }
    for row in &rows {
        if let Some(&i) = first.get(&(row.try_get::<&str, _>(0)?, get_time(row, 1)?)) {
            inserted[i] = true;
        }
    }
    Ok(inserted)
}

/// For each `(payload, service)` whose first terminal status this batch stored: the seconds from the
/// service's first status to that terminal status.
async fn first_terminal_durations(
    conn: &mut sqlx::PgConnection,
    terminal_counts: &HashMap<(i64, String), i64>,
) -> Result<Vec<(String, f64)>, sqlx::Error> {
    let ids: Vec<i64> = terminal_counts.keys().map(|(id, _)| *id).collect::<BTreeSet<i64>>().into_iter().collect();
    // One lookup per payload, like `select_payloads`.
    let rows = sqlx::query(
        "SELECT u.payload_id, s.service, MIN(s.date), \
         MIN(CASE WHEN s.status IN ('success', 'error', 'rejected') THEN s.date END), \
         SUM(CASE WHEN s.status IN ('success', 'error', 'rejected') THEN 1 ELSE 0 END) \
         FROM UNNEST($1::bigint[]) AS u (payload_id) CROSS JOIN LATERAL \
         (SELECT service, status, date FROM payload_statuses WHERE payload_id = u.payload_id OFFSET 0) s \
         GROUP BY u.payload_id, s.service",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    durations_of(&rows, terminal_counts)
}

/// Writes the payload rows the batch changed. A row this transaction created is written as
/// computed (`mine`: no other transaction can have changed it, and the batch may correct what it
/// predicted). A row that existed before is merged with the row as it is now rather than
/// overwritten: the batch read it before another transaction (another instance) may have changed
/// it, and the row must not depend on which commits last. So a tenant field keeps a
/// non-empty value, `created_at` the earliest date and `last_*` the newest status (a tie going to
/// the one written last); each comparison is made on the row version the update locks. Rows are
/// updated in id order, so two transactions updating the same rows wait for each other rather than
/// deadlock.
async fn update_payloads(conn: &mut sqlx::PgConnection, dirty: &[&PayloadState]) -> Result<(), sqlx::Error> {
    if dirty.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&PayloadState) -> &str| dirty.iter().map(|p| f(p)).collect::<Vec<&str>>();
    sqlx::query(
        "UPDATE payloads SET \
         account = CASE WHEN v.mine OR payloads.account = '' THEN v.account ELSE payloads.account END, \
         org_id = CASE WHEN v.mine OR payloads.org_id = '' THEN v.org_id ELSE payloads.org_id END, \
         inventory_id = CASE WHEN v.mine OR payloads.inventory_id = '' THEN v.inventory_id ELSE payloads.inventory_id END, \
         system_id = CASE WHEN v.mine OR payloads.system_id = '' THEN v.system_id ELSE payloads.system_id END, \
         created_at = CASE WHEN v.mine THEN v.created_at ELSE LEAST(payloads.created_at, v.created_at) END, \
         last_status_at = CASE WHEN v.mine OR v.last_status_at >= payloads.last_status_at THEN v.last_status_at ELSE payloads.last_status_at END, \
         last_service = CASE WHEN v.mine OR v.last_status_at >= payloads.last_status_at THEN v.last_service ELSE payloads.last_service END, \
         last_status = CASE WHEN v.mine OR v.last_status_at >= payloads.last_status_at THEN v.last_status ELSE payloads.last_status END \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], \
         $7::timestamptz[], $8::text[], $9::text[], $10::boolean[]) \
         AS v (id, account, org_id, inventory_id, system_id, created_at, last_status_at, last_service, last_status, mine) \
         WHERE payloads.id = v.id",
    )
    .bind(dirty.iter().map(|p| p.id).collect::<Vec<i64>>())
    .bind(column(|p| &p.ids[0]))
    .bind(column(|p| &p.ids[1]))
    .bind(column(|p| &p.ids[2]))
    .bind(column(|p| &p.ids[3]))
    .bind(dirty.iter().map(|p| p.created_at).collect::<Vec<DateTime<Utc>>>())
    .bind(dirty.iter().map(|p| p.last_status_at).collect::<Vec<DateTime<Utc>>>())
    .bind(column(|p| &p.last_service))
    .bind(column(|p| &p.last_status))
    .bind(dirty.iter().map(|p| p.created_here).collect::<Vec<bool>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes the `last_*` columns of payloads the batch changed nothing else of: no indexed column
/// changes, so PostgreSQL can update each row in place (HOT) where its page has room. Only where
/// the batch's status is at least as new as the row's now (see [`update_payloads`]).
async fn update_last_status(conn: &mut sqlx::PgConnection, changed: &[&PayloadState]) -> Result<(), sqlx::Error> {
    if changed.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&PayloadState) -> &str| changed.iter().map(|p| f(p)).collect::<Vec<&str>>();
    sqlx::query(
        "UPDATE payloads SET last_status_at = v.last_status_at, last_service = v.last_service, \
         last_status = v.last_status \
         FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::boolean[]) \
         AS v (id, last_status_at, last_service, last_status, mine) \
         WHERE payloads.id = v.id AND (v.mine OR payloads.last_status_at <= v.last_status_at)",
    )
    .bind(changed.iter().map(|p| p.id).collect::<Vec<i64>>())
    .bind(changed.iter().map(|p| p.last_status_at).collect::<Vec<DateTime<Utc>>>())
    .bind(column(|p| &p.last_service))
    .bind(column(|p| &p.last_status))
    .bind(changed.iter().map(|p| p.created_here).collect::<Vec<bool>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
