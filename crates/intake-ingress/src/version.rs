//! `/version`: the release, and the commit and build date when the build recorded them.

use axum::Json;
use serde_json::{json, Value};

/// The git commit, from `INTAKE_GIT_COMMIT` at build time, else `unknown`.
pub fn commit() -> &'static str {
    option_env!("INTAKE_GIT_COMMIT")
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
}

/// The build date (RFC3339), from `INTAKE_BUILD_DATE` at build time, else `unknown`.
pub fn build_date() -> &'static str {
    option_env!("INTAKE_BUILD_DATE")
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
}

pub async fn version() -> Json<Value> {
    Json(json!({"version": intake_core::VERSION, "commit": commit(), "build_date": build_date()}))
}
