//! Black-box: `intake validator` alone can be probed and scraped. With `VALIDATOR_LISTEN` it serves
//! `/livez`, `/readyz` and `/metrics`, and its counters move when a payload goes through. Ingress
//! and the validator are separate processes on one embedded bus, as they would be deployed. Both
//! show their consumer lag.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "test code: a failed step fails the test; its bodies, tasks and output are its own"
)]

use crate::common;

use std::time::Duration;

use common::process::free_port;
use intake_testkit::poll;

/// Uploads the sample archive for `testareno`: 202.
async fn upload_one(client: &reqwest::Client, ingress_url: &str) {
    let archive = intake_testkit::archives::gzip(&intake_testkit::archives::sample_tar());
    let answer = common::upload::post(client, ingress_url, "sample1", archive)
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
}

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let answer = client.get(url).send().await.ok()?;
    let status = answer.status().as_u16();
    Some((status, answer.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn validator_serves_health_and_counts_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (ingress_port, health_port) = (free_port(), free_port());
    let ingress_url = format!("http://127.0.0.1:{ingress_port}");
    let health = format!("http://127.0.0.1:{health_port}");
    let _ingress = common::process::embedded(
        dir.path(),
        &["ingress"],
        &[
            ("INGRESS_LISTEN", format!("127.0.0.1:{ingress_port}")),
            ("INGRESS_PUBLIC_URL", ingress_url.clone()),
        ],
    );
    let _validator = common::process::embedded(
        dir.path(),
        &["validator", "--services", "testareno"],
        &[("VALIDATOR_LISTEN", format!("127.0.0.1:{health_port}"))],
    );
    for url in [
        format!("{ingress_url}/readyz"),
        format!("{health}/readyz"),
        format!("{health}/livez"),
    ] {
        poll::until_true(Duration::from_secs(60), &format!("{url} 200"), || async {
            matches!(get(&client, &url).await, Some((200, _)))
        })
        .await;
    }
    let (_, before) = get(&client, &format!("{health}/metrics")).await.unwrap();
    assert!(
        !before.contains("intake_validator_verdicts_total{"),
        "no verdict yet: {before}"
    );

    upload_one(&client, &ingress_url).await;

    let metrics_url = format!("{health}/metrics");
    poll::until_true(
        Duration::from_secs(30),
        "the validator's /metrics to count one successful verdict",
        || async {
            get(&client, &metrics_url).await.is_some_and(|(_, text)| {
                text.contains(
                    "intake_validator_verdicts_total{reason=\"none\",validation=\"success\"} 1",
                )
            })
        },
    )
    .await;
    let (status, text) = get(&client, &metrics_url).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("intake_validator_download_duration_seconds_count{outcome=\"ok\"} 1"),
        "{text}"
    );
}

/// The lines of `url`'s /metrics.
async fn metric_lines(client: &reqwest::Client, url: &str) -> Vec<String> {
    get(client, url).await.map_or_else(Vec::new, |(_, text)| {
        text.lines().map(str::to_owned).collect()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_lag_shows_what_waits_and_falls_to_zero_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let (ingress_port, health_port) = (free_port(), free_port());
    let ingress_url = format!("http://127.0.0.1:{ingress_port}");
    let _ingress = common::process::embedded_ingress(dir.path(), ingress_port, &[]).await;
    // Announced before any validator runs: one announce waits.
    upload_one(&client, &ingress_url).await;

    // The validator reads its lag as it starts (the waiting announce), and again every 5 s.
    let _validator = common::process::embedded(
        dir.path(),
        &["validator", "--services", "testareno"],
        &[("VALIDATOR_LISTEN", format!("127.0.0.1:{health_port}"))],
    );
    let validator_metrics = format!("http://127.0.0.1:{health_port}/metrics");
    let lag = |n: u32| {
        format!("intake_validator_consumer_lag{{partition=\"0\",topic=\"platform.upload.testareno\"}} {n}")
    };
    poll::until_true(Duration::from_secs(30), &lag(1), || async {
        metric_lines(&client, &validator_metrics)
            .await
            .contains(&lag(1))
    })
    .await;
    // Once the announce is answered and committed, the next read shows nothing waiting; ingress
    // too has committed the verdict.
    for (url, line) in [
        (validator_metrics.clone(), lag(0)),
        (
            format!("{ingress_url}/metrics"),
            "ingress_consumer_lag{partition=\"0\",topic=\"platform.upload.validation\"} 0"
                .to_owned(),
        ),
    ] {
        poll::until_true(Duration::from_secs(30), &line, || async {
            metric_lines(&client, &url).await.contains(&line)
        })
        .await;
    }
}
