//! Checks 9–12: each multipart part in arrival order, the file part streamed into quarantine, then the
//! announce hand-off and the answer. Any failure after the first stored byte deletes the object first.

use std::time::Instant;

use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http::{header, StatusCode};
use intake_core::messages::Announce;
use intake_core::{content_type, status, time, Identity, RequestId};
use intake_http::ApiError;
use intake_storage::meta::user_agent_value;
use intake_storage::{Bucket, ObjectMeta, StorageError};
use serde_json::{json, Map, Value};

use super::body::{multer_abort, BodyAbort, FramingGuard, IdleBody, LimitedPart};
use super::{discard, upload_object, Outcome, UNSUPPORTED};
use crate::refusals::Refused;
use crate::state::AppState;
use crate::statuses::{StatusPublisher, Subject};

/// Largest ignored part (the metadata part has `INGRESS_MAX_METADATA_BYTES`).
pub const MAX_SMALL_PART: usize = 65_536;
/// Most parts in one request.
pub const MAX_PARTS: usize = 16;
/// How long `stale_timestamp` lies after the received time.
const STALE_AFTER_DAYS: i64 = 30;

pub(super) struct Upload<'a> {
    pub state: &'a AppState,
    pub request_id: &'a RequestId,
    pub identity: Option<&'a Identity>,
    pub user_agent: &'a str,
    pub received: DateTime<Utc>,
}

/// A file part safely in quarantine.
struct Stored {
    meta: ObjectMeta,
}

/// A refusal: the error, and whether an object must be deleted first.
struct Refusal {
    error: ApiError,
    service: String,
}

impl<'a> Upload<'a> {
    pub async fn receive(&self, body: axum::body::Body, boundary: String) -> Outcome {
        let config = &self.state.config;
        let stream = FramingGuard::new(
            IdleBody::new(body, config.body_idle_timeout),
            &boundary,
            config.max_preamble_bytes,
            config.max_part_header_bytes,
        );
        let multipart = multer::Multipart::new(stream, boundary);
        let mut stored: Option<Stored> = None;
        let result = self.read_parts(multipart, &mut stored).await;
        match result {
            Ok(metadata) => match stored {
                Some(file)
                    if super::test_connection::is_client_test_upload(
                        file.meta.size,
                        metadata.as_ref(),
                    ) =>
                {
                    discard(self.state, self.request_id).await;
                    super::client_test_answer(self.request_id.as_str(), self.identity)
                }
                Some(file) => self.finish(file, metadata).await,
                None => self.refuse(Refusal {
                    error: ApiError::from(Refused::Malformed(
                        "no file part: send the payload in a multipart part named file or upload"
                            .into(),
                    )),
                    service: UNSUPPORTED.to_owned(),
                }),
            },
            Err(refusal) => {
                if stored.is_some() {
                    discard(self.state, self.request_id).await;
                }
                self.refuse(refusal)
            }
        }
    }

    fn refuse(&self, r: Refusal) -> Outcome {
        Outcome::refused(
            r.error.with_request_id(self.request_id.as_str()),
            &r.service,
        )
    }

    /// Reads every part; returns the metadata object if one was sent.
    async fn read_parts(
        &self,
        mut multipart: multer::Multipart<'static>,
        stored: &mut Option<Stored>,
    ) -> Result<Option<Map<String, Value>>, Refusal> {
        let mut metadata = None;
        let mut count = 0usize;
        let service_label = |stored: &Option<Stored>| {
            stored
                .as_ref()
                .map(|s| s.meta.service.clone())
                .unwrap_or_else(|| UNSUPPORTED.to_owned())
        };
        loop {
            let field = match multipart.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(metadata),
                Err(e) => return Err(abort_refusal(multer_abort(e), service_label(stored))),
            };
            count += 1;
            if count > MAX_PARTS {
                return Err(Refusal {
                    error: ApiError::from(Refused::Malformed(format!(
                        "the request has more than {MAX_PARTS} parts"
                    ))),
                    service: service_label(stored),
                });
            }
            let name = field.name().unwrap_or("").to_owned();
            match name.as_str() {
                "file" | "upload" => {
                    if stored.is_some() {
                        return Err(Refusal {
                            error: ApiError::from(Refused::Malformed(format!(
                                "a second file part ({name:?}) was sent; exactly one part named file or upload is allowed"
                            ))),
                            service: service_label(stored),
                        });
                    }
                    *stored = Some(self.store_file(field).await?);
                }
                "metadata" => {
                    let limit = self.state.config.max_metadata_bytes;
                    let bytes =
                        read_small(field, "metadata", limit)
                            .await
                            .map_err(|e| Refusal {
                                error: e,
                                service: service_label(stored),
                            })?;
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(Value::Object(m)) => metadata = Some(m),
                        _ => {
                            return Err(Refusal {
                                error: ApiError::from(Refused::Malformed(
                                    "metadata is not a JSON object".into(),
                                )),
                                service: service_label(stored),
                            })
                        }
                    }
                }
                other => {
                    read_small(field, other, MAX_SMALL_PART)
                        .await
                        .map_err(|e| Refusal {
                            error: e,
                            service: service_label(stored),
                        })?;
                }
            }
        }
    }

    /// Streams the file part into quarantine under the request id.
    async fn store_file(&self, field: multer::Field<'static>) -> Result<Stored, Refusal> {
        let content_type = field
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/plain")
            .to_owned();
        let st = content_type::resolve(&content_type, &self.state.config.valid_services).map_err(
            |e| Refusal {
                error: Refused::UnsupportedType(e.to_string()).into(),
                service: UNSUPPORTED.to_owned(),
            },
        )?;
        let limit = self.state.config.limit_for(&st.service);
        let meta = ObjectMeta {
            request_id: self.request_id.to_string(),
            account: self.identity.map(|i| i.account.clone()).unwrap_or_default(),
            org_id: self.identity.map(|i| i.org_id.clone()).unwrap_or_default(),
            service: st.service.clone(),
            category: st.category.clone(),
            content_type,
            size: 0,
            sha256: String::new(),
            user_agent: user_agent_value(self.user_agent),
            received_at: time::format(self.received),
        };
        let body = Box::pin(LimitedPart::new(field, limit, st.service.clone()));
        let metrics = &self.state.metrics;
        metrics.in_flight.inc();
        let started = Instant::now();
        let result = self
            .state
            .store
            .put_new(Bucket::Quarantine, self.request_id, body, meta)
            .await;
        metrics.in_flight.dec();
        metrics
            .stage_seconds
            .observe(started.elapsed().as_secs_f64());
        let service = st.service.clone();
        match result {
            Ok(meta) => Ok(Stored { meta }),
            Err(StorageError::AlreadyExists { .. }) => Err(Refusal {
                error: Refused::AlreadyUploaded(self.request_id).into(),
                service,
            }),
            Err(e) => Err(Refusal {
                error: Refused::Storage(&e).into(),
                service,
            }),
        }
    }

    /// Check 11 and 12: hand the announce off, answer, then send the statuses.
    async fn finish(&self, file: Stored, metadata: Option<Map<String, Value>>) -> Outcome {
        let state = self.state;
        let meta = file.meta;
        let had_metadata = metadata.is_some();
        let metadata = metadata.map(|mut m| {
            m.insert("reporter".into(), json!("ingress"));
            let stale = self.received + chrono::Duration::days(STALE_AFTER_DAYS);
            m.insert("stale_timestamp".into(), json!(time::format(stale)));
            m
        });
        let url = match state.store.url(Bucket::Quarantine, self.request_id).await {
            Ok(u) => u,
            Err(e) => {
                discard(state, self.request_id).await;
                return self.refuse(Refusal {
                    error: Refused::Storage(&e).into(),
                    service: meta.service.clone(),
                });
            }
        };
        let org_id = meta.org_id.clone();
        let announce = Announce {
            account: meta.account.clone(),
            rh_account: meta.account.clone(),
            principal: org_id.clone(),
            org_id: org_id.clone(),
            request_id: meta.request_id.clone(),
            payload_id: meta.request_id.clone(),
            hash: meta.request_id.clone(),
            size: meta.size,
            service: meta.service.clone(),
            category: meta.category.clone(),
            content_type: meta.content_type.clone(),
            b64_identity: self.identity.map(|i| i.raw.clone()),
            metadata,
            url,
            timestamp: meta.received_at.clone(),
        };
        if let Err(e) = crate::announce::hand_off_recorded(state, &announce).await {
            tracing::warn!(request_id = %self.request_id, error = %e, "announce hand-off failed");
            discard(state, self.request_id).await;
            return self.refuse(Refusal {
                error: Refused::BusDown { kept: false }.into(),
                service: meta.service.clone(),
            });
        }
        let acked = Utc::now();
        state
            .metrics
            .upload_bytes
            .with_label_values(&[&meta.service])
            .observe(meta.size as f64);
        tracing::info!(request_id = %self.request_id, service = %meta.service, org_id = %org_id, size = meta.size, "upload accepted");

        let subject = Subject {
            request_id: meta.request_id.clone(),
            org_id,
            account: meta.account.clone(),
        };
        state.statuses.spawn(vec![
            StatusPublisher::status(
                &subject,
                status::RECEIVED,
                "payload received by ingress".into(),
                time::format(self.received),
            ),
            StatusPublisher::status(
                &subject,
                status::PROCESSING,
                format!("announced to {}", meta.service),
                time::format(acked),
            ),
        ]);

        let code = if state.config.legacy_advisor_201 && meta.service == "advisor" && !had_metadata
        {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        let body = json!({"request_id": self.request_id.as_str(), "upload": upload_object(self.identity, true)});
        let mut response = (code, Json(body)).into_response();
        if let Ok(v) = self.request_id.as_str().parse() {
            response.headers_mut().insert(super::REQUEST_ID_HEADER, v);
        }
        Outcome {
            response,
            service: meta.service,
        }
    }
}

fn abort_refusal(abort: BodyAbort, service: String) -> Refusal {
    Refusal {
        error: Refused::Body(&abort).into(),
        service,
    }
}

/// Reads a small part (metadata or an ignored part) up to `limit` bytes: 413 past it, and the
/// connection closes, as the rest of the body is not read.
async fn read_small(
    mut field: multer::Field<'static>,
    name: &str,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| abort_refusal(multer_abort(e), String::new()).error)?;
        if buf.len() + chunk.len() > limit {
            return Err(Refused::TooLarge(format!("the {name} part exceeds {limit} bytes")).into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}
