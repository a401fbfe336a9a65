//! The web page and the OpenAPI document, embedded in the binary (no external fetches).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use intake_http::ApiError;

const INDEX: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");
const FAVICON: &str = include_str!("../../assets/favicon.svg");
const OPENAPI: &str = include_str!("../../assets/openapi.json");

fn text(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/` and `/track`: the page (one document; the script shows the view the path names).
pub async fn index() -> Response {
    text("text/html; charset=utf-8", INDEX)
}

/// `/assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    match file.as_str() {
        "app.js" => Ok(text("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Ok(text("text/css; charset=utf-8", APP_CSS)),
        "favicon.svg" => Ok(text("image/svg+xml", FAVICON)),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no asset named {file}"),
        )),
    }
}

/// `/api/v1/openapi.json`.
pub async fn openapi() -> Response {
    text("application/json", OPENAPI)
}
