//! The identity rules of spec/README.md applied to request headers: 401 when required and missing,
//! 400 when malformed (also when not required: a header that is sent is still checked).

use http::HeaderMap;
use intake_core::Identity;

use crate::ApiError;

/// The caller's identity, `None` only when identity is not required and no header was sent.
pub fn from_headers(headers: &HeaderMap, required: bool) -> Result<Option<Identity>, ApiError> {
    let Some(value) = headers.get(intake_core::identity::HEADER) else {
        return if required {
            Err(ApiError::unauthorized(
                "the x-rh-identity header is required",
            ))
        } else {
            Ok(None)
        };
    };
    let text = value.to_str().map_err(|_| {
        ApiError::bad_request("x-rh-identity is not valid base64 (non-ASCII bytes in the header)")
    })?;
    Identity::decode(text)
        .map(Some)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_missing_is_401_and_bad_is_400() {
        let empty = HeaderMap::new();
        assert_eq!(from_headers(&empty, true).unwrap_err().status, 401);
        assert!(from_headers(&empty, false).unwrap().is_none());
        let mut bad = HeaderMap::new();
        bad.insert("x-rh-identity", "!!!".parse().unwrap());
        assert_eq!(from_headers(&bad, false).unwrap_err().status, 400);
        let mut good = HeaderMap::new();
        good.insert("x-rh-identity", Identity::encode("1", "2").parse().unwrap());
        assert_eq!(from_headers(&good, true).unwrap().unwrap().org_id, "2");
    }
}
