//! `GET /payloads` and `GET /payloads/{request_id}`.

use std::cmp::Ordering;
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use http::HeaderMap;
use intake_http::ApiError;
use serde_json::{json, Value};

use super::params::{self, Params};
use super::{cursor, rows, store_error, AppState};
use crate::duration::duration_map;
use crate::model::{PayloadQuery, PayloadSort, SortDir, StatusRow};
use crate::store::sql::payload_sort_column;

const FILTERS: [&str; 10] = [
    "account",
    "org_id",
    "inventory_id",
    "system_id",
    "service",
    "status",
    "created_at_lt",
    "created_at_lte",
    "created_at_gt",
    "created_at_gte",
];

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let scope = state.scope(&headers)?;
    let p = params::decode(query)?;
    let sort_by = params::choice(
        &p,
        "sort_by",
        PayloadSort::CreatedAt,
        &[
            ("account", PayloadSort::Account),
            ("org_id", PayloadSort::OrgId),
            ("inventory_id", PayloadSort::InventoryId),
            ("system_id", PayloadSort::SystemId),
            ("created_at", PayloadSort::CreatedAt),
        ],
    )?;
    let sort_dir = params::sort_dir(&p)?;
    let fingerprint = cursor::fingerprint(&p, &FILTERS);
    let (page_size, at) = params::paging(
        &p,
        state.settings.max_page_size,
        &fingerprint,
        payload_sort_column(sort_by).1,
    )?;
    let query = PayloadQuery {
        scope,
        account: params::text(&p, "account"),
        org_id: params::text(&p, "org_id"),
        inventory_id: params::text(&p, "inventory_id"),
        system_id: params::text(&p, "system_id"),
        service: params::name(&p, "service"),
        status: params::name(&p, "status"),
        created_at: params::time_range(&p, "created_at")?,
        sort_by,
        sort_dir,
        page_size,
        at,
        count: params::count_mode(&p)?,
    };
    let page = state
        .store
        .list_payloads(&query)
        .await
        .map_err(|e| store_error(e, None))?;
    let next = page.next.as_ref().map(|k| cursor::encode(k, &fingerprint));
    Ok(Json(rows::envelope(
        &page,
        started.elapsed().as_secs_f64(),
        rows::payload,
        next,
        query.count,
    )))
}

fn compare(a: &StatusRow, b: &StatusRow, sort_by: &str) -> Ordering {
    let primary = match sort_by {
        "service" => a.service.cmp(&b.service),
        "source" => a
            .source
            .as_deref()
            .unwrap_or("")
            .cmp(b.source.as_deref().unwrap_or("")),
        "status" => a.status.cmp(&b.status),
        "status_msg" => a.status_msg.cmp(&b.status_msg),
        "created_at" => a.created_at.cmp(&b.created_at),
        _ => a.date.cmp(&b.date),
    };
    primary.then(a.id.cmp(&b.id))
}

pub async fn one(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let known = crate::check::valid_request_id(&request_id).then_some(request_id.as_str());
    let with_id = |e: ApiError| match known {
        Some(id) => e.with_request_id(id),
        None => e,
    };
    let scope = state.scope(&headers).map_err(with_id)?;
    let p = params::decode(query).map_err(with_id)?;
    let sort_by = params::choice(
        &p,
        "sort_by",
        "date",
        &[
            ("service", "service"),
            ("source", "source"),
            ("status", "status"),
            ("status_msg", "status_msg"),
            ("date", "date"),
            ("created_at", "created_at"),
        ],
    )
    .map_err(with_id)?;
    let sort_dir = params::sort_dir(&p).map_err(with_id)?;
    let verbosity =
        params::choice(&p, "verbosity", 0u8, &[("0", 0), ("1", 1), ("2", 2)]).map_err(with_id)?;
    let Some(id) = known else {
        return Err(ApiError::bad_request(format!(
            "parameter request_id: {request_id:?} does not match ^[A-Za-z0-9-]{{1,64}}$"
        )));
    };
    let payload = state
        .store
        .payload(id, &scope)
        .await
        .map_err(|e| store_error(e, Some(id)))?
        .ok_or_else(|| {
            ApiError::not_found(format!("no payload with request_id {id}")).with_request_id(id)
        })?;
    let mut statuses = state
        .store
        .payload_statuses(&payload, None)
        .await
        .map_err(|e| store_error(e, Some(id)))?;
    statuses.sort_by(|a, b| {
        let order = compare(a, b, sort_by);
        if sort_dir == SortDir::Desc {
            order.reverse()
        } else {
            order
        }
    });
    let data: Vec<Value> = statuses
        .iter()
        .map(|s| rows::payload_status(s, verbosity))
        .collect();
    Ok(Json(
        json!({"data": data, "duration": duration_map(&statuses)}),
    ))
}
