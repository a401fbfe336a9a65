//! `GET|HEAD /download/{request_id}?expires=&signature=`: localdisk payloads behind HMAC-signed,
//! expiring URLs (storage.md, "Download URLs").

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use intake_core::RequestId;
use intake_http::ApiError;
use intake_storage::download::open_linked;
use serde::Deserialize;

use crate::refusals::Refused;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Params {
    expires: Option<String>,
    signature: Option<String>,
}

pub async fn download(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let id = RequestId::parse(&request_id)
        .map_err(|e| ApiError::from(Refused::Malformed(format!("request id: {e}"))))?;
    let Some(verifier) = &state.downloads else {
        return Err(Refused::DownloadsElsewhere.into());
    };
    let denied = || ApiError::from(Refused::LinkDenied);
    let expires = params
        .expires
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(denied)?;
    let signature = params
        .signature
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(denied)?;
    let bucket = verifier
        .verify(id.as_str(), expires, signature)
        .map_err(|_| denied())?;
    // A link follows its payload from quarantine to perm (storage.md); a rejected or deleted one is
    // a JSON 404, never a body a consumer could take for an archive.
    let object = match open_linked(state.store.as_ref(), bucket, &id).await {
        Ok(o) => o,
        Err(e) => return Err(Refused::Download(&e).into()),
    };
    let content_type = if object.meta.content_type.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        object.meta.content_type.clone()
    };
    let mut response = (StatusCode::OK, Body::from_stream(object.body)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = content_type.parse() {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, object.meta.size.into());
    if let Ok(v) = format!("attachment; filename=\"{id}\"").parse() {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
