use super::*;
use chrono::Duration;

fn window() -> DateWindow {
    let now = Utc::now();
    DateWindow {
        earliest: now - Duration::days(7),
        latest: now + Duration::days(1),
    }
}

fn wide() -> DateWindow {
    DateWindow {
        earliest: DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z")
            .unwrap()
            .to_utc(),
        latest: DateTime::parse_from_rfc3339("2100-01-01T00:00:00Z")
            .unwrap()
            .to_utc(),
    }
}

fn reason(value: &str, window: DateWindow) -> &'static str {
    check(value.as_bytes(), window).unwrap_err().reason
}

#[test]
fn every_reason_in_order() {
    let w = wide();
    assert_eq!(reason("{not json", w), "invalid_json");
    assert_eq!(reason("[1,2]", w), "not_an_object");
    assert_eq!(
        reason(r#"{"service":"a","request_id":"r","status":"s"}"#, w),
        "missing_field"
    );
    assert_eq!(
        reason(
            r#"{"service":null,"request_id":"r","status":"s","date":"2024-05-02T09:30:12Z"}"#,
            w
        ),
        "missing_field"
    );
    assert_eq!(
        reason(
            r#"{"service":"","request_id":"r","status":"s","date":"2024-05-02T09:30:12Z"}"#,
            w
        ),
        "missing_field"
    );
    assert_eq!(
        reason(
            r#"{"service":"a","request_id":"r","status":"s","date":"2024-05-02T09:30:12Z","account":true}"#,
            w
        ),
        "bad_field_type"
    );
    assert_eq!(
        reason(
            r#"{"service":"a","request_id":"r","status":"s","date":"2024-05-02T09:30:12Z","status_msg":5}"#,
            w
        ),
        "bad_field_type"
    );
    assert_eq!(
        reason(
            r#"{"service":"a","request_id":"r/x","status":"s","date":"2024-05-02T09:30:12Z"}"#,
            w
        ),
        "bad_request_id"
    );
    assert_eq!(
        reason(
            r#"{"service":"a","request_id":"r","status":"s","date":"yesterday"}"#,
            w
        ),
        "bad_date"
    );
    assert_eq!(
        reason(
            r#"{"service":"a","request_id":"r","status":"s","date":"2024-05-02T09:30:12Z"}"#,
            window()
        ),
        "date_out_of_range"
    );
    let long = "x".repeat(129);
    let msg = format!(
        r#"{{"service":"{long}","request_id":"r","status":"s","date":"2024-05-02T09:30:12Z"}}"#
    );
    assert_eq!(reason(&msg, w), "field_too_long");
    let long = "1".repeat(257);
    let msg = format!(
        r#"{{"service":"a","request_id":"r","status":"s","date":"2024-05-02T09:30:12Z","org_id":"{long}"}}"#
    );
    assert_eq!(reason(&msg, w), "field_too_long");
}

#[test]
fn normalises_fields() {
    let msg = format!(
        r#"{{"service":" Ingress ","source":"  ","request_id":"abc-1","status":"RECEIVED","date":"2024-05-02 09:30:12.1234567","account":12345,"org_id":54321,"status_msg":"{}"}}"#,
        "m".repeat(5000)
    );
    let s = check(msg.as_bytes(), wide()).unwrap();
    assert_eq!(s.service, "ingress");
    assert_eq!(s.status, "received");
    assert_eq!(s.source, None);
    assert_eq!(s.account, "12345");
    assert_eq!(s.org_id, "54321");
    assert_eq!(s.status_msg.len(), 4096);
    assert_eq!(
        intake_core::time::format(s.date),
        "2024-05-02T09:30:12.123456Z"
    );
}

#[test]
fn accepted_date_forms() {
    let expect = "2024-05-02T09:30:12.123456Z";
    for form in [
        "2024-05-02T09:30:12.123456Z",
        "2024-05-02T11:30:12.123456+02:00",
        "2024-05-02T11:30:12.123456+0200",
        "2024-05-02T09:30:12.123456",
        "2024-05-02 09:30:12.123456+00:00",
        "2024-05-02 09:30:12.123456",
        "2024-05-02T09:30:12.123456789Z",
    ] {
        let parsed = parse_date(form).unwrap_or_else(|| panic!("{form} should parse"));
        assert_eq!(intake_core::time::format(parsed), expect, "{form}");
    }
    assert_eq!(
        intake_core::time::format(parse_date("2024-05-02T09:30:12").unwrap()),
        "2024-05-02T09:30:12.000000Z"
    );
    for bad in [
        "",
        "2024-05-02",
        "2024-13-02T09:30:12Z",
        "2024-05-02T09:30:12.1234567890Z",
        "02/05/2024 09:30",
    ] {
        assert!(parse_date(bad).is_none(), "{bad} should not parse");
    }
}

#[test]
fn dedup_key_uses_normalised_values() {
    let a = check(br#"{"service":"Ingress","request_id":"r","status":"ok","date":"2024-05-02T11:30:12+02:00"}"#, wide()).unwrap();
    let b = check(br#"{"service":"ingress","request_id":"r","status":"OK","date":"2024-05-02T09:30:12.000000Z","source":""}"#, wide()).unwrap();
    assert_eq!(a.dedup_key, b.dedup_key);
    let c = check(br#"{"service":"ingress","request_id":"r","status":"ok","date":"2024-05-02T09:30:12Z","status_msg":"x"}"#, wide()).unwrap();
    assert_ne!(a.dedup_key, c.dedup_key);
}
