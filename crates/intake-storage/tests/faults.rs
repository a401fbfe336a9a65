//! The fault-injection wrapper over a real (localdisk) store: injected failures look like an
//! unavailable store, leave nothing behind, and clear as told.

use std::sync::Arc;

use intake_core::config::{EnvMap, StorageConfig};
use intake_core::RequestId;
use intake_storage::faults::{Fault, FaultyStore, Operation};
use intake_storage::testsuite::{pattern_body, small_body};
use intake_storage::{Bucket, ObjectMeta, PayloadStore, StorageError};

async fn faulty() -> (FaultyStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = StorageConfig::from_env(&EnvMap::new(), dir.path()).expect("config");
    config.signing_key = Some("k".into());
    let storage = intake_storage::open(&config, "http://h")
        .await
        .expect("open");
    (FaultyStore::new(storage.store), dir)
}

fn meta(key: &RequestId) -> ObjectMeta {
    ObjectMeta {
        request_id: key.to_string(),
        ..Default::default()
    }
}

#[tokio::test]
async fn put_failing_mid_stream_is_unavailable_and_leaves_nothing() {
    let (store, _dir) = faulty().await;
    store.faults().fail_put_after(100_000, Fault::Times(1));
    let key = RequestId::generate();
    let err = store
        .put_new(
            Bucket::Quarantine,
            &key,
            pattern_body(300_000, 1),
            meta(&key),
        )
        .await
        .expect_err("fault");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(matches!(
        store.head(Bucket::Quarantine, &key).await,
        Err(StorageError::NotFound { .. })
    ));
    // Times(1): the next write passes.
    store
        .put_new(
            Bucket::Quarantine,
            &key,
            pattern_body(300_000, 1),
            meta(&key),
        )
        .await
        .expect("put");
    assert_eq!(store.faults().calls(Operation::PutNew), 2);
}

#[tokio::test]
async fn put_failing_at_start_writes_nothing() {
    let (store, _dir) = faulty().await;
    store.faults().set(Operation::PutNew, Fault::Always);
    let key = RequestId::generate();
    for _ in 0..2 {
        let err = store
            .put_new(Bucket::Quarantine, &key, small_body(b"x"), meta(&key))
            .await
            .expect_err("fault");
        assert!(err.is_unavailable(), "{err:?}");
    }
    store.faults().clear(Operation::PutNew);
    store
        .put_new(Bucket::Quarantine, &key, small_body(b"x"), meta(&key))
        .await
        .expect("cleared");
}

#[tokio::test]
async fn operations_fail_as_armed_then_pass() {
    let (store, _dir) = faulty().await;
    let store = Arc::new(store);
    let faults = store.faults();
    let key = RequestId::generate();
    store
        .put_new(Bucket::Quarantine, &key, small_body(b"abc"), meta(&key))
        .await
        .expect("put");

    faults.set(Operation::Copy, Fault::Times(2));
    assert!(store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .is_err());
    assert!(store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .is_err());
    store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("third copy passes");
    assert_eq!(faults.calls(Operation::Copy), 3);

    faults.set(Operation::Head, Fault::Always);
    assert!(store
        .locate(&key)
        .await
        .expect_err("locate goes through head")
        .is_unavailable());
    faults.set(Operation::Delete, Fault::Always);
    assert!(store.delete(Bucket::Quarantine, &key).await.is_err());
    faults.set(Operation::Check, Fault::Always);
    assert!(store.check().await.is_err());
    faults.clear_all();
    store
        .delete(Bucket::Quarantine, &key)
        .await
        .expect("delete");
    assert_eq!(
        store.locate(&key).await.expect("locate"),
        vec![Bucket::Perm]
    );
    store.check().await.expect("check");
}
