//! Every way ingress refuses a request, and the one table that turns each into its HTTP status,
//! message and headers (ingress.md's checks; the body is spec/README.md's "Error body").
//!
//! Call sites name *what* went wrong; the status, `Retry-After` and whether the connection closes
//! are chosen here only, so two paths that hit the same storage failure cannot answer differently.

use std::time::Duration;

use http::StatusCode;
use intake_core::RequestId;
use intake_http::ApiError;
use intake_storage::StorageError;

use crate::upload::BodyAbort;

/// `Retry-After` seconds when a dependency (storage, the bus) is down or ingress is stopping.
const DEPENDENCY_RETRY_AFTER: u32 = 30;
/// `Retry-After` seconds when a concurrency limit is reached: a slot frees within seconds.
const SLOT_RETRY_AFTER: u32 = 5;
/// `Retry-After` seconds when the backlog is full: a few seconds of the system's finishing rate.
const ADMISSION_RETRY_AFTER: u32 = 2;

/// Why a request is refused.
#[derive(Debug)]
pub enum Refused<'a> {
    /// The request is malformed (a part, a parameter, the request id): 400.
    Malformed(String),
    /// The organization is on the deny list: 403.
    DeniedOrg(&'a str),
    /// A download link whose signature or expiry does not verify: 403.
    LinkDenied,
    /// Downloads are not served by ingress in this configuration: 404.
    DownloadsElsewhere,
    /// The tracker knows no payload with this id, or not for this tenant: 404.
    UnknownPayload(&'a RequestId),
    /// The body did not start or stalled: 408, and the connection closes.
    BodyStalled(String),
    /// A client-chosen request id that is already taken: 409 (a retry after a lost 202 treats
    /// it as done).
    AlreadyUploaded(&'a RequestId),
    /// The request or a part is larger than its limit: 413, and the connection closes (the rest
    /// of the body is not read).
    TooLarge(String),
    /// The file part's type names no service this ingress accepts: 415.
    UnsupportedType(String),
    /// The tracker cannot be asked: 502.
    TrackerUnreachable,
    /// Ingress is stopping: 503.
    ShuttingDown,
    /// The backlog waiting for verdicts is at its limit (ingress.md, "Admission"): 503.
    Backlog { backlog: u64, limit: u64 },
    /// This client address has its most uploads in flight: 503.
    ClientBusy { limit: usize },
    /// The process has its most uploads in flight: 503.
    Busy { limit: usize },
    /// The bus did not acknowledge the announce: 503. `kept` says whether the payload stays.
    BusDown { kept: bool },
    /// Object storage failed while receiving an upload (by the kind of its error, below).
    Storage(&'a StorageError),
    /// Object storage failed while serving a download link: 404 when the payload left the
    /// buckets it is served from (rejected or deleted), else 503.
    Download(&'a StorageError),
    /// The request body ended or broke while streaming (by the kind of abort, below).
    Body(&'a BodyAbort),
}

impl From<Refused<'_>> for ApiError {
    fn from(refused: Refused<'_>) -> Self {
        match refused {
            Refused::Malformed(message) => ApiError::bad_request(message),
            Refused::DeniedOrg(org) => ApiError::forbidden(format!(
                "uploads from organization {org} are refused; contact support"
            )),
            Refused::LinkDenied => {
                ApiError::forbidden("the download link is invalid or has expired")
            }
            Refused::DownloadsElsewhere => {
                ApiError::not_found("downloads are served by the object store, not by ingress")
            }
            Refused::UnknownPayload(id) => {
                ApiError::not_found(format!("no payload with request id {id} is known"))
            }
            Refused::BodyStalled(message) => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, message).closing()
            }
            Refused::AlreadyUploaded(id) => ApiError::conflict(format!(
                "a payload with request id {id} was already uploaded; a retry after a lost answer can treat this as done"
            )),
            Refused::TooLarge(message) => ApiError::too_large(message).closing(),
            Refused::UnsupportedType(message) => ApiError::unsupported_media_type(message),
            Refused::TrackerUnreachable => {
                ApiError::bad_gateway("the payload tracker is unreachable; retry later")
            }
            Refused::ShuttingDown => ApiError::unavailable(
                "ingress is shutting down; retry shortly",
                DEPENDENCY_RETRY_AFTER,
            ),
            Refused::Backlog { backlog, limit } => ApiError::unavailable(
                format!(
                    "{backlog} uploads are waiting for validation or being received (the limit is {limit}); retry shortly"
                ),
                ADMISSION_RETRY_AFTER,
            ),
            Refused::ClientBusy { limit } => ApiError::unavailable(
                format!("this client already has {limit} uploads in flight; retry when one ends"),
                SLOT_RETRY_AFTER,
            ),
            Refused::Busy { limit } => ApiError::unavailable(
                format!("more than {limit} uploads are in flight; retry shortly"),
                SLOT_RETRY_AFTER,
            ),
            Refused::BusDown { kept } => ApiError::unavailable(
                if kept {
                    "the message bus did not acknowledge the announce; retry later"
                } else {
                    "the message bus did not acknowledge the announce; nothing was kept, retry later"
                },
                DEPENDENCY_RETRY_AFTER,
            ),
            Refused::Storage(e) => storage(e),
            Refused::Download(StorageError::NotFound { key, .. }) => ApiError::not_found(format!(
                "payload {key} was rejected or deleted; it is no longer served"
            )),
            Refused::Download(e) => {
                tracing::warn!(error = %e, "download failed");
                ApiError::unavailable(
                    "payload storage is unavailable; retry later",
                    DEPENDENCY_RETRY_AFTER,
                )
            }
            Refused::Body(abort) => body(abort),
        }
    }
}

/// Storage failures while receiving an upload, by kind. Details go to the log, not to the
/// client. A full disk says so: the operator has to free space, the client only has to come back
/// later.
fn storage(e: &StorageError) -> ApiError {
    match e {
        StorageError::AlreadyExists { key, .. } | StorageError::Conflict { key, .. } => {
            ApiError::conflict(format!(
                "a payload with request id {key} was already uploaded; a retry after a lost answer can treat this as done"
            ))
        }
        StorageError::Body(io) => match BodyAbort::find(io) {
            Some(abort) => body(abort),
            None => ApiError::bad_request(format!("reading the file part failed: {io}")),
        },
        e if e.is_no_space() => {
            tracing::error!(error = %e, "payload storage is full; uploads are refused until space returns");
            ApiError::unavailable(
                "payload storage is full; nothing was kept, retry later",
                DEPENDENCY_RETRY_AFTER,
            )
        }
        e => {
            tracing::warn!(error = %e, "storage unavailable");
            ApiError::unavailable(
                "payload storage is unavailable; nothing was kept, retry later",
                DEPENDENCY_RETRY_AFTER,
            )
        }
    }
}

/// A body that broke while streaming. Every one but a malformed part closes the connection: the
/// rest of the body is not read.
fn body(abort: &BodyAbort) -> ApiError {
    match abort {
        BodyAbort::TooLarge { .. } => ApiError::too_large(abort.to_string()).closing(),
        BodyAbort::Idle(_) => {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, abort.to_string()).closing()
        }
        // Nobody reads this answer; it is counted and logged.
        BodyAbort::ClientGone(_) => ApiError::bad_request(abort.to_string()).closing(),
        BodyAbort::Malformed(_) => ApiError::bad_request(abort.to_string()),
        BodyAbort::Framing { .. } => ApiError::bad_request(abort.to_string()).closing(),
    }
}

/// The 408 for a body that did not start within `idle`.
pub(crate) fn body_did_not_start(idle: Duration) -> Refused<'static> {
    Refused::BodyStalled(format!("the request body did not start within {idle:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(refused: Refused<'_>) -> (u16, bool, Option<String>) {
        let e = ApiError::from(refused);
        let retry_after = e
            .headers
            .iter()
            .find(|(name, _)| name == http::header::RETRY_AFTER)
            .map(|(_, v)| v.to_str().unwrap_or_default().to_owned());
        (e.status.as_u16(), e.close, retry_after)
    }

    #[test]
    fn every_unavailable_answer_says_when_to_come_back() {
        let io = std::io::Error::other("disk");
        let down = StorageError::io("writing", io);
        let full = StorageError::io(
            "writing",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        for refused in [
            Refused::ShuttingDown,
            Refused::Backlog {
                backlog: 10,
                limit: 10,
            },
            Refused::ClientBusy { limit: 2 },
            Refused::Busy { limit: 2 },
            Refused::BusDown { kept: false },
            Refused::Storage(&down),
            Refused::Storage(&full),
        ] {
            let what = format!("{refused:?}");
            let (status, _, retry_after) = answer(refused);
            assert_eq!(status, 503, "{what}");
            assert!(retry_after.is_some(), "{what}");
        }
    }

    #[test]
    fn storage_errors_map_by_kind() {
        let id = RequestId::generate();
        let exists = StorageError::AlreadyExists {
            bucket: "q".into(),
            key: id.to_string(),
        };
        assert_eq!(answer(Refused::Storage(&exists)).0, 409);
        let gone = StorageError::NotFound {
            bucket: "p".into(),
            key: id.to_string(),
        };
        assert_eq!(answer(Refused::Download(&gone)).0, 404);
        assert_eq!(answer(Refused::Storage(&gone)).0, 503);
        let broken = StorageError::Body(std::io::Error::other("reset"));
        assert_eq!(answer(Refused::Storage(&broken)).0, 400);
        let full = StorageError::io("w", std::io::Error::from(std::io::ErrorKind::StorageFull));
        let e = ApiError::from(Refused::Storage(&full));
        assert!(e.message.contains("full"), "{}", e.message);
    }

    #[test]
    fn refusals_that_leave_the_body_unread_close_the_connection() {
        assert_eq!(answer(Refused::TooLarge("x".into())), (413, true, None));
        assert_eq!(
            answer(body_did_not_start(Duration::from_secs(1))),
            (408, true, None)
        );
        assert_eq!(answer(Refused::Malformed("x".into())), (400, false, None));
    }
}
