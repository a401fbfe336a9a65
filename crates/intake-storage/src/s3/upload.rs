//! Create-only streaming writes to S3.
//!
//! A body that fits in one part goes up as one `PutObject`. A larger one is a multipart upload of
//! 8 MiB parts: one part uploads while the next fills, so at most two part buffers are held. The
//! final write (`PutObject` or `CompleteMultipartUpload`) carries `If-None-Match: *`, so the store
//! refuses it when the key exists; a store that answers 501 to that header is remembered, and from
//! then on the head pre-check (and ingress's check 7) is the only guard, as storage.md allows. On any
//! failure, the multipart upload is aborted, so nothing becomes visible, also when the writing future
//! is dropped.
//!
//! A multipart upload's size and SHA-256 are known only once the body ends, after the object was
//! created: they are set by a server-side copy of the object onto itself that replaces the metadata
//! (storage.md allows this). If that copy fails, the object is deleted.

use std::sync::atomic::Ordering;

use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::errors;
use super::S3Store;
use crate::stream::digesting;
use crate::{Bucket, ByteStream, ObjectMeta, StorageError};

/// Multipart part size (storage.md: parts of 8 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Cuts a body into parts of exactly [`PART_SIZE`] bytes (the last one shorter).
struct PartReader {
    body: ByteStream,
    leftover: Bytes,
    ended: bool,
}

impl PartReader {
    /// The next part, and whether the body has ended with it. An empty part means the body ended
    /// exactly at the previous part's end.
    async fn next_part(&mut self) -> Result<(Bytes, bool), std::io::Error> {
        let mut part = BytesMut::with_capacity(PART_SIZE);
        while part.len() < PART_SIZE {
            if self.leftover.is_empty() {
                match self.body.next().await {
                    Some(chunk) => self.leftover = chunk?,
                    None => {
                        self.ended = true;
                        break;
                    }
                }
            }
            let take = self.leftover.len().min(PART_SIZE - part.len());
            part.extend_from_slice(&self.leftover.split_to(take));
        }
        Ok((part.freeze(), self.ended))
    }
}

/// What must be undone if the write stops before it has finished: dropped while armed, it aborts the
/// multipart upload, or deletes an object completed without its size and SHA-256.
struct Cleanup {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    state: CleanupState,
}

enum CleanupState {
    Nothing,
    AbortUpload(String),
    DeleteObject,
}

impl Cleanup {
    async fn run(&mut self) {
        let state = std::mem::replace(&mut self.state, CleanupState::Nothing);
        cleanup(&self.client, &self.bucket, &self.key, state).await;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, CleanupState::Nothing);
        if matches!(state, CleanupState::Nothing) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, bucket, key) =
                (self.client.clone(), self.bucket.clone(), self.key.clone());
            runtime.spawn(async move { cleanup(&client, &bucket, &key, state).await });
        }
    }
}

async fn cleanup(client: &aws_sdk_s3::Client, bucket: &str, key: &str, state: CleanupState) {
    match state {
        CleanupState::Nothing => {}
        CleanupState::AbortUpload(upload_id) => {
            let aborted = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(bucket, error = %errors::backend("abort", e), "could not abort a multipart upload");
            }
        }
        CleanupState::DeleteObject => {
            if let Err(e) = client.delete_object().bucket(bucket).key(key).send().await {
                tracing::warn!(bucket, error = %errors::backend("delete", e), "could not delete a half-written object");
            }
        }
    }
}

/// `put_new` on S3; see the module documentation.
pub(super) async fn put_new(
    store: &S3Store,
    bucket: Bucket,
    key: &str,
    body: ByteStream,
    mut meta: ObjectMeta,
) -> Result<ObjectMeta, StorageError> {
    let name = store.name(bucket).to_owned();
    let (body, digest) = digesting(body);
    let mut reader = PartReader {
        body,
        leftover: Bytes::new(),
        ended: false,
    };
    let (first, ended) = reader.next_part().await.map_err(StorageError::Body)?;
    if ended {
        let (size, sha256) = digest.finish();
        meta.size = size;
        meta.sha256 = sha256;
        put_object(store, &name, key, first, &meta).await?;
        return Ok(meta);
    }

    let mut create = store
        .client
        .create_multipart_upload()
        .bucket(&name)
        .key(key)
        .set_metadata(Some(user_metadata(&meta)));
    if !meta.content_type.is_empty() {
        create = create.content_type(&meta.content_type);
    }
    let created = create
        .send()
        .await
        .map_err(|e| errors::backend("create multipart upload", e))?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| {
            StorageError::backend("create multipart upload", "the answer has no upload id")
        })?
        .to_owned();
    let mut cleanup = Cleanup {
        client: store.client.clone(),
        bucket: name.clone(),
        key: key.to_owned(),
        state: CleanupState::AbortUpload(upload_id.clone()),
    };

    let result = upload_parts(store, &name, key, &upload_id, &mut reader, first).await;
    let parts = match result {
        Ok(parts) => parts,
        Err(e) => {
            cleanup.run().await;
            return Err(e);
        }
    };
    if let Err(e) = complete(store, &name, key, &upload_id, parts).await {
        cleanup.run().await;
        return Err(e);
    }
    cleanup.state = CleanupState::DeleteObject;

    let (size, sha256) = digest.finish();
    meta.size = size;
    meta.sha256 = sha256;
    let mut replace = store
        .client
        .copy_object()
        .bucket(&name)
        .key(key)
        .copy_source(format!("{name}/{key}"))
        .metadata_directive(MetadataDirective::Replace)
        .set_metadata(Some(user_metadata(&meta)));
    if !meta.content_type.is_empty() {
        replace = replace.content_type(&meta.content_type);
    }
    if let Err(e) = replace.send().await {
        cleanup.run().await;
        return Err(errors::backend(
            "record size and sha256 (copy onto itself)",
            e,
        ));
    }
    cleanup.state = CleanupState::Nothing;
    Ok(meta)
}

/// Uploads `first` and every following part, one uploading while the next fills.
async fn upload_parts(
    store: &S3Store,
    name: &str,
    key: &str,
    upload_id: &str,
    reader: &mut PartReader,
    first: Bytes,
) -> Result<Vec<CompletedPart>, StorageError> {
    let mut parts = Vec::new();
    let mut current = first;
    let mut number = 1;
    loop {
        let upload = upload_part(store, name, key, upload_id, number, current);
        let next = async { reader.next_part().await.map_err(StorageError::Body) };
        let (part, (next, ended)) = tokio::try_join!(upload, next)?;
        parts.push(part);
        if next.is_empty() {
            return Ok(parts);
        }
        number += 1;
        if ended {
            parts.push(upload_part(store, name, key, upload_id, number, next).await?);
            return Ok(parts);
        }
        current = next;
    }
}

async fn upload_part(
    store: &S3Store,
    name: &str,
    key: &str,
    upload_id: &str,
    number: i32,
    bytes: Bytes,
) -> Result<CompletedPart, StorageError> {
    let length = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let out = store
        .client
        .upload_part()
        .bucket(name)
        .key(key)
        .upload_id(upload_id)
        .part_number(number)
        .content_length(length)
        .body(SdkBody::from(bytes))
        .send()
        .await
        .map_err(|e| errors::backend(format!("upload part {number}"), e))?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(out.e_tag().map(str::to_owned))
        .build())
}

async fn complete(
    store: &S3Store,
    name: &str,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<(), StorageError> {
    let conditional = store.conditional_writes.load(Ordering::Relaxed);
    let request = |conditional: bool| {
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts.clone()))
            .build();
        let call = store
            .client
            .complete_multipart_upload()
            .bucket(name)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(done);
        if conditional {
            call.if_none_match("*")
        } else {
            call
        }
    };
    match request(conditional).send().await {
        Ok(_) => Ok(()),
        Err(e) if errors::is_precondition_failed(&e) => Err(store.already_exists(name, key)),
        Err(e) if conditional && errors::is_not_implemented(&e) => {
            store.conditional_writes_unsupported();
            request(false)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| errors::backend("complete multipart upload", e))
        }
        Err(e) => Err(errors::backend("complete multipart upload", e)),
    }
}

async fn put_object(
    store: &S3Store,
    name: &str,
    key: &str,
    bytes: Bytes,
    meta: &ObjectMeta,
) -> Result<(), StorageError> {
    let conditional = store.conditional_writes.load(Ordering::Relaxed);
    let request = |conditional: bool| {
        let length = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let mut call = store
            .client
            .put_object()
            .bucket(name)
            .key(key)
            .content_length(length)
            .body(SdkBody::from(bytes.clone()))
            .set_metadata(Some(user_metadata(meta)));
        if !meta.content_type.is_empty() {
            call = call.content_type(&meta.content_type);
        }
        if conditional {
            call = call.if_none_match("*");
        }
        call
    };
    match request(conditional).send().await {
        Ok(_) => Ok(()),
        Err(e) if errors::is_precondition_failed(&e) => Err(store.already_exists(name, key)),
        Err(e) if conditional && errors::is_not_implemented(&e) => {
            store.conditional_writes_unsupported();
            request(false)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| errors::backend("put object", e))
        }
        Err(e) => Err(errors::backend("put object", e)),
    }
}

/// The metadata as S3 user metadata (`x-amz-meta-<key>`).
pub(super) fn user_metadata(meta: &ObjectMeta) -> std::collections::HashMap<String, String> {
    meta.to_map().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(chunks: Vec<usize>) -> PartReader {
        let stream =
            futures::stream::iter(chunks.into_iter().map(|n| Ok(Bytes::from(vec![7u8; n]))));
        PartReader {
            body: Box::pin(stream),
            leftover: Bytes::new(),
            ended: false,
        }
    }

    #[tokio::test]
    async fn parts_are_cut_at_the_part_size() {
        let mut r = reader(vec![PART_SIZE + 10, PART_SIZE - 20, 5]);
        let (a, ended) = r.next_part().await.expect("part");
        assert_eq!((a.len(), ended), (PART_SIZE, false));
        let (b, ended) = r.next_part().await.expect("part");
        assert_eq!((b.len(), ended), (PART_SIZE - 5, true));
    }

    #[tokio::test]
    async fn a_body_ending_on_a_boundary_gives_an_empty_last_part() {
        let mut r = reader(vec![PART_SIZE]);
        assert_eq!(r.next_part().await.expect("part").0.len(), PART_SIZE);
        let (last, ended) = r.next_part().await.expect("part");
        assert!(last.is_empty() && ended);
    }
}
