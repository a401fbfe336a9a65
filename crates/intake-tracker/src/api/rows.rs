//! Rows as JSON, every key always present (`""` for an unknown string), times in the output form.

use intake_core::time::format;
use serde_json::{json, Map, Value};

use crate::model::{CountMode, Page, PayloadRow, StatusRow};

pub fn payload(p: &PayloadRow) -> Value {
    json!({
        "id": p.id,
        "request_id": p.request_id,
        "account": p.account,
        "org_id": p.org_id,
        "inventory_id": p.inventory_id,
        "system_id": p.system_id,
        "created_at": format(p.created_at),
        "last_service": p.last_service,
        "last_status": p.last_status,
        "last_status_at": format(p.last_status_at),
    })
}

/// A status of `/payloads/{id}` at a verbosity (0, 1 or 2).
pub fn payload_status(s: &StatusRow, verbosity: u8) -> Value {
    match verbosity {
        2 => json!({"service": s.service, "status": s.status, "date": format(s.date)}),
        1 => json!({
            "service": s.service,
            "status": s.status,
            "inventory_id": s.inventory_id,
            "date": format(s.date),
            "status_msg": s.status_msg,
        }),
        _ => json!({
            "id": s.id,
            "request_id": s.request_id,
            "account": s.account,
            "org_id": s.org_id,
            "inventory_id": s.inventory_id,
            "system_id": s.system_id,
            "service": s.service,
            "source": s.source.as_deref().unwrap_or(""),
            "status": s.status,
            "status_msg": s.status_msg,
            "date": format(s.date),
            "created_at": format(s.created_at),
        }),
    }
}

/// A row of `/statuses`.
pub fn status(s: &StatusRow) -> Value {
    json!({
        "id": s.id,
        "request_id": s.request_id,
        "service": s.service,
        "source": s.source.as_deref().unwrap_or(""),
        "status": s.status,
        "status_msg": s.status_msg,
        "date": format(s.date),
        "created_at": format(s.created_at),
    })
}

/// The list envelope: `count`, `elapsed`, `data`, and `next_cursor` when more rows follow; with
/// `count=estimate` also `count_exact`. Only an answer to `count=estimate` says whether its count is
/// exact: without it the envelope is the spec's, key for key.
pub fn envelope<T>(
    page: &Page<T>,
    elapsed: f64,
    row: impl Fn(&T) -> Value,
    next_cursor: Option<String>,
    count: CountMode,
) -> Value {
    let mut body = Map::new();
    body.insert("count".into(), json!(page.count));
    body.insert("elapsed".into(), json!(elapsed));
    body.insert(
        "data".into(),
        Value::Array(page.rows.iter().map(row).collect()),
    );
    if let Some(cursor) = next_cursor {
        body.insert("next_cursor".into(), json!(cursor));
    }
    if count == CountMode::Estimate {
        body.insert("count_exact".into(), json!(page.count_exact));
    }
    Value::Object(body)
}
