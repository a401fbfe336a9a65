//! A full disk under quarantine (ingress.md, "Nothing is left behind"): the store fails with
//! ENOSPC before or while the body streams. Every upload is refused with 503, `Retry-After` and the
//! JSON error body saying storage is full, never 202; nothing is kept or announced. Once space
//! returns, the same request ids are accepted and announced once each.

use crate::harness;

use harness::payload;
use intake_storage::faults::{Fault, Operation};
use intake_storage::Bucket;
use serde_json::json;

const FULL: &str = "payload storage is full; nothing was kept, retry later";

#[tokio::test(flavor = "multi_thread")]
async fn a_full_store_refuses_uploads_until_space_returns() {
    let h = harness::start(&[("INGRESS_MAX_SIZE", "2000000")]).await;
    h.store_faults.as_no_space(true);
    // Large bodies fail while they stream, after part of them is written; a small one fails
    // before anything is written.
    let uploads = [("full-1", 600_000), ("full-2", 900_000), ("full-3", 900)];
    h.store_faults.fail_put_after(300_000, Fault::Always);
    for (id, len) in &uploads[..2] {
        let answer = h.upload(id, &payload(*len), None).await;
        assert_eq!(answer.status, 503, "{id}: {}", answer.json());
        assert_eq!(answer.header("retry-after"), Some("30"));
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(
            answer.json(),
            json!({"status": 503, "title": "Service Unavailable", "message": FULL, "request_id": id})
        );
    }
    h.store_faults.set(Operation::PutNew, Fault::Always);
    let (id, len) = uploads[2];
    let answer = h.upload(id, &payload(len), None).await;
    assert_eq!(answer.status, 503, "{id}: {}", answer.json());
    assert_eq!(answer.header("retry-after"), Some("30"));
    assert_eq!(answer.json()["message"], FULL);
    h.assert_bucket_empty(Bucket::Quarantine);
    let announces = h.messages(&h.service_topic()).await;
    assert!(announces.is_empty(), "announced: {announces:?}");
    let statuses = h.statuses().await;
    assert!(statuses.is_empty(), "statuses: {statuses:?}");

    // Space returns: the same ids go through, whole, announced once each.
    h.store_faults.clear_all();
    for (id, len) in uploads {
        h.upload_ok(id, &payload(len), None).await;
        assert_eq!(h.read(Bucket::Quarantine, id).unwrap(), payload(len));
    }
    let announces = h.messages(&h.service_topic()).await;
    assert_eq!(announces.len(), uploads.len(), "one announce per upload");
}
