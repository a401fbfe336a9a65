//! `GET /statuses`.

use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use http::HeaderMap;
use intake_http::ApiError;
use serde_json::Value;

use super::params::{self, Params};
use super::{cursor, rows, store_error, AppState};
use crate::model::{StatusQuery, StatusSort};
use crate::store::sql::status_sort_column;

const FILTERS: [&str; 13] = [
    "service",
    "source",
    "status",
    "status_msg",
    "request_id",
    "date_lt",
    "date_lte",
    "date_gt",
    "date_gte",
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
        StatusSort::Date,
        &[
            ("service", StatusSort::Service),
            ("source", StatusSort::Source),
            ("request_id", StatusSort::RequestId),
            ("status", StatusSort::Status),
            ("status_msg", StatusSort::StatusMsg),
            ("date", StatusSort::Date),
            ("created_at", StatusSort::CreatedAt),
        ],
    )?;
    let sort_dir = params::sort_dir(&p)?;
    let fingerprint = cursor::fingerprint(&p, &FILTERS);
    let (page_size, at) = params::paging(
        &p,
        state.settings.max_page_size,
        &fingerprint,
        status_sort_column(sort_by).1,
    )?;
    let query = StatusQuery {
        scope,
        service: params::name(&p, "service"),
        source: params::name(&p, "source"),
        status: params::name(&p, "status"),
        status_msg: params::text(&p, "status_msg"),
        request_id: params::text(&p, "request_id"),
        date: params::time_range(&p, "date")?,
        created_at: params::time_range(&p, "created_at")?,
        sort_by,
        sort_dir,
        page_size,
        at,
        count: params::count_mode(&p)?,
    };
    let page = state
        .store
        .list_statuses(&query)
        .await
        .map_err(|e| store_error(e, None))?;
    let next = page.next.as_ref().map(|k| cursor::encode(k, &fingerprint));
    Ok(Json(rows::envelope(
        &page,
        started.elapsed().as_secs_f64(),
        rows::status,
        next,
        query.count,
    )))
}
