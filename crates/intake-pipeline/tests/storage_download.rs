//! The storage downloader through the storage seam's localdisk driver (spec pipeline.md §5).

use std::path::Path;

use bytes::Bytes;
use intake_core::config::{EnvMap, StorageConfig};
use intake_core::RequestId;
use intake_pipeline::download::{Downloader, Fetch};
use intake_storage::{Bucket, ObjectMeta};

async fn store(dir: &Path) -> intake_storage::Storage {
    let config = StorageConfig::from_env(&EnvMap::new(), dir).unwrap();
    intake_storage::open(&config, "http://localhost:8080")
        .await
        .unwrap()
}

fn downloader(dir: &Path, extra: &str, storage: &intake_storage::Storage) -> Downloader {
    let yaml = format!(
        "service:\n  downloader:\n    kind: storage\n    tmp_dir: {}\n    max_archive_size: 1KiB\n{extra}  publisher: {{format: insights}}\n",
        dir.join("tmp").display()
    );
    let config = intake_pipeline::load_config_str(&yaml, dir, &EnvMap::new()).unwrap();
    Downloader::new(&config.downloader, Some(storage.store.clone())).unwrap()
}

async fn put(storage: &intake_storage::Storage, id: &str, body: &[u8]) {
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(body.to_vec()))]);
    let meta = ObjectMeta {
        request_id: id.into(),
        ..Default::default()
    };
    storage
        .store
        .put_new(
            Bucket::Perm,
            &RequestId::parse(id).unwrap(),
            Box::pin(stream),
            meta,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn fetches_by_request_id_with_the_size_rules() {
    let dir = tempfile::tempdir().unwrap();
    let storage = store(dir.path()).await;
    let d = downloader(dir.path(), "", &storage);
    put(&storage, "req-small", b"archive bytes").await;
    put(&storage, "req-big", &[1u8; 2048]).await;
    let dest = dir.path().join("out");
    let fetch = |id: &'static str| Fetch {
        url: "ignored",
        request_id: Some(id),
        declared_size: None,
    };
    assert_eq!(d.fetch(&fetch("req-small"), &dest).await.unwrap(), 13);
    assert_eq!(std::fs::read(&dest).unwrap(), b"archive bytes");
    assert_eq!(
        d.fetch(&fetch("req-big"), &dest).await.unwrap_err().reason,
        "too_large"
    );
    assert_eq!(
        d.fetch(&fetch("req-none"), &dest).await.unwrap_err().reason,
        "object_not_found"
    );
    let e = d
        .fetch(
            &Fetch {
                url: "u",
                request_id: None,
                declared_size: None,
            },
            &dest,
        )
        .await
        .unwrap_err();
    assert_eq!((e.stage.as_str(), e.reason), ("decode", "missing_field"));
}

#[tokio::test]
async fn s3_urls_must_name_an_allowed_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let storage = store(dir.path()).await;
    let d = downloader(dir.path(), "    key_from: url\n", &storage);
    put(&storage, "req-1", b"x").await;
    let dest = dir.path().join("out");
    let ok = Fetch {
        url: "s3://insights-upload-perm-test/req-1",
        request_id: None,
        declared_size: None,
    };
    assert_eq!(d.fetch(&ok, &dest).await.unwrap(), 1);
    let other = Fetch {
        url: "s3://someone-else/req-1",
        request_id: None,
        declared_size: None,
    };
    assert_eq!(
        d.fetch(&other, &dest).await.unwrap_err().reason,
        "bucket_not_allowed"
    );
}
