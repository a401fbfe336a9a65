//! The localdisk driver: the contract suite on a temporary `STORAGE_DIR`, plus what only localdisk
//! has (its on-disk layout and start-up clean-up, signed `/download` URLs).

use std::path::Path;
use std::time::Duration;

use intake_core::config::{BucketNames, StorageConfig, StorageDriver};
use intake_core::RequestId;
use intake_storage::testsuite::{pattern_body, small_body};
use intake_storage::{Bucket, DownloadDenied, ObjectMeta, Storage, StorageError};

fn config(dir: &Path) -> StorageConfig {
    let env = intake_core::config::EnvMap::new();
    let mut config = StorageConfig::from_env(&env, dir).expect("default config");
    config.driver = StorageDriver::LocalDisk;
    config.dir = dir.to_path_buf();
    config.signing_key = Some("contract-suite-key".into());
    config
}

/// A store on a fresh folder. The folder must outlive the store, so it is kept, under cargo's
/// temporary folder for integration tests (inside `target/`), not in the system's `/tmp`.
async fn make_store() -> Storage {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir")
        .keep();
    intake_storage::open(&config(&dir), "http://localhost:8080")
        .await
        .expect("open localdisk")
}

intake_storage::payload_store_contract_tests!(make_store());

fn meta(key: &RequestId) -> ObjectMeta {
    ObjectMeta {
        request_id: key.to_string(),
        content_type: "text/plain".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn layout_is_a_folder_per_bucket_with_json_sidecars() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = intake_storage::open(&config(dir.path()), "http://h")
        .await
        .expect("open");
    let key = RequestId::generate();
    storage
        .store
        .put_new(Bucket::Quarantine, &key, small_body(b"abc"), meta(&key))
        .await
        .expect("put");
    let bucket = dir.path().join(&BucketNames::default().quarantine);
    assert_eq!(
        std::fs::read(bucket.join(key.as_str())).expect("data file"),
        b"abc"
    );
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bucket.join(format!("{key}.meta.json"))).expect("sidecar"),
    )
    .expect("json");
    assert_eq!(sidecar["request-id"], key.as_str());
    assert_eq!(sidecar["size"], "3");
    assert_eq!(
        sidecar["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        std::fs::read_dir(bucket.join(".tmp"))
            .expect(".tmp")
            .count(),
        0,
        ".tmp is empty after a write"
    );
    for name in [BucketNames::default().perm, BucketNames::default().reject] {
        assert!(dir.path().join(name).is_dir());
    }
}

#[tokio::test]
async fn copy_is_a_hard_link() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = intake_storage::open(&config(dir.path()), "http://h")
        .await
        .expect("open");
    let key = RequestId::generate();
    storage
        .store
        .put_new(
            Bucket::Quarantine,
            &key,
            pattern_body(10_000, 1),
            meta(&key),
        )
        .await
        .expect("put");
    storage
        .store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("copy");
    let names = BucketNames::default();
    let q =
        std::fs::metadata(dir.path().join(&names.quarantine).join(key.as_str())).expect("source");
    let p = std::fs::metadata(dir.path().join(&names.perm).join(key.as_str())).expect("copy");
    assert_eq!((q.ino(), q.nlink()), (p.ino(), 2));
}

#[tokio::test]
async fn failed_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = intake_storage::open(&config(dir.path()), "http://h")
        .await
        .expect("open");
    let key = RequestId::generate();
    let failed = storage
        .store
        .put_new(
            Bucket::Quarantine,
            &key,
            intake_storage::testsuite::failing_body(5000),
            meta(&key),
        )
        .await;
    assert!(matches!(failed, Err(StorageError::Body(_))));
    let bucket = dir.path().join(BucketNames::default().quarantine);
    assert_eq!(
        std::fs::read_dir(bucket.join(".tmp"))
            .expect(".tmp")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(&bucket).expect("bucket").count(),
        1,
        "only .tmp is left"
    );
}

#[tokio::test]
async fn start_up_empties_tmp_and_removes_orphan_sidecars() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = intake_storage::open(&config(dir.path()), "http://h")
        .await
        .expect("open");
    let kept = RequestId::generate();
    storage
        .store
        .put_new(Bucket::Perm, &kept, small_body(b"kept"), meta(&kept))
        .await
        .expect("put");
    drop(storage);
    let perm = dir.path().join(BucketNames::default().perm);
    std::fs::write(perm.join(".tmp").join("abc.0123"), b"interrupted write").expect("tmp file");
    std::fs::write(perm.join("orphan.meta.json"), b"{}").expect("orphan sidecar");

    let storage = intake_storage::open(&config(dir.path()), "http://h")
        .await
        .expect("reopen");
    assert_eq!(
        std::fs::read_dir(perm.join(".tmp")).expect(".tmp").count(),
        0
    );
    assert!(
        !perm.join("orphan.meta.json").exists(),
        "orphan sidecar removed"
    );
    let head = storage
        .store
        .head(Bucket::Perm, &kept)
        .await
        .expect("kept object");
    assert_eq!(head.size, 4);
    let orphan = RequestId::parse("orphan").expect("id");
    // The key of the removed sidecar is free again.
    storage
        .store
        .put_new(Bucket::Perm, &orphan, small_body(b"new"), meta(&orphan))
        .await
        .expect("put");
}

#[tokio::test]
async fn missing_bucket_without_create_fails_naming_bucket_variable_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.create_buckets = false;
    let err = intake_storage::open(&config, "http://h")
        .await
        .expect_err("no bucket folders")
        .to_string();
    assert!(
        err.contains("\"insights-upload-quarantine\" (S3_QUARANTINE)"),
        "{err}"
    );
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    for name in [
        BucketNames::default().quarantine,
        BucketNames::default().perm,
        BucketNames::default().reject,
    ] {
        std::fs::create_dir(dir.path().join(name)).expect("mkdir");
    }
    intake_storage::open(&config, "http://h")
        .await
        .expect("existing folders open");
}

#[tokio::test]
async fn download_urls_are_signed_per_bucket_and_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.url_expiry = Duration::from_secs(60);
    let storage = intake_storage::open(&config, "http://ingress.example:8080/")
        .await
        .expect("open");
    let verifier = storage
        .downloads
        .clone()
        .expect("localdisk verifies its URLs");
    let key = RequestId::generate();
    let url = storage
        .store
        .url(Bucket::Quarantine, &key)
        .await
        .expect("url");
    let prefix = format!("http://ingress.example:8080/download/{key}?expires=");
    assert!(url.starts_with(&prefix), "{url}");
    let (_, query) = url.split_once('?').expect("query");
    let expires: i64 = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .expect("expires")
        .parse()
        .expect("int");
    let signature = query
        .split('&')
        .find_map(|p| p.strip_prefix("signature="))
        .expect("signature");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 55..=now + 61).contains(&expires),
        "expires = now + STORAGE_URL_EXPIRY"
    );
    assert_eq!(
        verifier.verify(key.as_str(), &expires.to_string(), signature),
        Ok(Bucket::Quarantine)
    );
    assert_eq!(
        verifier.verify_at(key.as_str(), &expires.to_string(), signature, expires + 1),
        Err(DownloadDenied::Expired)
    );
    assert_eq!(
        verifier.verify("other", &expires.to_string(), signature),
        Err(DownloadDenied::BadSignature)
    );

    // Another key (another instance sharing no key) rejects it; the same key accepts it.
    let mut other = config.clone();
    other.dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir")
        .keep();
    other.signing_key = Some("another-key".into());
    let foreign = intake_storage::open(&other, "http://h")
        .await
        .expect("open")
        .downloads
        .expect("verifier");
    assert_eq!(
        foreign.verify(key.as_str(), &expires.to_string(), signature),
        Err(DownloadDenied::BadSignature)
    );
}

#[tokio::test]
async fn without_a_signing_key_one_is_kept_in_the_data_dir_and_outlives_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.signing_key = None;
    let a = intake_storage::open(&config, "http://h")
        .await
        .expect("open");
    // A second start on the same data dir (a restart) reuses the kept key.
    let b = intake_storage::open(&config, "http://h")
        .await
        .expect("open");
    let key = RequestId::generate();
    let url = a.store.url(Bucket::Perm, &key).await.expect("url");
    let (_, expires, signature) =
        intake_storage::download::parse_download_url(&url).expect("parse");
    for opened in [&a, &b] {
        assert_eq!(
            opened
                .downloads
                .as_ref()
                .expect("verifier")
                .verify(key.as_str(), &expires, &signature),
            Ok(Bucket::Perm),
            "a link outlives the process that signed it"
        );
    }
    // Another data dir has its own key: links are not valid across installations.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let mut other = config.clone();
    other.dir = other_dir.path().to_path_buf();
    other.signing_key_file = other_dir.path().join("signing.key");
    let c = intake_storage::open(&other, "http://h")
        .await
        .expect("open");
    assert_eq!(
        c.downloads
            .expect("verifier")
            .verify(key.as_str(), &expires, &signature),
        Err(DownloadDenied::BadSignature),
    );
}

/// A small object is read whole when opened, a large one streams from the open file: either way a
/// reader that opened it before a delete gets every byte.
#[tokio::test]
async fn an_open_object_keeps_its_bytes_after_a_delete_small_or_large() {
    use futures::TryStreamExt;
    use sha2::{Digest, Sha256};

    let storage = make_store().await;
    for (len, seed) in [
        (10 * 1024, 1),
        (256 * 1024, 2),
        (256 * 1024 + 1, 3),
        (3 << 20, 4),
    ] {
        let key = RequestId::generate();
        storage
            .store
            .put_new(
                Bucket::Quarantine,
                &key,
                pattern_body(len, seed),
                meta(&key),
            )
            .await
            .expect("put");
        let object = storage
            .store
            .get(Bucket::Quarantine, &key)
            .await
            .expect("get");
        storage
            .store
            .delete(Bucket::Quarantine, &key)
            .await
            .expect("delete");
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        let mut body = object.body;
        while let Some(chunk) = body.try_next().await.expect("body") {
            read += chunk.len() as u64;
            hasher.update(&chunk);
        }
        assert_eq!(read, len, "length of a {len}-byte object");
        assert_eq!(
            hex::encode(hasher.finalize()),
            intake_storage::testsuite::pattern_sha256(len, seed),
            "bytes of a {len}-byte object"
        );
    }
}
