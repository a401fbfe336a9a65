//! The s3 driver against the S3-compatible server the harness starts (scripts/servers/s3.sh): the
//! contract suite, plus start-up rules, presigned URLs and multipart clean-up. Every test uses its
//! own buckets, created through `STORAGE_CREATE_BUCKETS=true`.

use std::path::Path;
use std::time::Duration;

use intake_core::config::{EnvMap, StorageConfig};
use intake_core::RequestId;
use intake_storage::s3::S3Store;
use intake_storage::testsuite::{failing_body, pattern_body, pattern_sha256, Digest};
use intake_storage::{Bucket, ObjectMeta, PayloadStore, Storage, StorageError};
use intake_testkit::servers;

/// Settings for the harness's server with three fresh bucket names, plus `extra` variables.
fn config(extra: &[(&str, &str)]) -> StorageConfig {
    let prefix = format!("t-{}", &RequestId::generate().as_str()[..16]);
    let mut env: EnvMap = [
        ("S3_ENDPOINT_URL", servers::s3_endpoint()),
        ("AWS_ACCESS_KEY_ID", servers::s3_access_key()),
        ("AWS_SECRET_ACCESS_KEY", servers::s3_secret_key()),
        ("STORAGE_CREATE_BUCKETS", "true".to_owned()),
        ("S3_QUARANTINE", format!("{prefix}-quarantine")),
        ("S3_PERM", format!("{prefix}-perm")),
        ("S3_REJECT", format!("{prefix}-reject")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    StorageConfig::from_env(&env, Path::new("/unused")).expect("valid storage config")
}

async fn make_store() -> Storage {
    intake_storage::open(&config(&[]), "http://unused")
        .await
        .expect("open s3 storage")
}

intake_storage::payload_store_contract_tests!(make_store());

fn meta(key: &RequestId) -> ObjectMeta {
    ObjectMeta {
        request_id: key.to_string(),
        org_id: "54321".into(),
        content_type: "application/vnd.redhat.advisor.collection+tgz".into(),
        ..Default::default()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[tokio::test]
async fn presigned_url_works_over_plain_http_and_is_refused_after_expiry() {
    let storage = intake_storage::open(&config(&[("STORAGE_URL_EXPIRY", "2s")]), "http://unused")
        .await
        .expect("open");
    let key = RequestId::generate();
    storage
        .store
        .put_new(Bucket::Perm, &key, pattern_body(70_000, 4), meta(&key))
        .await
        .expect("put");
    let url = storage.store.url(Bucket::Perm, &key).await.expect("url");
    assert!(
        url.starts_with(&servers::s3_endpoint()),
        "signed for S3_ENDPOINT_URL: {url}"
    );
    assert!(
        url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=2"),
        "SigV4 query string: {url}"
    );
    let response = http().get(&url).send().await.expect("GET");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body = futures::TryStreamExt::map_err(response.bytes_stream(), std::io::Error::other);
    assert_eq!(
        Digest::of(Box::pin(body)).await.sha256,
        pattern_sha256(70_000, 4)
    );
    intake_testkit::poll::until_true(
        Duration::from_secs(20),
        "the presigned URL to expire",
        || {
            let url = url.clone();
            async move {
                http()
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == reqwest::StatusCode::FORBIDDEN)
            }
        },
    )
    .await;
}

#[tokio::test]
async fn missing_bucket_without_create_names_bucket_variable_and_endpoint() {
    let config = config(&[("STORAGE_CREATE_BUCKETS", "false")]);
    let err = intake_storage::open(&config, "http://unused")
        .await
        .expect_err("buckets do not exist");
    assert!(
        matches!(
            err,
            StorageError::BucketMissing {
                var: "S3_QUARANTINE",
                ..
            }
        ),
        "{err:?}"
    );
    let expected = format!(
        "bucket \"{}\" (S3_QUARANTINE) does not exist at {}; create it or set STORAGE_CREATE_BUCKETS=true",
        config.buckets.quarantine,
        servers::s3_endpoint()
    );
    assert_eq!(err.to_string(), expected);
}

#[tokio::test]
async fn create_buckets_creates_all_three() {
    let config = config(&[]);
    let store = S3Store::open(&config).await.expect("open");
    for name in [
        &config.buckets.quarantine,
        &config.buckets.perm,
        &config.buckets.reject,
    ] {
        store
            .client()
            .head_bucket()
            .bucket(name)
            .send()
            .await
            .expect("bucket was created");
    }
}

#[tokio::test]
async fn rejected_credentials_name_endpoint_and_access_key_id() {
    let config = config(&[("AWS_SECRET_ACCESS_KEY", "not-the-secret")]);
    let err = intake_storage::open(&config, "http://unused")
        .await
        .expect_err("credentials rejected")
        .to_string();
    assert!(err.contains(&servers::s3_endpoint()), "{err}");
    assert!(err.contains(&servers::s3_access_key()), "{err}");
    assert!(
        !err.contains("not-the-secret"),
        "the secret never shows: {err}"
    );
}

/// Forwards every connection on `listener` to the harness's S3 server, as if it had just come up.
async fn forward_to_s3(listener: tokio::net::TcpListener) {
    let target = servers::s3_endpoint()
        .trim_start_matches("http://")
        .to_owned();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn unreachable_endpoint_opens_then_becomes_ready_when_it_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // Nothing listens on the port once the listener above is dropped.
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = config(&[("S3_ENDPOINT_URL", &endpoint)]);
    let storage = intake_storage::open(&config, "http://unused")
        .await
        .expect("an unreachable endpoint does not stop start-up");
    let err = storage.store.check().await.expect_err("not ready");
    assert!(err.is_unavailable(), "{err:?}");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind");
    tokio::spawn(forward_to_s3(listener));
    // The retry loop creates the buckets (STORAGE_CREATE_BUCKETS=true) without anyone calling check().
    let direct = S3Store::open(&self::config(&[]))
        .await
        .expect("direct client");
    intake_testkit::poll::until_true(
        Duration::from_secs(30),
        "the retry loop to create the buckets",
        || {
            let (client, bucket) = (direct.client().clone(), config.buckets.reject.clone());
            async move { client.head_bucket().bucket(bucket).send().await.is_ok() }
        },
    )
    .await;
    storage
        .store
        .check()
        .await
        .expect("ready once the endpoint answers");
}

#[tokio::test]
async fn metadata_is_user_metadata_and_content_type_after_a_multipart_upload() {
    let config = config(&[]);
    let store = S3Store::open(&config).await.expect("open");
    let key = RequestId::generate();
    let len = intake_storage::s3::PART_SIZE as u64 * 2 + 17;
    store
        .put_new(Bucket::Quarantine, &key, pattern_body(len, 2), meta(&key))
        .await
        .expect("put");
    let head = store
        .client()
        .head_object()
        .bucket(&config.buckets.quarantine)
        .key(key.as_str())
        .send()
        .await
        .expect("head");
    let user = head.metadata().expect("user metadata");
    assert_eq!(
        user.get("request-id").map(String::as_str),
        Some(key.as_str())
    );
    assert_eq!(user.get("org-id").map(String::as_str), Some("54321"));
    assert_eq!(user.get("size"), Some(&len.to_string()));
    assert_eq!(user.get("sha256"), Some(&pattern_sha256(len, 2)));
    assert_eq!(
        head.content_type(),
        Some("application/vnd.redhat.advisor.collection+tgz")
    );
    assert_eq!(
        head.content_length(),
        Some(i64::try_from(len).expect("fits"))
    );
}

#[tokio::test]
async fn aborted_multipart_upload_leaves_nothing() {
    let config = config(&[]);
    let store = S3Store::open(&config).await.expect("open");
    let key = RequestId::generate();
    let failed = store
        .put_new(
            Bucket::Quarantine,
            &key,
            failing_body(intake_storage::s3::PART_SIZE as u64 * 2 + 1),
            meta(&key),
        )
        .await;
    assert!(matches!(failed, Err(StorageError::Body(_))), "{failed:?}");
    let listed = store
        .client()
        .list_objects_v2()
        .bucket(&config.buckets.quarantine)
        .send()
        .await
        .expect("list");
    assert_eq!(
        listed.key_count().unwrap_or(0),
        0,
        "no object: {:?}",
        listed.contents()
    );
    // s3s-fs does not implement ListMultipartUploads (501); stores that do must list none.
    match store
        .client()
        .list_multipart_uploads()
        .bucket(&config.buckets.quarantine)
        .send()
        .await
    {
        Ok(uploads) => assert!(
            uploads.uploads().is_empty(),
            "no pending upload: {:?}",
            uploads.uploads()
        ),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            assert_eq!(status, Some(501), "ListMultipartUploads: {e:?}");
        }
    }
}

/// `S3_QUARANTINE_RETAIN`: a retired quarantine copy serves its link until its time is up, then the
/// sweep deletes it (the link answers 404) and nothing else; with `0` a retire is a plain delete.
#[tokio::test]
async fn retired_copies_serve_links_until_the_sweep_removes_them() {
    let storage = intake_storage::open(&config(&[("S3_QUARANTINE_RETAIN", "2s")]), "http://unused")
        .await
        .expect("open");
    let store = storage.store;
    let (old, young, waiting) = (
        RequestId::generate(),
        RequestId::generate(),
        RequestId::generate(),
    );
    for key in [&old, &young, &waiting] {
        store
            .put_new(Bucket::Quarantine, key, pattern_body(5_000, 9), meta(key))
            .await
            .expect("put");
    }
    let mut links = Vec::new();
    for key in [&old, &young] {
        store
            .copy(Bucket::Quarantine, Bucket::Perm, key)
            .await
            .expect("copy");
        links.push(store.url(Bucket::Quarantine, key).await.expect("url"));
    }
    let status = |url: String| async move { http().get(&url).send().await.expect("GET").status() };
    store.retire(&old).await.expect("retire");
    assert_eq!(
        store.sweep_retired().await.expect("sweep").deleted,
        0,
        "too young"
    );
    assert_eq!(status(links[0].clone()).await, reqwest::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    store.retire(&young).await.expect("retire");
    assert_eq!(
        store.sweep_retired().await.expect("sweep").deleted,
        1,
        "only the old one"
    );
    assert_eq!(
        status(links[0].clone()).await,
        reqwest::StatusCode::NOT_FOUND,
        "swept"
    );
    assert_eq!(
        status(links[1].clone()).await,
        reqwest::StatusCode::OK,
        "kept"
    );
    store
        .head(Bucket::Quarantine, &waiting)
        .await
        .expect("a payload awaiting its verdict is never swept");
    assert_eq!(
        store.sweep_retired().await.expect("sweep").deleted,
        0,
        "idempotent"
    );

    let storage = intake_storage::open(&config(&[("S3_QUARANTINE_RETAIN", "0")]), "http://unused")
        .await
        .expect("open");
    let key = RequestId::generate();
    storage
        .store
        .put_new(Bucket::Quarantine, &key, pattern_body(100, 1), meta(&key))
        .await
        .expect("put");
    let link = storage
        .store
        .url(Bucket::Quarantine, &key)
        .await
        .expect("url");
    storage.store.retire(&key).await.expect("retire");
    assert_eq!(
        status(link).await,
        reqwest::StatusCode::NOT_FOUND,
        "retain 0 deletes"
    );
}
