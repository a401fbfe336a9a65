//! Shared fixtures: a cluster archive built in code, and a loopback HTTP server serving bytes.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use intake_testkit::archives::{gzip, TarBuilder};
use serde_json::json;

pub const CLUSTER: &str = "C25DA893-5BA1-4229-9432-C8EC9334C4A0";
pub const SITE_OCP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples-config/rules/site_ocp.yaml"
);

fn operator(name: &str) -> Vec<u8> {
    json!({"metadata": {"name": name}, "status": {"conditions": [
        {"type": "Degraded", "status": "False"}, {"type": "Available", "status": "True"},
        {"type": "Upgradeable", "status": "True"}]}})
    .to_string()
    .into_bytes()
}

/// A gzipped Insights Operator archive: config/id, a failing update, healthy operators, no
/// infrastructure.json; `padding` bytes of extra data make it larger.
pub fn cluster_archive(padding: usize) -> Vec<u8> {
    let version = json!({"spec": {"channel": "stable-4.14"}, "status": {"desired": {"version": "4.14.3"}, "conditions": [
        {"type": "Failing", "status": "True", "reason": "ClusterOperatorDegraded", "message": "Cluster operator etcd is degraded"}]}});
    let mut tar = TarBuilder::new()
        .dir("config")
        .file("config/id", format!("{CLUSTER}\n").as_bytes())
        .file("config/version.json", version.to_string().as_bytes())
        .file("config/clusteroperator/etcd.json", &operator("etcd"))
        .file("config/clusteroperator/dns.json", &operator("dns"));
    if padding > 0 {
        // Pseudo-random so gzip cannot shrink it away.
        let mut x: u32 = 1;
        let data: Vec<u8> = (0..padding)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x & 0xff) as u8
            })
            .collect();
        tar = tar.file("config/pods/padding.bin", &data);
    }
    gzip(&tar.finish())
}

/// What a route answers.
#[derive(Clone)]
pub enum Reply {
    Bytes(Vec<u8>),
    /// The body streamed without Content-Length.
    Chunked(Vec<u8>),
    Status(u16),
    /// These statuses first, one per request, then the bytes.
    FailThen(Vec<u16>, Vec<u8>),
    /// Headers, then a body that never arrives.
    Stall,
    /// A status, a `Content-Type` and a body.
    Typed(u16, &'static str, Vec<u8>),
}

#[derive(Clone, Default)]
pub struct Server {
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    pub hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    pub fn route(&self, name: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(name.to_owned(), reply);
    }

    pub fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn serve_file(State(s): State<Server>, Path(name): Path<String>) -> Response {
    let n = {
        let mut hits = s.hits.lock().unwrap();
        let n = hits.entry(name.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let reply = s.routes.lock().unwrap().get(&name).cloned();
    match reply {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Reply::Bytes(b)) => b.into_response(),
        Some(Reply::Chunked(b)) => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                b.chunks(4096).map(|c| Ok(c.to_vec())).collect();
            axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
        }
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::FailThen(codes, b)) => match codes.get(n - 1) {
            Some(code) => StatusCode::from_u16(*code).unwrap().into_response(),
            None => b.into_response(),
        },
        Some(Reply::Typed(code, content_type, b)) => (
            StatusCode::from_u16(code).unwrap(),
            [(axum::http::header::CONTENT_TYPE, content_type)],
            b,
        )
            .into_response(),
        Some(Reply::Stall) => axum::body::Body::from_stream(futures::stream::pending::<
            Result<Vec<u8>, std::io::Error>,
        >())
        .into_response(),
    }
}

/// Starts the server on a free loopback port; files are at `http://ADDR/archives/<name>`.
pub async fn start_server() -> (Server, SocketAddr) {
    let server = Server::default();
    let app = axum::Router::new()
        .route("/archives/{name}", axum::routing::get(serve_file))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (server, addr)
}
