//! An S3 client of the test's own (aws-sdk-s3 directly) to look into the buckets intake writes.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::Client;

/// Path-style client for the test S3 server.
#[derive(Clone)]
pub struct S3 {
    client: Client,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3")
    }
}

impl S3 {
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str) -> Self {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
            .force_path_style(true)
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }

    /// The object's user metadata (`x-amz-meta-*`), or `None` when the key is absent.
    pub async fn metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> Option<std::collections::HashMap<String, String>> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Some(head.metadata().cloned().unwrap_or_default()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => None,
            Err(e) => panic!("HEAD {bucket}/{key}: {e:?}"),
        }
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> bool {
        self.metadata(bucket, key).await.is_some()
    }

    /// The object's bytes.
    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e:?}"));
        object.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// Whether `key` waits in the quarantine `bucket` for its verdict. A validated payload's
    /// quarantine copy stays for `S3_QUARANTINE_RETAIN`, marked `retired-at`, so that links already
    /// handed out keep serving; intake treats it as gone.
    pub async fn awaiting(&self, bucket: &str, key: &str) -> bool {
        self.metadata(bucket, key)
            .await
            .is_some_and(|m| !m.contains_key("retired-at"))
    }

    /// The keys of the quarantine `bucket` that wait for a verdict ([`Self::awaiting`]).
    pub async fn awaiting_keys(&self, bucket: &str) -> Vec<String> {
        let mut waiting = Vec::new();
        for key in self.keys(bucket).await {
            if self.awaiting(bucket, &key).await {
                waiting.push(key);
            }
        }
        waiting
    }

    /// Every key in `bucket` (an absent bucket holds none). s3s-fs walks the bucket's folder to
    /// list it, and can fail a listing when an object is removed meanwhile (a move in progress);
    /// such a listing is tried again.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.list(bucket).await {
                Ok(keys) => return keys,
                Err(e) if attempt < 5 => {
                    eprintln!("listing {bucket} failed (attempt {attempt}), trying again: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("listing {bucket}: {e}"),
            }
        }
    }

    async fn list(&self, bucket: &str) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                ),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_bucket()) => break,
                Err(e) => return Err(format!("{e:?}")),
            }
        }
        Ok(keys)
    }
}
