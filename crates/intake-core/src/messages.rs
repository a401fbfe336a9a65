//! Bus message bodies with the exact field names of spec/messages.md.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Header naming the service on announce and available messages.
pub const HEADER_SERVICE: &str = "service";
/// Header naming the request id on announce and available messages.
pub const HEADER_REQUEST_ID: &str = "request_id";

/// Ingress → validator: a new payload in quarantine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announce {
    pub account: String,
    pub rh_account: String,
    pub principal: String,
    pub org_id: String,
    pub request_id: String,
    pub payload_id: String,
    pub hash: String,
    pub size: u64,
    pub service: String,
    pub category: String,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    pub url: String,
    pub timestamp: String,
}

/// Ingress → platform apps: a validated payload in perm. The seed-era keys are always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Available {
    pub request_id: String,
    pub payload_id: String,
    pub account: String,
    pub rh_account: String,
    pub principal: String,
    pub rh_principal: String,
    pub org_id: String,
    pub service: String,
    pub category: String,
    pub content_type: String,
    pub size: u64,
    pub b64_identity: Option<String>,
    pub id: Option<String>,
    pub satellite_managed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Map<String, Value>>,
    pub url: String,
    pub timestamp: String,
}

/// Anyone → tracker: one step of a payload's journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PayloadStatus {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_msg: Option<String>,
    pub date: String,
}

pub mod validation;
pub use validation::{ValidationError, ValidationResponse, Verdict};
