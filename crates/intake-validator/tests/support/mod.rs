//! A validator on the embedded bus, a local HTTP server serving generated archives, and readers of
//! what the validator publishes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use intake_bus::faults::{FaultHandle, FaultyBus};
use intake_bus::{Bus, OutgoingMessage, ReceivedMessage, StartFrom, Subscription};
use intake_core::config::{BusConfig, EnvMap, ValidatorConfig};
use intake_testkit::archives::{gzip, sample_tar, zip_bomb, TarBuilder};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(20);

/// Requests the server has seen, per path.
#[derive(Default)]
pub struct Hits {
    pub total: AtomicUsize,
    pub flaky: AtomicUsize,
    pub recovering: AtomicUsize,
    pub down: AtomicUsize,
}

async fn good() -> Vec<u8> {
    gzip(&sample_tar())
}

async fn traversal() -> Vec<u8> {
    gzip(
        &TarBuilder::new()
            .file("ok.txt", b"ok")
            .file("../escaped.txt", b"pwned")
            .finish(),
    )
}

async fn bomb() -> Vec<u8> {
    zip_bomb(16 << 20)
}

/// Two MiB sent as a stream, with no Content-Length: only the running count can stop it.
async fn big() -> Response {
    let chunks = (0..32).map(|_| Ok::<_, std::io::Error>(vec![0x1fu8; 64 << 10]));
    Body::from_stream(futures::stream::iter(chunks)).into_response()
}

/// Incompressible bytes (xorshift), so that an archive holding them is as large as they are.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An archive past the validator's in-memory limit (1 MiB), so that it spills to a temporary
/// file; with `escape` it also holds a traversal after the first MiB. Streamed without a
/// Content-Length.
fn large(escape: bool) -> Response {
    let mut tar = TarBuilder::new().file("insights/data.bin", &noise(3 << 19));
    if escape {
        tar = tar.file("../escaped.txt", b"pwned");
    }
    let archive = gzip(&tar.file("insights/uname", b"Linux").finish());
    let chunks: Vec<_> = archive
        .chunks(64 << 10)
        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
        .collect();
    Body::from_stream(futures::stream::iter(chunks)).into_response()
}

/// 503 twice, then a good archive.
async fn flaky(State(hits): State<Arc<Hits>>) -> Response {
    if hits.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    } else {
        good().await.into_response()
    }
}

/// Every kind of failure to fetch, one after the other (503, 403, 404, a body cut short, 500),
/// then a good archive.
async fn recovering(State(hits): State<Arc<Hits>>) -> Response {
    match hits.recovering.fetch_add(1, Ordering::SeqCst) {
        0 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        1 => StatusCode::FORBIDDEN.into_response(),
        2 => StatusCode::NOT_FOUND.into_response(),
        3 => cut_short().await,
        4 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => good().await.into_response(),
    }
}

/// The first half of a good archive, then the connection ends: the Content-Length promises more.
async fn cut_short() -> Response {
    let archive = good().await;
    let half = archive[..archive.len() / 2].to_vec();
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(half)]).chain(
        futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::other("cut"))
        }),
    );
    let mut response = Body::from_stream(chunks).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_LENGTH,
        archive.len().to_string().parse().unwrap(),
    );
    response
}

/// Always 503.
async fn down(State(hits): State<Arc<Hits>>) -> Response {
    hits.down.fetch_add(1, Ordering::SeqCst);
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// Serves the fixture archives on 127.0.0.1; returns the base URL and the hit counters.
pub async fn serve_archives() -> (String, Arc<Hits>) {
    let hits = Arc::new(Hits::default());
    let counting = hits.clone();
    let app = Router::new()
        .route("/good.tar.gz", get(good))
        .route("/traversal.tar.gz", get(traversal))
        .route("/bomb.zip", get(bomb))
        .route("/big", get(big))
        .route("/flaky", get(flaky))
        .route("/recovering", get(recovering))
        .route("/down", get(down))
        .route("/large.tar.gz", get(|| async { large(false) }))
        .route("/large-escape.tar.gz", get(|| async { large(true) }))
        .with_state(hits.clone())
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counting.total.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

/// One validator, its bus and the fixture server.
pub struct Harness {
    _dir: tempfile::TempDir,
    pub bus_config: BusConfig,
    pub bus: Arc<dyn Bus>,
    /// The bus the validator uses: `bus`, or `bus` behind a fault injector.
    validator_bus: Arc<dyn Bus>,
    pub config: ValidatorConfig,
    pub base_url: String,
    pub hits: Arc<Hits>,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<(), intake_validator::ValidatorError>>>,
}

impl Harness {
    /// Starts a validator configured by `vars` (on top of test defaults).
    pub async fn start(vars: &[(&str, &str)]) -> Self {
        Self::start_on(vars, false).await.0
    }

    /// Like [`Harness::start`], the validator's bus wrapped in a [`FaultyBus`].
    pub async fn start_faulty(vars: &[(&str, &str)]) -> (Self, FaultHandle) {
        let (h, faults) = Self::start_on(vars, true).await;
        (h, faults.unwrap())
    }

    async fn start_on(vars: &[(&str, &str)], faulty: bool) -> (Self, Option<FaultHandle>) {
        let dir = tempfile::tempdir().unwrap();
        let mut env: EnvMap = [
            ("BUS_DRIVER", "embedded"),
            ("VALIDATOR_SERVICES", "advisor,testareno"),
            ("VALIDATOR_MAX_DOWNLOAD_SIZE", "1MiB"),
            ("VALIDATOR_MAX_UNPACKED_SIZE", "4MiB"),
            ("VALIDATOR_TIMEOUT", "20s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let bus_config = BusConfig::from_env(&env, dir.path()).unwrap();
        let bus = intake_bus::open(&bus_config).await.unwrap();
        let config = ValidatorConfig::from_env(&env).unwrap();
        let (base_url, hits) = serve_archives().await;
        let (validator_bus, faults): (Arc<dyn Bus>, _) = if faulty {
            let wrapped = FaultyBus::new(bus.clone());
            let faults = wrapped.faults();
            (Arc::new(wrapped), Some(faults))
        } else {
            (bus.clone(), None)
        };
        let mut harness = Harness {
            _dir: dir,
            bus_config,
            bus,
            validator_bus,
            config,
            base_url,
            hits,
            cancel: CancellationToken::new(),
            task: None,
        };
        harness.spawn();
        (harness, faults)
    }

    /// Starts the validator again after [`Harness::stop`].
    pub fn restart(&mut self) {
        self.cancel = CancellationToken::new();
        self.spawn();
    }

    fn spawn(&mut self) {
        let (config, bus_config, bus) = (
            self.config.clone(),
            self.bus_config.clone(),
            self.validator_bus.clone(),
        );
        let cancel = self.cancel.clone();
        self.task = Some(tokio::spawn(async move {
            intake_validator::run(config, &bus_config, bus, cancel).await
        }));
    }

    /// Cancels the validator and waits for `run` to return `Ok`.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Publishes an announce for `service` on its per-service topic (or on `topic`).
    pub async fn announce(&self, topic: &str, service: &str, body: &Value) {
        let id = body["request_id"].as_str().unwrap_or("none").to_owned();
        let message = OutgoingMessage::new(topic, body.to_string())
            .key(id.clone())
            .header("service", service)
            .header("request_id", id);
        self.bus.publish(message).await.unwrap();
    }

    /// Reads `topic` (a fresh group that never commits) into a shared list.
    pub async fn watch(&self, topic: &str) -> Arc<Mutex<Vec<ReceivedMessage>>> {
        let group = format!("test-watch-{}", uuid_like());
        let subscription = Subscription {
            group,
            topics: vec![topic.to_owned()],
            start: StartFrom::Earliest,
        };
        let mut consumer = self.bus.subscribe(subscription).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Ok(message) = consumer.next().await {
                sink.lock().unwrap().push(message);
            }
        });
        seen
    }

    pub fn validation_topic(&self) -> String {
        self.bus_config.topic(&self.bus_config.topics.validation)
    }

    pub fn status_topic(&self) -> String {
        self.bus_config
            .topic(&self.bus_config.topics.payload_status)
    }
}

fn uuid_like() -> String {
    intake_core::RequestId::generate().as_str().to_owned()
}

/// An announce as ingress writes it (messages.md), pointing at `url`.
pub fn announce_body(request_id: &str, service: &str, url: &str, size: u64) -> Value {
    json!({
        "account": "12345", "rh_account": "12345", "principal": "54321", "org_id": "54321",
        "request_id": request_id, "payload_id": request_id, "hash": request_id,
        "size": size, "service": service, "category": "payload",
        "content_type": format!("application/vnd.redhat.{service}.payload+tgz"),
        "b64_identity": "eyJpZGVudGl0eSI6IHt9fQ==",
        "metadata": {"display_name": "web01", "reporter": "ingress"},
        "url": url,
        "timestamp": "2024-05-02T09:30:12.123456Z"
    })
}

/// Waits for the message on `seen` whose JSON `request_id` is `id`, and parses it.
pub async fn wait_for(
    seen: &Arc<Mutex<Vec<ReceivedMessage>>>,
    id: &str,
    what: &str,
) -> (ReceivedMessage, Value) {
    intake_testkit::poll::until(WAIT, what, || {
        let found = seen.lock().unwrap().iter().find_map(|m| {
            let v: Value = serde_json::from_slice(&m.value).ok()?;
            (v["request_id"] == id).then(|| (m.clone(), v))
        });
        async move { found }
    })
    .await
}

/// Waits until `id` has `count` statuses on `seen` and returns them, in order.
pub async fn statuses(
    seen: &Arc<Mutex<Vec<ReceivedMessage>>>,
    id: &str,
    count: usize,
) -> Vec<Value> {
    intake_testkit::poll::until(WAIT, "the validator's statuses", || {
        let all: Vec<Value> = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| serde_json::from_slice::<Value>(&m.value).ok())
            .filter(|v| v["request_id"] == id)
            .collect();
        async move { (all.len() >= count).then_some(all) }
    })
    .await
}
