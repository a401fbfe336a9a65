//! Query parameters: each bad value is a 400 naming the parameter; unknown parameters are ignored.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use chrono::{DateTime, Utc};
use intake_http::ApiError;

use crate::check::parse_date;
use crate::model::{CountMode, PageAt, SortDir, TimeRange};

pub type Params = HashMap<String, String>;

/// The query string as a map, or 400 when it cannot be decoded.
pub fn decode(query: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request(format!("the query string cannot be decoded: {e}")))
}

fn bad(name: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("parameter {name}: {problem}"))
}

/// A non-empty text parameter, as given.
pub fn text(p: &Params, name: &str) -> Option<String> {
    p.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A service, source or status name, normalised like stored ones (trimmed, lowercase).
pub fn name(p: &Params, name: &str) -> Option<String> {
    text(p, name).map(|v| v.to_lowercase())
}

/// One of `choices`, or `default` when absent.
pub fn choice<T: Copy>(
    p: &Params,
    name: &str,
    default: T,
    choices: &[(&str, T)],
) -> Result<T, ApiError> {
    let Some(v) = text(p, name) else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(k, _)| *k == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(k, _)| *k).collect();
            bad(name, format!("{v:?} is not one of {}", names.join(", ")))
        })
}

/// `count`: `exact` (the spec's, the default) or `estimate` (see [`CountMode`]).
pub fn count_mode(p: &Params) -> Result<CountMode, ApiError> {
    choice(
        p,
        "count",
        CountMode::Exact,
        &[
            ("exact", CountMode::Exact),
            ("estimate", CountMode::Estimate),
        ],
    )
}

pub fn sort_dir(p: &Params) -> Result<SortDir, ApiError> {
    choice(
        p,
        "sort_dir",
        SortDir::Desc,
        &[("asc", SortDir::Asc), ("desc", SortDir::Desc)],
    )
}

pub fn unsigned(p: &Params, name: &str, default: u64) -> Result<u64, ApiError> {
    match text(p, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| bad(name, format!("{v:?} is not a non-negative integer"))),
    }
}

pub fn date(p: &Params, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match text(p, name) {
        None => Ok(None),
        Some(v) => parse_date(&v)
            .map(Some)
            .ok_or_else(|| bad(name, format!("{v:?} is not a date"))),
    }
}

/// `<prefix>_lt`, `_lte`, `_gt`, `_gte`.
pub fn time_range(p: &Params, prefix: &str) -> Result<TimeRange, ApiError> {
    Ok(TimeRange {
        lt: date(p, &format!("{prefix}_lt"))?,
        lte: date(p, &format!("{prefix}_lte"))?,
        gt: date(p, &format!("{prefix}_gt"))?,
        gte: date(p, &format!("{prefix}_gte"))?,
    })
}

/// `page_size`, and either `page` or `cursor` (not both).
pub fn paging(
    p: &Params,
    max_page_size: u32,
    fingerprint: &str,
    sort_is_time: bool,
) -> Result<(u32, PageAt), ApiError> {
    let page_size = unsigned(p, "page_size", 10)?;
    if page_size == 0 || page_size > u64::from(max_page_size) {
        return Err(bad(
            "page_size",
            format!("{page_size} is not within 1 … {max_page_size}"),
        ));
    }
    let page = unsigned(p, "page", 0)?;
    let at = match text(p, "cursor") {
        Some(_) if page > 0 => return Err(bad("cursor", "cannot be combined with page > 0")),
        Some(c) => PageAt::After(super::cursor::decode(&c, fingerprint, sort_is_time)?),
        None => PageAt::Offset(page.saturating_mul(page_size)),
    };
    Ok((page_size as u32, at))
}
