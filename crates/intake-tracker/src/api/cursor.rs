//! Opaque cursors: base64url JSON of the last row's sort value and id, bound to the query's sort and
//! filters by a fingerprint, so a cursor from another query is refused (400).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use intake_http::ApiError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::params::Params;
use crate::model::{Keyset, SortValue};

#[derive(Serialize, Deserialize)]
struct Wire {
    k: String,
    i: i64,
    f: String,
}

/// A short digest of the sort and of the filters named in `filter_names` that `p` holds.
pub fn fingerprint(p: &Params, filter_names: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for name in ["sort_by", "sort_dir"].iter().chain(filter_names) {
        let value = p.get(*name).map(|v| v.trim()).unwrap_or("");
        hasher.update(name.as_bytes());
        hasher.update([0x1F]);
        hasher.update(value.as_bytes());
        hasher.update([0x1E]);
    }
    hex::encode(&hasher.finalize()[..8])
}

pub fn encode(keyset: &Keyset, fingerprint: &str) -> String {
    let k = match &keyset.value {
        SortValue::Text(t) => t.clone(),
        SortValue::Time(t) => intake_core::time::format(*t),
    };
    let wire = Wire {
        k,
        i: keyset.id,
        f: fingerprint.to_owned(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default())
}

pub fn decode(text: &str, fingerprint: &str, sort_is_time: bool) -> Result<Keyset, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("parameter cursor: {why}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| bad("not a cursor this API issued"))?;
    let wire: Wire =
        serde_json::from_slice(&bytes).map_err(|_| bad("not a cursor this API issued"))?;
    if wire.f != fingerprint {
        return Err(bad(
            "it was issued for another sort_by, sort_dir or filters",
        ));
    }
    let value = if sort_is_time {
        SortValue::Time(
            crate::check::parse_date(&wire.k).ok_or_else(|| bad("not a cursor this API issued"))?,
        )
    } else {
        SortValue::Text(wire.k)
    };
    Ok(Keyset { value, id: wire.i })
}
