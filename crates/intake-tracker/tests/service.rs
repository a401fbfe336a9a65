//! The whole service as `intake tracker` runs it: `run` with the embedded bus and SQLite, fed by
//! `mock`, answering on its listener, stopping when cancelled.

use std::time::Duration;

use intake_core::config::{BusConfig, EnvMap, GeneralConfig, TrackerConfig};
use intake_testkit::poll::until_true;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ingests_mock_journeys_and_answers_until_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env: EnvMap = [
        ("IDENTITY_REQUIRED", "false".to_string()),
        ("INTAKE_DATA_DIR", dir.path().display().to_string()),
        ("TRACKER_LISTEN", format!("127.0.0.1:{port}")),
        ("SHUTDOWN_GRACE", "1s".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let general = GeneralConfig::from_env(&env).unwrap();
    let bus_config = BusConfig::from_env(&env, dir.path()).unwrap();
    let config = TrackerConfig::from_env(&env, dir.path()).unwrap();
    let bus = intake_bus::open(&bus_config).await.unwrap();
    let cancel = CancellationToken::new();
    let task = {
        let (bus, bus_config, general, cancel) = (
            bus.clone(),
            bus_config.clone(),
            general.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            intake_tracker::run(config, &general, &bus_config, bus, cancel).await
        })
    };
    let report = intake_tracker::mock(bus, &bus_config, 4, 0.0)
        .await
        .unwrap();
    assert_eq!(report.payloads, 4);
    assert!(report.statuses >= 4 * 3, "{} statuses", report.statuses);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    until_true(Duration::from_secs(30), "every mock status stored", || {
        let (client, url) = (
            client.clone(),
            format!("{base}/api/v1/statuses?page_size=1"),
        );
        let expected = report.statuses as i64;
        async move {
            match client.get(url).send().await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .map(|b| b["count"] == expected)
                    .unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await;
    let body: serde_json::Value = client
        .get(format!("{base}/api/v1/payloads"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["count"], 4);
    let id = &report.request_ids[0];
    let one: serde_json::Value = client
        .get(format!("{base}/v1/payloads/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        one["data"].as_array().unwrap().last().unwrap()["status"],
        "received"
    );
    assert!(one["duration"]["ingress:undefined"].is_string());
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Payload tracker"));
    let events = reqwest::Client::new()
        .get(format!("{base}/api/v1/payloads/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    cancel.cancel();
    let streamed = tokio::time::timeout(Duration::from_secs(5), events.text())
        .await
        .expect("an open event stream ends at shutdown")
        .unwrap();
    assert!(streamed.contains("event: status"));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns when cancelled")
        .unwrap()
        .unwrap();
}
