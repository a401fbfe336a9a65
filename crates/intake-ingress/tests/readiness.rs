//! `/readyz` (ingress.md): 200 while storage and the bus answer, 503 naming the failing check
//! otherwise, and promptly so when a dependency stops answering instead of failing.

use crate::harness;

use std::time::{Duration, Instant};

use http::StatusCode;
use intake_storage::faults::{Fault, Operation};

#[tokio::test]
async fn ready_while_both_answer_and_503_naming_the_one_that_fails() {
    let h = harness::start(&[]).await;
    let answer = h.get("/readyz", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["storage"], "ok");
    assert_eq!(body["checks"]["bus"], "ok");

    h.store_faults.set(Operation::Check, Fault::Always);
    let answer = h.get("/readyz", None).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = answer.json();
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["checks"]["storage"]
            .as_str()
            .unwrap()
            .contains("injected fault"),
        "{body}"
    );
    assert_eq!(body["checks"]["bus"], "ok");

    h.bus_faults.fail_check(true);
    let body = h.get("/readyz", None).await.json();
    assert_ne!(body["checks"]["bus"], "ok", "{body}");

    h.store_faults.clear_all();
    h.bus_faults.heal();
    assert_eq!(h.get("/readyz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_storage_that_stops_answering_is_unready_within_the_check_timeout() {
    let h = harness::start(&[]).await;
    h.store_faults.set(Operation::Check, Fault::Hang);
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), h.get("/readyz", None))
        .await
        .expect("/readyz must answer while storage hangs");
    let took = started.elapsed();
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = answer.json();
    assert_eq!(body["checks"]["storage"], "no answer within 2 s", "{body}");
    assert_eq!(body["checks"]["bus"], "ok");
    assert!(
        took >= intake_http::health::CHECK_TIMEOUT && took < Duration::from_secs(5),
        "answered after {took:?}"
    );

    h.store_faults.clear(Operation::Check);
    assert_eq!(h.get("/readyz", None).await.status, StatusCode::OK);
}
