//! Reading S3 SDK failures: the HTTP status they carry, whether the store could not be reached, and a
//! log-ready message (never credentials).

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::StorageError;

/// The HTTP status of the store's answer, when there was one.
pub(crate) fn status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The S3 error code (`NoSuchKey`, `PreconditionFailed`, …), when the answer had one.
pub(crate) fn code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// No answer at all: connection refused, DNS, timeouts.
pub(crate) fn unreachable<E>(err: &SdkError<E>) -> bool {
    matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
    )
}

/// The store says the object is not there (404, or `NoSuchKey` with another status).
pub(crate) fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    status(err) == Some(404) || matches!(code(err), Some("NoSuchKey" | "NotFound"))
}

/// A conditional write lost: the key exists (412), or a concurrent conditional write is under way (409).
pub(crate) fn is_precondition_failed<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    matches!(status(err), Some(412 | 409))
        || matches!(
            code(err),
            Some("PreconditionFailed" | "ConditionalRequestConflict")
        )
}

/// The store does not implement a header we sent (`If-None-Match` on older S3-compatible stores).
pub(crate) fn is_not_implemented<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    status(err) == Some(501) || code(err) == Some("NotImplemented")
}

/// Any other failure, as an unavailable-store error naming the operation.
pub(crate) fn backend<E>(context: impl Into<String>, err: SdkError<E>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StorageError::backend(context, DisplayErrorContext(err))
}
