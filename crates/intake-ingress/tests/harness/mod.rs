//! The ingress under test: the real router and state on the embedded bus and localdisk storage (in a
//! tempdir), each wrapped in its fault-injecting driver, plus readers of what ended up in the
//! buckets and on the topics. Shared by the integration tests of this crate.

// Each test binary uses its own part of this module.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

pub mod raw_http;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use intake_bus::faults::{FaultHandle, FaultyBus};
use intake_bus::{Bus, OutgoingMessage, ReceivedMessage};
use intake_core::config::{BusConfig, EnvMap, IngressConfig, StorageConfig};
use intake_core::messages::PayloadStatus;
use intake_core::Identity;
use intake_storage::faults::{Faults, FaultyStore};
use intake_storage::signing::UrlSigner;
use intake_storage::Bucket;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The signing key of every harness, so tests can sign (and forge) download URLs.
pub const SIGNING_KEY: &str = "harness-signing-key";
/// `INGRESS_PUBLIC_URL` of every harness.
pub const PUBLIC_URL: &str = "http://ingress.test";
/// The file-part limit of every harness unless a test sets `INGRESS_MAX_SIZE`.
pub const MAX_SIZE: u64 = 1000;
/// The multipart boundary [`multipart`] uses.
pub const BOUNDARY: &str = "XyZboundary";
/// A content type that resolves to the listed service `testareno`, category `something`.
pub const TGZ: &str = "application/vnd.redhat.testareno.something+tgz";
/// The service and category [`TGZ`] resolves to.
pub const SERVICE: &str = "testareno";
pub const CATEGORY: &str = "something";
/// The tenant of [`identity`].
pub const ACCOUNT: &str = "12345";
pub const ORG_ID: &str = "54321";

/// The standard caller: account 12345, org 54321.
pub fn identity() -> String {
    Identity::encode(ACCOUNT, ORG_ID)
}

/// A multipart body of `(name, content type, bytes)` parts, each with a filename.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, ct, bytes) in parts {
        body.extend_from_slice(&part_head(name, *ct));
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The boundary line and headers that open a part.
pub fn part_head(name: &str, content_type: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n"
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Payload bytes that are not all alike, so a mixed-up byte shows.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// An answer read in full.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A running ingress (router and state) on real embedded drivers in a tempdir.
pub struct Ingress {
    pub dir: tempfile::TempDir,
    pub state: intake_ingress::AppState,
    pub router: axum::Router,
    /// The bus without the fault wrapper: tests read and publish through it even while the
    /// ingress's bus is failing.
    pub bus: Arc<dyn Bus>,
    pub bus_config: BusConfig,
    pub bus_faults: FaultHandle,
    pub store_faults: Faults,
    pub signer: UrlSigner,
    /// Stops the validation consumer and HTTP servers started by this harness.
    pub cancel: CancellationToken,
}

impl Drop for Ingress {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Builds an ingress with `INGRESS_MAX_SIZE=1000`, two validation attempts, the harness signing key
/// and public URL, and `extra` on top.
pub async fn start(extra: &[(&str, &str)]) -> Ingress {
    let dir = tempfile::tempdir().unwrap();
    let mut env: EnvMap = [
        ("INGRESS_MAX_SIZE", MAX_SIZE.to_string().as_str()),
        ("INGRESS_VALIDATION_RETRIES", "2"),
        ("STORAGE_URL_SIGNING_KEY", SIGNING_KEY),
        ("INGRESS_PUBLIC_URL", PUBLIC_URL),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let config = IngressConfig::from_env(&env).unwrap();
    let storage_config = StorageConfig::from_env(&env, dir.path()).unwrap();
    let bus_config = BusConfig::from_env(&env, dir.path()).unwrap();
    let storage = intake_storage::open(&storage_config, &config.public_url)
        .await
        .unwrap();
    let faulty_store = FaultyStore::new(storage.store);
    let store_faults = faulty_store.faults();
    let bus = intake_bus::open(&bus_config).await.unwrap();
    let faulty_bus = FaultyBus::new(bus.clone());
    let bus_faults = faulty_bus.faults();
    let state = intake_ingress::AppState::new(intake_ingress::Parts {
        config,
        bus_config: bus_config.clone(),
        identity_required: true,
        store: Arc::new(faulty_store),
        downloads: storage.downloads,
        bus: Arc::new(faulty_bus),
        shutting_down: CancellationToken::new(),
        pending: Some(
            intake_ingress::pending::Pending::open(dir.path().join("ingress-pending")).unwrap(),
        ),
    })
    .unwrap();
    Ingress {
        dir,
        router: intake_ingress::router(state.clone()),
        state,
        bus,
        bus_config,
        bus_faults,
        store_faults,
        signer: UrlSigner::new(SIGNING_KEY.as_bytes()),
        cancel: CancellationToken::new(),
    }
}

impl Ingress {
    /// Sends one request through the router and reads the whole answer.
    pub async fn call(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `GET path` with optional identity.
    pub async fn get(&self, path: &str, identity: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(id) = identity {
            request = request.header("x-rh-identity", id);
        }
        self.call(request.body(Body::empty()).unwrap()).await
    }

    /// Uploads `bytes` as the file part (content type [`TGZ`]) under `request_id`, with an optional
    /// metadata part, as the standard caller.
    pub async fn upload(&self, request_id: &str, bytes: &[u8], metadata: Option<&str>) -> Answer {
        let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("file", Some(TGZ), bytes)];
        if let Some(m) = metadata {
            parts.push(("metadata", None, m.as_bytes()));
        }
        let request = Request::post("/api/ingress/v1/upload")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header("x-rh-identity", identity())
            .header("x-rh-insights-request-id", request_id)
            .body(Body::from(multipart(&parts)))
            .unwrap();
        self.call(request).await
    }

    /// Uploads and insists on 202.
    pub async fn upload_ok(&self, request_id: &str, bytes: &[u8], metadata: Option<&str>) {
        let answer = self.upload(request_id, bytes, metadata).await;
        assert_eq!(answer.status, 202, "upload {request_id}: {}", answer.json());
    }

    /// The folder of `bucket` on disk.
    pub fn bucket_dir(&self, bucket: Bucket) -> PathBuf {
        self.dir
            .path()
            .join("storage")
            .join(self.state.store.bucket_name(bucket))
    }

    /// The keys `bucket` holds (data files; no sidecars, no writes in progress), sorted.
    pub fn keys(&self, bucket: Bucket) -> Vec<String> {
        let mut keys: Vec<String> = std::fs::read_dir(self.bucket_dir(bucket))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".tmp" && !n.ends_with(".meta.json"))
            .collect();
        keys.sort();
        keys
    }

    /// Files of writes in progress (or left behind by failed ones) under `bucket`.
    pub fn tmp_files(&self, bucket: Bucket) -> Vec<String> {
        match std::fs::read_dir(self.bucket_dir(bucket).join(".tmp")) {
            Ok(dir) => dir
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Everything in `bucket`: objects, sidecars and temporary files.
    pub fn everything_in(&self, bucket: Bucket) -> Vec<String> {
        let mut all: Vec<String> = std::fs::read_dir(self.bucket_dir(bucket))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".tmp")
            .collect();
        all.extend(
            self.tmp_files(bucket)
                .into_iter()
                .map(|n| format!(".tmp/{n}")),
        );
        all
    }

    /// Nothing in `bucket`: no object, no sidecar, no temporary file.
    pub fn assert_bucket_empty(&self, bucket: Bucket) {
        let all = self.everything_in(bucket);
        assert!(all.is_empty(), "{bucket:?} holds {all:?}");
    }

    /// The bytes of `key` in `bucket`, if it is there.
    pub fn read(&self, bucket: Bucket, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.bucket_dir(bucket).join(key)).ok()
    }

    /// The wire name of a configured topic name.
    pub fn topic(&self, name: &str) -> String {
        self.bus_config.topic(name)
    }

    /// The per-service topic of [`SERVICE`].
    pub fn service_topic(&self) -> String {
        self.bus_config.service_topic(SERVICE)
    }

    /// Every message on `topic` so far, in order (see [`messages`]).
    pub async fn messages(&self, topic: &str) -> Vec<ReceivedMessage> {
        messages(self.bus.as_ref(), topic).await
    }

    /// Every status on the payload-status topic so far.
    pub async fn statuses(&self) -> Vec<PayloadStatus> {
        let topic = self.topic(&self.bus_config.topics.payload_status);
        self.messages(&topic)
            .await
            .iter()
            .map(|m| serde_json::from_slice(&m.value).unwrap())
            .collect()
    }

    /// Publishes a validation response (raw bytes) as a validator would.
    pub async fn respond(&self, value: &[u8], key: &str) -> intake_bus::Delivery {
        let topic = self.topic(&self.bus_config.topics.validation);
        self.bus
            .publish(OutgoingMessage::new(topic, value.to_vec()).key(key))
            .await
            .unwrap()
    }

    /// Runs the validation consumer until the harness is dropped.
    pub fn start_consumer(&self) {
        tokio::spawn(intake_ingress::validation::run(
            self.state.clone(),
            self.cancel.clone(),
        ));
    }

    /// `ingress_validation_messages_total{result}`.
    pub fn verdicts(&self, result: &str) -> u64 {
        self.state
            .metrics
            .validation_messages
            .with_label_values(&[result])
            .get()
    }

    /// `ingress_dead_letters_total{reason}`.
    pub fn dead_letters(&self, reason: &str) -> u64 {
        self.state
            .metrics
            .dead_letters
            .with_label_values(&[reason])
            .get()
    }

    /// Waits until `ingress_validation_messages_total{result}` reaches `n`.
    pub async fn wait_verdicts(&self, result: &str, n: u64) {
        intake_testkit::poll::until_true(
            Duration::from_secs(30),
            &format!("{n} validation message(s) counted as {result}"),
            || async { self.verdicts(result) >= n },
        )
        .await;
    }

    /// Serves the router on a real HTTP/1.1 listener on 127.0.0.1; returns `host:port`.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(intake_http::serve::serve(
            listener,
            self.router.clone(),
            self.cancel.clone(),
            Duration::from_secs(30),
            Duration::from_secs(1),
        ));
        addr
    }
}

/// Every message on a topic so far, in order (exact: reads to an end marker it publishes).
pub use intake_bus::testsuite::read_to_end as messages;

/// The header value of `message` named `name`, which must be there.
pub fn header<'a>(message: &'a ReceivedMessage, name: &str) -> &'a str {
    message
        .header_str(name)
        .unwrap_or_else(|| panic!("header {name} missing from {:?}", message.headers))
}
