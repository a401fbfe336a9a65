//! One function per promise of the storage seam (storage.md, "Operations"). Each takes a fresh
//! [`Subject`] and panics, naming the promise, when the driver breaks it.

use std::sync::Arc;

use intake_core::RequestId;

use super::fixtures::{failing_body, pattern_body, pattern_sha256, small_body, Digest};
use super::Subject;
use crate::{Bucket, ObjectMeta, StorageError};

/// SHA-256 of the empty string.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// SHA-256 of "hello, intake".
const HELLO: &[u8] = b"hello, intake";

fn meta_for(key: &RequestId) -> ObjectMeta {
    ObjectMeta {
        request_id: key.to_string(),
        account: "12345".into(),
        org_id: "54321".into(),
        service: "advisor".into(),
        category: "payload".into(),
        content_type: "application/vnd.redhat.advisor.payload+tgz".into(),
        // Ignored by put_new, which records what it counted.
        size: 999,
        sha256: "ignored".into(),
        user_agent: "insights-client/3.2 (Linux; x86_64)".into(),
        received_at: "2024-05-02T09:30:12.123456Z".into(),
    }
}

fn hello_sha256() -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(HELLO))
}

async fn put_hello(s: &Subject, bucket: Bucket, key: &RequestId) -> ObjectMeta {
    s.store
        .put_new(bucket, key, small_body(HELLO), meta_for(key))
        .await
        .expect("put_new of a new key")
}

fn assert_not_found<T>(result: Result<T, StorageError>, what: &str) {
    match result {
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => panic!("{what}: expected NotFound, got {e}"),
        Ok(_) => panic!("{what}: expected NotFound, got a value"),
    }
}

pub async fn put_new_is_create_only(s: Subject) {
    let key = RequestId::generate();
    put_hello(&s, Bucket::Quarantine, &key).await;
    let second = s
        .store
        .put_new(
            Bucket::Quarantine,
            &key,
            pattern_body(1000, 1),
            meta_for(&key),
        )
        .await;
    assert!(
        matches!(second, Err(StorageError::AlreadyExists { .. })),
        "second put_new: {second:?}"
    );
    let kept = s.store.get(Bucket::Quarantine, &key).await.expect("object");
    assert_eq!(
        Digest::of(kept.body).await,
        Digest {
            size: HELLO.len() as u64,
            sha256: hello_sha256()
        }
    );
    // Create-only is per bucket: the same key may be new elsewhere.
    put_hello(&s, Bucket::Reject, &key).await;
}

pub async fn put_new_records_size_and_sha256(s: Subject) {
    let key = RequestId::generate();
    let returned = put_hello(&s, Bucket::Quarantine, &key).await;
    assert_eq!(
        (returned.size, returned.sha256.as_str()),
        (HELLO.len() as u64, hello_sha256().as_str())
    );
    let stored = s.store.head(Bucket::Quarantine, &key).await.expect("head");
    assert_eq!(stored.size, HELLO.len() as u64);
    assert_eq!(stored.sha256, hello_sha256());
    assert_eq!(stored, returned);
}

pub async fn put_new_of_an_empty_body(s: Subject) {
    let key = RequestId::generate();
    let returned = s
        .store
        .put_new(Bucket::Quarantine, &key, pattern_body(0, 1), meta_for(&key))
        .await
        .expect("put");
    assert_eq!((returned.size, returned.sha256.as_str()), (0, EMPTY_SHA256));
    let object = s.store.get(Bucket::Quarantine, &key).await.expect("get");
    assert_eq!(object.meta.sha256, EMPTY_SHA256);
    assert_eq!(Digest::of(object.body).await.size, 0);
}

pub async fn metadata_round_trips(s: Subject) {
    let key = RequestId::generate();
    let mut meta = meta_for(&key);
    meta.account = String::new();
    meta.user_agent = "curl/8.5 (\u{e9}t\u{e9}) \u{1F600} tab\there".into();
    let returned = s
        .store
        .put_new(Bucket::Quarantine, &key, small_body(HELLO), meta.clone())
        .await
        .expect("put");
    let stored = s.store.head(Bucket::Quarantine, &key).await.expect("head");
    let expected = ObjectMeta {
        account: String::new(),
        size: HELLO.len() as u64,
        sha256: hello_sha256(),
        // Values are printable ASCII: anything else becomes '?'.
        user_agent: "curl/8.5 (?t?) ? tab?here".into(),
        ..meta
    };
    assert_eq!(stored, expected);
    assert_eq!(returned.request_id, key.as_str());
    let object = s.store.get(Bucket::Quarantine, &key).await.expect("get");
    assert_eq!(object.meta, expected);
}

async fn assert_nothing_left(s: &Subject, key: &RequestId) {
    assert_not_found(
        s.store.head(Bucket::Quarantine, key).await,
        "head after a failed put_new",
    );
    assert_not_found(
        s.store.get(Bucket::Quarantine, key).await.map(|_| ()),
        "get after a failed put_new",
    );
    assert_eq!(
        s.store.locate(key).await.expect("locate"),
        Vec::<Bucket>::new()
    );
    // The key is still free.
    put_hello(s, Bucket::Quarantine, key).await;
}

pub async fn failed_body_leaves_nothing(s: Subject) {
    let key = RequestId::generate();
    let failed = s
        .store
        .put_new(Bucket::Quarantine, &key, failing_body(1000), meta_for(&key))
        .await;
    assert!(
        matches!(failed, Err(StorageError::Body(_))),
        "put_new of a failing body: {failed:?}"
    );
    assert_nothing_left(&s, &key).await;
}

/// A body that fails after more than one 8 MiB part (S3: an aborted multipart upload).
pub async fn failed_multipart_body_leaves_nothing(s: Subject) {
    let key = RequestId::generate();
    let failed = s
        .store
        .put_new(
            Bucket::Quarantine,
            &key,
            failing_body(9 * 1024 * 1024),
            meta_for(&key),
        )
        .await;
    assert!(
        matches!(failed, Err(StorageError::Body(_))),
        "put_new of a failing body: {failed:?}"
    );
    assert_nothing_left(&s, &key).await;
}

pub async fn large_body_streams_and_round_trips(s: Subject) {
    const LEN: u64 = 40 * 1024 * 1024 + 123;
    let key = RequestId::generate();
    let expected = pattern_sha256(LEN, 7);
    let returned = s
        .store
        .put_new(
            Bucket::Quarantine,
            &key,
            pattern_body(LEN, 7),
            meta_for(&key),
        )
        .await
        .expect("put");
    assert_eq!(
        (returned.size, returned.sha256.as_str()),
        (LEN, expected.as_str())
    );
    let head = s.store.head(Bucket::Quarantine, &key).await.expect("head");
    assert_eq!((head.size, head.sha256.as_str()), (LEN, expected.as_str()));
    assert_eq!(head.content_type, meta_for(&key).content_type);
    let object = s.store.get(Bucket::Quarantine, &key).await.expect("get");
    assert_eq!(
        Digest::of(object.body).await,
        Digest {
            size: LEN,
            sha256: expected
        }
    );
}

pub async fn get_streams_the_bytes_back(s: Subject) {
    let key = RequestId::generate();
    let len = 300_000;
    s.store
        .put_new(Bucket::Perm, &key, pattern_body(len, 3), meta_for(&key))
        .await
        .expect("put");
    let object = s.store.get(Bucket::Perm, &key).await.expect("get");
    assert_eq!(object.meta.size, len);
    assert_eq!(
        Digest::of(object.body).await,
        Digest {
            size: len,
            sha256: pattern_sha256(len, 3)
        }
    );
}

pub async fn missing_key_is_not_found(s: Subject) {
    let key = RequestId::generate();
    for bucket in Bucket::ALL {
        assert_not_found(s.store.head(bucket, &key).await, "head of a missing key");
        assert_not_found(
            s.store.get(bucket, &key).await.map(|_| ()),
            "get of a missing key",
        );
    }
}

pub async fn copy_keeps_metadata(s: Subject) {
    let key = RequestId::generate();
    let stored = put_hello(&s, Bucket::Quarantine, &key).await;
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("copy");
    assert_eq!(
        s.store
            .head(Bucket::Perm, &key)
            .await
            .expect("head of the copy"),
        stored
    );
    let copy = s
        .store
        .get(Bucket::Perm, &key)
        .await
        .expect("get of the copy");
    assert_eq!(Digest::of(copy.body).await.sha256, hello_sha256());
    // The source is untouched: a move deletes it separately.
    assert_eq!(
        s.store
            .head(Bucket::Quarantine, &key)
            .await
            .expect("source"),
        stored
    );
}

/// A move is a copy and a delete: deleting the source must leave the copy whole, bytes and
/// metadata, and a second copy after that is the finished move being repeated.
pub async fn a_copy_outlives_its_source(s: Subject) {
    let key = RequestId::generate();
    let stored = put_hello(&s, Bucket::Quarantine, &key).await;
    s.store
        .copy(Bucket::Quarantine, Bucket::Reject, &key)
        .await
        .expect("copy");
    s.store
        .delete(Bucket::Quarantine, &key)
        .await
        .expect("delete of the source");
    assert!(matches!(
        s.store.head(Bucket::Quarantine, &key).await,
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(
        s.store
            .head(Bucket::Reject, &key)
            .await
            .expect("head of the copy"),
        stored
    );
    let copy = s
        .store
        .get(Bucket::Reject, &key)
        .await
        .expect("get of the copy");
    assert_eq!(Digest::of(copy.body).await.sha256, hello_sha256());
    s.store
        .copy(Bucket::Quarantine, Bucket::Reject, &key)
        .await
        .expect("repeating a finished move");
    assert_eq!(
        s.store.locate(&key).await.expect("locate"),
        vec![Bucket::Reject]
    );
}

pub async fn copy_is_idempotent(s: Subject) {
    let key = RequestId::generate();
    let stored = put_hello(&s, Bucket::Quarantine, &key).await;
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("first copy");
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("repeated copy");
    // A move repeated after its delete: the copy is done, the source gone.
    s.store
        .delete(Bucket::Quarantine, &key)
        .await
        .expect("delete the source");
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("copy of a finished move");
    assert_eq!(
        s.store.head(Bucket::Perm, &key).await.expect("head"),
        stored
    );
    assert_eq!(
        s.store.locate(&key).await.expect("locate"),
        vec![Bucket::Perm]
    );
}

pub async fn copy_conflicts_on_a_different_sha256(s: Subject) {
    let key = RequestId::generate();
    put_hello(&s, Bucket::Quarantine, &key).await;
    let other = s
        .store
        .put_new(Bucket::Reject, &key, pattern_body(500, 5), meta_for(&key))
        .await
        .expect("put");
    match s.store.copy(Bucket::Quarantine, Bucket::Reject, &key).await {
        Err(StorageError::Conflict {
            existing, incoming, ..
        }) => {
            assert_eq!(existing, other.sha256);
            assert_eq!(incoming, hello_sha256());
        }
        other => panic!("copy onto a different object: expected Conflict, got {other:?}"),
    }
    assert_eq!(
        s.store
            .head(Bucket::Reject, &key)
            .await
            .expect("head")
            .sha256,
        other.sha256,
        "left unchanged"
    );
}

pub async fn copy_of_a_missing_key_is_not_found(s: Subject) {
    let key = RequestId::generate();
    assert_not_found(
        s.store.copy(Bucket::Quarantine, Bucket::Perm, &key).await,
        "copy of a missing key",
    );
    assert_not_found(
        s.store.head(Bucket::Perm, &key).await,
        "destination after a failed copy",
    );
}

pub async fn delete_is_idempotent(s: Subject) {
    let key = RequestId::generate();
    put_hello(&s, Bucket::Quarantine, &key).await;
    s.store
        .delete(Bucket::Quarantine, &key)
        .await
        .expect("delete");
    assert_not_found(
        s.store.head(Bucket::Quarantine, &key).await,
        "head after delete",
    );
    s.store
        .delete(Bucket::Quarantine, &key)
        .await
        .expect("delete again");
    s.store
        .delete(Bucket::Perm, &RequestId::generate())
        .await
        .expect("delete of a key never stored");
}

pub async fn locate_lists_buckets_in_order(s: Subject) {
    let key = RequestId::generate();
    assert_eq!(
        s.store.locate(&key).await.expect("locate"),
        Vec::<Bucket>::new()
    );
    put_hello(&s, Bucket::Reject, &key).await;
    put_hello(&s, Bucket::Quarantine, &key).await;
    assert_eq!(
        s.store.locate(&key).await.expect("locate"),
        vec![Bucket::Quarantine, Bucket::Reject]
    );
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("copy");
    assert_eq!(
        s.store.locate(&key).await.expect("locate"),
        Bucket::ALL.to_vec()
    );
}

/// The last step of a move: the quarantine copy is gone for every operation of the seam, but a link
/// handed out for it before the move still serves the payload's bytes (storage.md, "a link follows
/// its payload"); retiring again, or a key never stored, is success.
pub async fn a_quarantine_link_follows_its_payload_after_retire(s: Subject) {
    let key = RequestId::generate();
    let len = 90_000;
    s.store
        .put_new(
            Bucket::Quarantine,
            &key,
            pattern_body(len, 23),
            meta_for(&key),
        )
        .await
        .expect("put");
    let link = s.store.url(Bucket::Quarantine, &key).await.expect("url");
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("copy");
    s.store.retire(&key).await.expect("retire");
    assert_eq!(
        s.store.locate(&key).await.expect("locate"),
        vec![Bucket::Perm],
        "a retired copy is not located"
    );
    assert_not_found(
        s.store.head(Bucket::Quarantine, &key).await,
        "head after retire",
    );
    assert_not_found(
        s.store.get(Bucket::Quarantine, &key).await,
        "get after retire",
    );
    assert_eq!(
        s.download(&link).await,
        Digest {
            size: len,
            sha256: pattern_sha256(len, 23)
        },
        "the quarantine link after the move"
    );
    s.store.retire(&key).await.expect("retire again");
    s.store
        .retire(&RequestId::generate())
        .await
        .expect("retire of a key never stored");
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("a repeated copy after retire is a finished move");
    let swept = s.store.sweep_retired().await.expect("sweep");
    assert_eq!(swept.deleted, 0, "nothing retired long enough");
    assert_eq!(
        s.download(&link).await.sha256,
        pattern_sha256(len, 23),
        "a sweep before the link's time is up keeps it serving"
    );
    assert_eq!(
        s.store.locate(&key).await.expect("locate"),
        vec![Bucket::Perm]
    );
}

pub async fn url_is_refused_for_reject(s: Subject) {
    let key = RequestId::generate();
    put_hello(&s, Bucket::Reject, &key).await;
    let url = s.store.url(Bucket::Reject, &key).await;
    assert!(
        matches!(url, Err(StorageError::NoUrlForReject)),
        "url for reject: {url:?}"
    );
}

pub async fn url_downloads_the_same_bytes(s: Subject) {
    let key = RequestId::generate();
    let len = 200_000;
    s.store
        .put_new(
            Bucket::Quarantine,
            &key,
            pattern_body(len, 11),
            meta_for(&key),
        )
        .await
        .expect("put");
    let url = s.store.url(Bucket::Quarantine, &key).await.expect("url");
    assert!(
        !url.contains("/download/") || url.contains(key.as_str()),
        "URL names the key: {url}"
    );
    assert_eq!(
        s.download(&url).await,
        Digest {
            size: len,
            sha256: pattern_sha256(len, 11)
        }
    );
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("copy");
    let url = s.store.url(Bucket::Perm, &key).await.expect("url");
    assert_eq!(s.download(&url).await.sha256, pattern_sha256(len, 11));
}

/// The pipeline's default `allowed_urls` (pipeline.md) with the link's own origin as ingress's
/// public URL: the localdisk pattern, and the upstream S3 pattern, whose AWS hosts a local S3 server
/// cannot have (the link is also checked with its origin swapped for an AWS path-style one).
fn passes_default_allow_list(url: &str) -> bool {
    use crate::links::{localdisk_url_pattern, with_origin, S3_PRESIGNED_PATTERN};
    let Some(path_start) = url
        .split_once("://")
        .map(|(scheme, rest)| scheme.len() + 3 + rest.find(['/', '?']).unwrap_or(rest.len()))
    else {
        return false;
    };
    let allowed = regex::RegexSet::new([
        S3_PRESIGNED_PATTERN.to_owned(),
        localdisk_url_pattern(&url[..path_start]),
    ])
    .expect("the default patterns compile");
    let on_aws = with_origin(url, "https://s3.us-east-1.amazonaws.com");
    allowed.is_match(url) || on_aws.is_some_and(|u| allowed.is_match(&u))
}

pub async fn links_pass_the_default_allow_list(s: Subject) {
    let key = RequestId::generate();
    put_hello(&s, Bucket::Quarantine, &key).await;
    s.store
        .copy(Bucket::Quarantine, Bucket::Perm, &key)
        .await
        .expect("copy");
    for bucket in [Bucket::Quarantine, Bucket::Perm] {
        let url = s.store.url(bucket, &key).await.expect("url");
        assert!(
            passes_default_allow_list(&url),
            "a {} link fails the default allowed_urls: {url}",
            bucket.as_str()
        );
        assert!(!url.contains("x-id="), "no x-id in the link: {url}");
        assert_eq!(s.download(&url).await.sha256, hello_sha256(), "{url}");
    }
}

pub async fn concurrent_put_new_lets_exactly_one_win(s: Subject) {
    const WRITERS: u64 = 6;
    let key = RequestId::generate();
    let store = Arc::clone(&s.store);
    let writes = (0..WRITERS).map(|seed| {
        let (store, key) = (Arc::clone(&store), key.clone());
        tokio::spawn(async move {
            let meta = meta_for(&key);
            (
                seed,
                store
                    .put_new(
                        Bucket::Quarantine,
                        &key,
                        pattern_body(200_000, 100 + seed),
                        meta,
                    )
                    .await,
            )
        })
    });
    let mut winners = Vec::new();
    for write in futures::future::join_all(writes).await {
        match write.expect("writer task") {
            (seed, Ok(_)) => winners.push(seed),
            (_, Err(StorageError::AlreadyExists { .. })) => {}
            (_, Err(e)) => panic!("a losing writer must get AlreadyExists, got {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent put_new wins: {winners:?}"
    );
    let object = s.store.get(Bucket::Quarantine, &key).await.expect("get");
    assert_eq!(
        Digest::of(object.body).await.sha256,
        pattern_sha256(200_000, 100 + winners[0])
    );
}

pub async fn check_passes(s: Subject) {
    s.store.check().await.expect("check() on healthy storage");
}
