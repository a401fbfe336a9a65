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

/// Messages the fast path answers for and messages it leaves to the `Value` path: `check` must
/// answer each exactly as the `Value` path alone does.
#[test]
fn the_fast_path_answers_as_the_value_path() {
    let w = window();
    let date = intake_core::time::format(Utc::now() - Duration::hours(1));
    let long_msg = "é".repeat(5000);
    let messages = [
        format!(
            r#"{{"service":"ingress","request_id":"abc-1","status":"received","date":"{date}"}}"#
        ),
        format!(
            r#"{{"service":" Ingress ","source":"  ","request_id":"abc-1","status":"RECEIVED","date":"{date}","account":12345,"org_id":-54321,"status_msg":"{long_msg}"}}"#
        ),
        format!(
            r#"{{"service":"puptoo","source":"inventory","request_id":"abc-1","status":"success","date":"{date}","account":"1","org_id":"2","inventory_id":"i","system_id":"s","status_msg":"ok \"quoted\" \u00e9\n"}}"#
        ),
        format!(
            r#"{{"serv\u0069ce":"a","request_id":"r","status":"s","date":"{date}","extra":{{"nested":[1,2.5,true,null]}},"more":1e3}}"#
        ),
        format!(
            r#" {{ "service" : "a" , "request_id" : "r" , "status" : "s" , "date" : "{date}" , "source" : null }} "#
        ),
        format!(r#"{{"service":"a","request_id":"r","status":"s","date":" {date} "}}"#),
        format!(
            r#"{{"service":"{}","request_id":"r","status":"s","date":"{date}"}}"#,
            "é".repeat(128)
        ),
        format!(r#"{{"service":"a","request_id":"r","status":"s","date":"{date}","account":1.5}}"#),
        format!(
            r#"{{"service":"a","request_id":"r","status":"s","date":"{date}","account":true}}"#
        ),
        format!(
            r#"{{"service":"a","request_id":"r","status":"s","date":"{date}","status_msg":5}}"#
        ),
        format!(r#"{{"service":"a","request_id":"r","status":"s","date":"{date}","service":"b"}}"#),
        format!(r#"{{"service":"a","request_id":"r","status":"s","date":"{date}","extra":1e400}}"#),
        format!(
            r#"{{"service":"a","request_id":"r","status":"s","date":"{date}","extra":"\ud800"}}"#
        ),
        format!(r#"{{"service":"a","request_id":"r","status":"s","date":"{date}"}} trailing"#),
        format!(r#"{{"service":"a","request_id":"r/x","status":"s","date":"{date}"}}"#),
        format!(r#"{{"service":"","request_id":"r","status":"s","date":"{date}"}}"#),
        format!(
            r#"{{"service":"{}","request_id":"r","status":"s","date":"{date}"}}"#,
            "x".repeat(129)
        ),
        format!(
            r#"{{"service":"a","request_id":"r","status":"s","date":"{date}","org_id":"{}"}}"#,
            "1".repeat(257)
        ),
        r#"{"service":"a","request_id":"r","status":"s","date":"2024-05-02T09:30:12Z"}"#.to_owned(),
        r#"{"service":"a","request_id":"r","status":"s","date":"yesterday"}"#.to_owned(),
        r#"{"service":"a","request_id":"r","status":"s"}"#.to_owned(),
        "[1,2]".to_owned(),
        "null".to_owned(),
        "{not json".to_owned(),
    ];
    let mut fast_answers = 0;
    for message in &messages {
        let value = message.as_bytes();
        assert_eq!(check(value, w), check_value(value, w), "{message}");
        if let Some(status) = fast::check(value, w) {
            fast_answers += 1;
            assert_eq!(Ok(status), check_value(value, w), "{message}");
        }
    }
    // The messages that pass (the first seven) take the fast path.
    assert_eq!(fast_answers, 7);
    let mut bytes = messages[0].clone().into_bytes();
    bytes[14] = 0xFF;
    assert_eq!(check(&bytes, w), check_value(&bytes, w));
}

#[test]
fn the_common_date_form_reads_as_parse_date_reads_it() {
    for form in [
        "2024-05-02T09:30:12Z",
        "2024-05-02T09:30:12.1Z",
        "2024-05-02T09:30:12.123456Z",
        "2024-05-02T09:30:12.123456789Z",
        "2024-02-29T23:59:59.999999999Z",
    ] {
        assert_eq!(fast::parse_common_date(form), parse_date(form), "{form}");
        assert!(fast::parse_common_date(form).is_some(), "{form}");
    }
    for other in [
        "2024-05-02T09:30:12.Z",
        "2024-05-02T09:30:12.1234567890Z",
        "2024-05-02T09:30:60Z",
        "2023-02-29T09:30:12Z",
        "2024-05-02T24:00:00Z",
        "2024-05-02 09:30:12Z",
        "2024-05-02T09:30:12+00:00",
        "2024-05-02T09:30:1xZ",
        "２０２4-05-02T09:30:12Z",
    ] {
        assert_eq!(fast::parse_common_date(other), None, "{other}");
    }
}

#[test]
fn the_dedup_key_writes_the_date_as_the_time_format_does() {
    let mut t = DateTime::parse_from_rfc3339("1999-12-31T23:59:59.999999Z")
        .unwrap()
        .to_utc();
    for _ in 0..2000 {
        let mut buffer = [0u8; 27];
        assert_eq!(
            format_micros(t, &mut buffer),
            Some(intake_core::time::format(t).as_str())
        );
        t += Duration::microseconds(7_777_777_777_123);
    }
    let key = dedup_key("r", "s", None, "ok", "", t);
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "r\x1fs\x1f\x1fok\x1f\x1f{}",
        intake_core::time::format(t)
    ));
    assert_eq!(key, hex::encode(hasher.finalize()));
}
