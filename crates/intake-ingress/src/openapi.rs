//! `{prefix}/openapi.json`: an OpenAPI 3 document of the ingress routes. A test walks it against the
//! router, so the two cannot drift apart.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Every prefix the v1 routes are mounted under; the first is canonical.
pub const PREFIXES: [&str; 3] = [
    "/api/ingress/v1",
    "/api/v1",
    "/r/insights/platform/ingress/v1",
];

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The document.
pub fn document() -> Value {
    let p = PREFIXES[0];
    let request_id_param = json!({"name": "request_id", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}});
    let identity_param = json!({"name": "x-rh-identity", "in": "header", "required": true,
        "description": "base64 JSON identity; optional when IDENTITY_REQUIRED=false", "schema": {"type": "string"}});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "intake ingress",
            "version": intake_core::VERSION,
            "description": format!("Upload API. Every {p} route is also served under {} and {}.", PREFIXES[1], PREFIXES[2]),
        },
        "paths": {
            format!("{p}/upload"): {"post": {
                "summary": "Upload a payload archive",
                "parameters": [identity_param,
                    {"name": "x-rh-insights-request-id", "in": "header", "required": false, "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}},
                    {"name": "test", "in": "query", "required": false, "schema": {"type": "string", "enum": ["test"]}}],
                "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the payload; its Content-Type application/vnd.redhat.<service>.<category>+tgz picks the service (the part may also be named upload)"},
                    "metadata": {"type": "object", "description": "optional JSON object, at most 64 KiB"}}}}}},
                "responses": {
                    "200": {"description": "test connection", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "201": {"description": "accepted (legacy advisor mode)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "202": {"description": "stored in quarantine and announced", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "400": error_response("bad request id, identity, multipart body, parts or metadata"),
                    "401": error_response("identity missing"),
                    "403": error_response("organization refused"),
                    "408": error_response("the body stalled longer than INGRESS_BODY_IDLE_TIMEOUT"),
                    "409": error_response("request id already used"),
                    "413": error_response("too large"),
                    "415": error_response("content type or service not supported"),
                    "503": error_response("storage or bus unavailable, or too many uploads in flight; nothing was kept")}}},
            format!("{p}/version"): {"get": {"summary": "Version", "responses": {"200": {"description": "version, commit and build date",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "version": {"type": "string"}, "commit": {"type": "string"}, "build_date": {"type": "string"}}}}}}}}},
            format!("{p}/openapi.json"): {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3 document"}}}},
            format!("{p}/track/{{request_id}}"): {"get": {
                "summary": "Latest status of a payload, from the tracker",
                "parameters": [request_id_param, identity_param,
                    {"name": "verbosity", "in": "query", "required": false, "schema": {"type": "integer", "enum": [0, 1, 2]}}],
                "responses": {"200": {"description": "newest status (verbosity 0, 1) or the tracker's answer (2)"},
                    "400": error_response("bad request id or verbosity"), "401": error_response("identity missing"),
                    "404": error_response("unknown payload"), "502": error_response("tracker unreachable")}}},
            "/download/{request_id}": {"get": {
                "summary": "Download a payload through a signed link (localdisk storage only)",
                "parameters": [request_id_param,
                    {"name": "expires", "in": "query", "required": true, "schema": {"type": "integer"}},
                    {"name": "signature", "in": "query", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the payload bytes"}, "400": error_response("bad request id"),
                    "403": error_response("bad or expired signature"), "404": error_response("payload moved or gone")}}},
            "/livez": {"get": {"summary": "Liveness", "responses": {"200": {"description": "serving"}}}},
            "/readyz": {"get": {"summary": "Readiness", "responses": {"200": {"description": "storage and bus answer"},
                "503": {"description": "a dependency is down, or shutting down"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Prometheus text"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["status", "title", "message"], "properties": {
                "status": {"type": "integer"}, "title": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}},
            "Accepted": {"type": "object", "required": ["request_id", "upload"], "properties": {
                "request_id": {"type": "string"},
                "upload": {"type": "object", "properties": {"account_number": {"type": "string"}, "org_id": {"type": "string"}}}}}
        }}
    })
}

pub async fn openapi() -> Response {
    Json(document()).into_response()
}
