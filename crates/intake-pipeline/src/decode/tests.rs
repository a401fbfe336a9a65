//! The decode rules in order, and the filter.

use std::time::Duration;

use intake_bus::{Header, ReceivedMessage};
use serde_json::json;

use super::*;
use crate::config::ConsumerConfig;

fn msg(value: &[u8]) -> ReceivedMessage {
    ReceivedMessage {
        topic: "platform.upload.available".into(),
        partition: 0,
        offset: 1,
        key: None,
        headers: vec![],
        value: value.to_vec(),
        timestamp_ms: None,
    }
}

fn reason(value: serde_json::Value, format: Format) -> &'static str {
    decode(&msg(value.to_string().as_bytes()), format)
        .unwrap_err()
        .reason
}

fn base() -> serde_json::Value {
    json!({"url": "http://x/y", "timestamp": "2024-05-02T09:30:12.123456Z", "org_id": "54321", "request_id": "abc-1"})
}

fn with(k: &str, v: serde_json::Value) -> serde_json::Value {
    let mut b = base();
    b[k] = v;
    b
}

#[test]
fn each_rule_names_its_reason() {
    assert_eq!(
        decode(&msg(b""), Format::Ccx).unwrap_err().reason,
        "empty_value"
    );
    assert_eq!(
        decode(&msg(b"null"), Format::Ccx).unwrap_err().reason,
        "empty_value"
    );
    assert_eq!(
        decode(&msg(b"{"), Format::Ccx).unwrap_err().reason,
        "invalid_json"
    );
    assert_eq!(
        decode(&msg(b"\xff"), Format::Ccx).unwrap_err().reason,
        "invalid_json"
    );
    assert_eq!(reason(json!([1]), Format::Ccx), "not_an_object");
    assert_eq!(reason(with("url", json!("")), Format::Ccx), "missing_field");
    assert_eq!(reason(json!({"url": "u"}), Format::Ccx), "missing_field");
    assert_eq!(reason(with("url", json!(5)), Format::Ccx), "bad_field_type");
    assert_eq!(
        reason(with("account", json!([])), Format::Ccx),
        "bad_field_type"
    );
    assert_eq!(
        reason(with("size", json!(-1)), Format::Ccx),
        "bad_field_type"
    );
    assert_eq!(
        reason(with("b64_identity", json!("!!!")), Format::Ccx),
        "bad_identity"
    );
    assert_eq!(
        reason(with("org_id", json!("")), Format::Insights),
        "missing_org_id"
    );
    assert_eq!(
        reason(with("org_id", json!("org-a")), Format::Ccx),
        "bad_org_id"
    );
    assert_eq!(
        reason(with("org_id", json!("4294967296")), Format::Ccx),
        "bad_org_id"
    );
    assert!(decode(
        &msg(with("org_id", json!("org-a")).to_string().as_bytes()),
        Format::Insights
    )
    .is_ok());
    assert_eq!(
        reason(with("request_id", json!("a/b")), Format::Ccx),
        "bad_request_id"
    );
    assert_eq!(
        reason(with("timestamp", json!("yesterday")), Format::Ccx),
        "bad_timestamp"
    );
    assert_eq!(
        reason(
            with("timestamp", json!("2024-05-02T09:30:12.1234567891Z")),
            Format::Ccx
        ),
        "bad_timestamp"
    );
}

#[test]
fn identity_wins_over_the_body() {
    let ident = intake_core::Identity::encode("12345", "54321");
    let mut b = with("b64_identity", json!(ident));
    b["org_id"] = json!(999);
    b["account"] = json!(1);
    let d = decode(&msg(b.to_string().as_bytes()), Format::Ccx).unwrap();
    assert_eq!(
        (d.org_id.as_str(), d.account.as_deref()),
        ("54321", Some("12345"))
    );
    let d = decode(
        &msg(with("org_id", json!(77)).to_string().as_bytes()),
        Format::Ccx,
    )
    .unwrap();
    assert_eq!(d.org_id, "77");
}

#[test]
fn filter_by_service_and_age() {
    let config = ConsumerConfig {
        topics: vec![],
        group_id: "g".into(),
        services: vec!["openshift".into()],
        max_record_age: Duration::from_secs(3600),
        workers: 1,
        max_in_flight: 2,
        brokers: None,
        kafka: Default::default(),
    };
    let mut m = msg(base().to_string().as_bytes());
    assert_eq!(filter(&m, &config, 0), Some(Filtered::Service));
    m.headers.push(Header {
        name: "Service".into(),
        value: b"openshift".to_vec(),
    });
    m.timestamp_ms = Some(1_000_000);
    assert_eq!(
        filter(&m, &config, 1_000_000 + 3_600_001),
        Some(Filtered::TooOld)
    );
    assert_eq!(filter(&m, &config, 1_000_000 + 10), None);
    let by_body = msg(with("service", json!("openshift")).to_string().as_bytes());
    assert_ne!(filter(&by_body, &config, 0), Some(Filtered::Service));
}
