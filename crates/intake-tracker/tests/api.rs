//! Black-box tests of the HTTP API (spec/tracker.md "HTTP API"): every parameter, the answers and
//! the shared error body, through the router.

use crate::common;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use common::{assert_error, associate, get, identity, Harness};
use intake_tracker::store::testsuite::{status, with};
use serde_json::{json, Value};

fn t0() -> DateTime<Utc> {
    (Utc::now() - Duration::hours(2)).trunc_subsecs(6)
}

/// The upstream duration fixture, on payload `pup-1` (org 54321).
async fn puptoo(h: &Harness) {
    let base = t0();
    let at = |ms: i64| base + Duration::milliseconds(ms);
    h.store
        .store_batch(&[
            status("pup-1", "puptoo", None, "received", at(0)),
            status("pup-1", "puptoo", Some("inventory"), "processing", at(6979)),
            status("pup-1", "puptoo", None, "processing", at(9970)),
            status("pup-1", "puptoo", Some("inventory"), "success", at(12604)),
            status("pup-1", "puptoo", Some("engine"), "processing", at(13003)),
            status("pup-1", "puptoo", Some("engine"), "success", at(13604)),
        ])
        .await
        .unwrap();
}

/// 25 payloads over three orgs, with inventory and system ids on some.
async fn many(h: &Harness, base: DateTime<Utc>) {
    let mut batch = Vec::new();
    for i in 0..25i64 {
        let org = ["111", "222", "333"][(i % 3) as usize];
        let date = intake_core::time::format(base + Duration::seconds(i));
        batch.push(with(json!({"request_id": format!("pay-{i:02}"), "service": "ingress", "status": "received",
            "date": date, "org_id": org, "account": format!("a{}", i % 2), "inventory_id": format!("inv-{i:02}"),
            "system_id": format!("sys-{i:02}")})));
        if i % 4 == 0 {
            batch.push(with(json!({"request_id": format!("pay-{i:02}"), "service": "advisor", "status": "error",
                "date": intake_core::time::format(base + Duration::seconds(i) + Duration::milliseconds(5)),
                "status_msg": "rules engine timed out"})));
        }
    }
    h.store.store_batch(&batch).await.unwrap();
}

#[tokio::test]
async fn duration_map_matches_the_upstream_fixture_on_both_prefixes() {
    let h = Harness::new().await;
    puptoo(&h).await;
    let router = h.router(false);
    for prefix in ["/api/v1", "/v1"] {
        let (code, body) = get(&router, &format!("{prefix}/payloads/pup-1"), None).await;
        assert_eq!(code, 200);
        let d = &body["duration"];
        assert_eq!(d["puptoo:undefined"], "00:00:09.970000");
        assert_eq!(d["puptoo:inventory"], "00:00:05.625000");
        assert_eq!(d["puptoo:engine"], "00:00:00.601000");
        assert_eq!(d["total_time_in_services"], "00:00:16.196000");
        assert_eq!(d["total_time"], "00:00:13.604000");
        assert_eq!(body["data"].as_array().unwrap().len(), 6);
    }
}

#[tokio::test]
async fn payload_statuses_sort_newest_first_and_verbosity_selects_keys() {
    let h = Harness::new().await;
    puptoo(&h).await;
    let router = h.router(false);
    let (_, body) = get(&router, "/api/v1/payloads/pup-1", None).await;
    let rows = body["data"].as_array().unwrap();
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "request_id",
            "account",
            "org_id",
            "inventory_id",
            "system_id",
            "service",
            "source",
            "status",
            "status_msg",
            "date",
            "created_at"
        ]
    );
    assert_eq!(rows[0]["source"], "engine");
    assert_eq!(rows[5]["status"], "received");
    assert_eq!(
        rows[5]["source"], "",
        "an absent source is shown as an empty string"
    );
    assert!(rows[0]["date"].as_str().unwrap() > rows[1]["date"].as_str().unwrap());
    let (_, body) = get(&router, "/api/v1/payloads/pup-1?sort_dir=asc", None).await;
    assert_eq!(body["data"][0]["status"], "received");
    let (_, body) = get(
        &router,
        "/api/v1/payloads/pup-1?sort_by=source&sort_dir=asc",
        None,
    )
    .await;
    let sources: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["", "", "engine", "engine", "inventory", "inventory"]
    );
    for sort in ["service", "status", "status_msg", "date", "created_at"] {
        let (code, _) = get(
            &router,
            &format!("/api/v1/payloads/pup-1?sort_by={sort}"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{sort}");
    }
    let (_, body) = get(&router, "/api/v1/payloads/pup-1?verbosity=1", None).await;
    let keys: Vec<&str> = body["data"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["service", "status", "inventory_id", "date", "status_msg"]
    );
    let (_, body2) = get(&router, "/api/v1/payloads/pup-1?verbosity=2", None).await;
    let keys: Vec<&str> = body2["data"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["service", "status", "date"]);
    assert_eq!(
        body["duration"], body2["duration"],
        "durations ignore verbosity"
    );
    let date = body2["data"][0]["date"].as_str().unwrap();
    assert!(
        date.ends_with('Z') && date.len() == 27,
        "output time form: {date}"
    );
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_error_shape() {
    let h = Harness::new().await;
    puptoo(&h).await;
    let router = h.router(false);
    for (uri, name) in [
        ("/api/v1/payloads/pup-1?verbosity=3", "verbosity"),
        ("/api/v1/payloads/pup-1?sort_by=nope", "sort_by"),
        ("/api/v1/payloads/pup-1?sort_dir=up", "sort_dir"),
        ("/api/v1/payloads?page_size=0", "page_size"),
        ("/api/v1/payloads?page_size=51", "page_size"),
        ("/api/v1/payloads?page=-1", "page"),
        ("/api/v1/payloads?sort_by=status", "sort_by"),
        ("/api/v1/payloads?created_at_gt=yesterday", "created_at_gt"),
        ("/api/v1/payloads?cursor=garbage", "cursor"),
        ("/api/v1/payloads?count=maybe", "count"),
        ("/api/v1/statuses?sort_by=org_id", "sort_by"),
        ("/api/v1/statuses?date_lte=2024-13-01", "date_lte"),
        ("/api/v1/statuses?page_size=x", "page_size"),
        ("/api/v1/stats?window=30d", "window"),
        ("/api/v1/stats?window=soon", "window"),
    ] {
        let (code, body) = get(&router, uri, None).await;
        assert_eq!(code, 400, "{uri}: {body}");
        assert_error(&body, 400, name);
    }
    let (_, body) = get(&router, "/api/v1/payloads/pup-1?verbosity=9", None).await;
    assert_eq!(
        body["request_id"], "pup-1",
        "per-payload errors carry the request id"
    );
    let (code, body) = get(&router, "/api/v1/payloads/not_valid!", None).await;
    assert_eq!(code, 400);
    assert_error(&body, 400, "request_id");
    let (code, _) = get(&router, "/api/v1/payloads?unknown=1", None).await;
    assert_eq!(code, 200, "unknown parameters are ignored");
}

#[tokio::test]
async fn unknown_request_id_is_404() {
    let h = Harness::new().await;
    let router = h.router(false);
    let (code, body) = get(&router, "/api/v1/payloads/0123456789abcdef", None).await;
    assert_eq!(code, 404);
    assert_error(&body, 404, "0123456789abcdef");
    assert_eq!(body["request_id"], "0123456789abcdef");
    let (code, _) = get(&router, "/v1/payloads/0123456789abcdef/events", None).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn an_estimated_count_is_given_only_on_request_and_says_so() {
    let h = Harness::new().await;
    many(&h, t0()).await;
    let router = h.router(false);
    let (_, exact) = get(&router, "/api/v1/payloads", None).await;
    assert_eq!(exact["count"], 25);
    assert!(
        exact.get("count_exact").is_none(),
        "the spec's envelope when no estimate was asked for"
    );
    let (code, estimated) = get(&router, "/api/v1/payloads?count=estimate", None).await;
    assert_eq!(code, 200, "{estimated}");
    assert_eq!(estimated["count_exact"], false);
    assert!(estimated["count"].as_i64().unwrap() >= 25);
    assert_eq!(estimated["data"], exact["data"]);
    assert_eq!(
        estimated["next_cursor"], exact["next_cursor"],
        "the cursor does not depend on how the rows are counted"
    );
    let (_, filtered) = get(&router, "/api/v1/payloads?count=estimate&org_id=111", None).await;
    assert_eq!(
        (&filtered["count"], &filtered["count_exact"]),
        (&json!(9), &json!(true))
    );
    let (_, exact_asked) = get(&router, "/api/v1/payloads?count=exact", None).await;
    assert_eq!(exact_asked["count"], 25);
}

#[tokio::test]
async fn the_status_list_estimates_its_count_on_request_too() {
    let h = Harness::new().await;
    many(&h, t0()).await;
    let router = h.router(false);
    let (_, exact) = get(&router, "/api/v1/statuses", None).await;
    assert_eq!(exact["count"], 32);
    assert!(exact.get("count_exact").is_none(), "the spec's envelope");
    let (code, estimated) = get(&router, "/api/v1/statuses?count=estimate", None).await;
    assert_eq!(code, 200, "{estimated}");
    assert_eq!(estimated["count_exact"], false);
    assert!(estimated["count"].as_i64().unwrap() >= 32);
    assert_eq!(estimated["data"], exact["data"]);
    assert_eq!(estimated["next_cursor"], exact["next_cursor"]);
    let (_, filtered) = get(
        &router,
        "/api/v1/statuses?count=estimate&service=advisor",
        None,
    )
    .await;
    assert_eq!(
        (&filtered["count"], &filtered["count_exact"]),
        (&json!(7), &json!(true))
    );
    let (code, body) = get(&router, "/api/v1/statuses?count=roughly", None).await;
    assert_eq!(code, 400);
    assert_error(&body, 400, "count");
}

#[tokio::test]
async fn payload_list_counts_pages_and_filters() {
    let h = Harness::new().await;
    let base = t0();
    many(&h, base).await;
    let router = h.router(false);
    let (code, body) = get(&router, "/api/v1/payloads", None).await;
    assert_eq!(code, 200);
    assert_eq!(body["count"], 25);
    assert!(body["elapsed"].is_f64());
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0]["request_id"], "pay-24");
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "request_id",
            "account",
            "org_id",
            "inventory_id",
            "system_id",
            "created_at",
            "last_service",
            "last_status",
            "last_status_at"
        ]
    );
    assert!(body["next_cursor"].is_string());
    let (_, body) = get(&router, "/api/v1/payloads?page=2&page_size=10", None).await;
    assert_eq!(body["count"], 25);
    assert_eq!(body["data"].as_array().unwrap().len(), 5);
    assert!(
        body.get("next_cursor").is_none(),
        "no next_cursor on the last page"
    );
    // Cursor paging walks every row once.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/payloads?page_size=7&sort_by=created_at&sort_dir=asc".to_string();
    loop {
        let (code, body) = get(&router, &uri, None).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["count"], 25);
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["request_id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => {
                uri = format!(
                    "/api/v1/payloads?page_size=7&sort_by=created_at&sort_dir=asc&cursor={c}"
                )
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..25).map(|i| format!("pay-{i:02}")).collect::<Vec<_>>()
    );
    let (_, body) = get(&router, "/api/v1/payloads?page_size=3", None).await;
    let cursor = body["next_cursor"].as_str().unwrap();
    let (code, body) = get(
        &router,
        &format!("/api/v1/payloads?page_size=3&sort_dir=asc&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(code, 400);
    assert_error(&body, 400, "cursor");
    let (code, _) = get(
        &router,
        &format!("/api/v1/payloads?page_size=3&account=a1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(code, 400, "a cursor is bound to the filters");
    let (code, _) = get(
        &router,
        &format!("/api/v1/payloads?page=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(code, 400, "cursor with page > 0");
    for (query, count) in [
        ("account=a1", 12),
        ("org_id=222", 8),
        ("inventory_id=inv-03", 1),
        ("system_id=sys-04", 1),
        ("service=advisor", 7),
        ("status=error", 7),
        ("service=ADVISOR&status=error", 7),
        ("service=ingress&status=error", 0),
        ("status=received", 25),
    ] {
        let (code, body) = get(&router, &format!("/api/v1/payloads?{query}"), None).await;
        assert_eq!(
            (code.as_u16(), body["count"].as_i64().unwrap()),
            (200, count),
            "{query}"
        );
    }
    let mid = intake_core::time::format(base + Duration::seconds(10));
    for (op, count) in [("lt", 10), ("lte", 11), ("gt", 14), ("gte", 15)] {
        let (_, body) = get(
            &router,
            &format!("/api/v1/payloads?created_at_{op}={mid}"),
            None,
        )
        .await;
        assert_eq!(body["count"], count, "created_at_{op}");
    }
    for (sort, first) in [
        ("account", "a0"),
        ("org_id", "111"),
        ("inventory_id", "inv-00"),
        ("system_id", "sys-00"),
    ] {
        let (_, body) = get(
            &router,
            &format!("/api/v1/payloads?sort_by={sort}&sort_dir=asc"),
            None,
        )
        .await;
        assert_eq!(body["data"][0][sort], first, "sort_by={sort}");
    }
}

#[tokio::test]
async fn status_list_includes_sourceless_and_filters() {
    let h = Harness::new().await;
    puptoo(&h).await;
    let base = t0();
    many(&h, base).await;
    let router = h.router(false);
    let (_, body) = get(&router, "/api/v1/statuses?request_id=pup-1", None).await;
    assert_eq!(body["count"], 6);
    let keys: Vec<&str> = body["data"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "request_id",
            "service",
            "source",
            "status",
            "status_msg",
            "date",
            "created_at"
        ]
    );
    assert_eq!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["source"] == "")
            .count(),
        2
    );
    for (query, count) in [
        ("service=puptoo", 6),
        ("source=inventory", 2),
        ("status=error", 7),
        ("status_msg=rules%20engine%20timed%20out", 7),
        ("service=advisor&status=error", 7),
    ] {
        let (_, body) = get(&router, &format!("/api/v1/statuses?{query}"), None).await;
        assert_eq!(body["count"], count, "{query}");
    }
    let mid = intake_core::time::format(base + Duration::seconds(10));
    let (_, body) = get(
        &router,
        &format!("/api/v1/statuses?service=ingress&date_gte={mid}"),
        None,
    )
    .await;
    assert_eq!(body["count"], 15);
    let (_, body) = get(
        &router,
        &format!("/api/v1/statuses?service=ingress&date_lt={mid}"),
        None,
    )
    .await;
    assert_eq!(body["count"], 10);
    let (_, body) = get(
        &router,
        "/api/v1/statuses?created_at_gt=2000-01-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(body["count"], 38);
    let (_, body) = get(
        &router,
        "/api/v1/statuses?sort_by=request_id&sort_dir=asc&page_size=1",
        None,
    )
    .await;
    assert_eq!(body["data"][0]["request_id"], "pay-00");
    let mut seen = 0;
    let mut uri = "/api/v1/statuses?sort_by=service&page_size=9".to_string();
    loop {
        let (_, body) = get(&router, &uri, None).await;
        seen += body["data"].as_array().unwrap().len();
        match body["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/statuses?sort_by=service&page_size=9&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, 38);
}

#[tokio::test]
async fn tenants_see_only_their_org_and_associates_see_all() {
    let h = Harness::new().await;
    many(&h, t0()).await;
    let router = h.router(true);
    let (code, body) = get(&router, "/api/v1/payloads", None).await;
    assert_eq!(code, 401);
    assert_error(&body, 401, "x-rh-identity");
    let (code, _) = get(&router, "/api/v1/payloads", Some("not base64!")).await;
    assert_eq!(code, 400);
    let org = identity("111");
    let (_, body) = get(&router, "/api/v1/payloads", Some(&org)).await;
    assert_eq!(body["count"], 9);
    assert!(body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["org_id"] == "111"));
    let (code, _) = get(&router, "/api/v1/payloads/pay-00", Some(&org)).await;
    assert_eq!(code, 200);
    let (code, body) = get(&router, "/api/v1/payloads/pay-01", Some(&org)).await;
    assert_eq!(code, 404, "another org's payload is not found");
    assert_eq!(body["request_id"], "pay-01");
    let (code, _) = get(&router, "/api/v1/payloads/pay-01/events", Some(&org)).await;
    assert_eq!(code, 404);
    let (_, body) = get(&router, "/api/v1/statuses", Some(&org)).await;
    assert_eq!(body["count"], 9 + 3);
    let (_, body) = get(&router, "/api/v1/stats", Some(&org)).await;
    assert_eq!(body["services"]["ingress"]["payloads"], 9);
    let (_, body) = get(&router, "/api/v1/payloads", Some(&associate())).await;
    assert_eq!(body["count"], 25);
    let (_, body) = get(&router, "/api/v1/stats", Some(&associate())).await;
    assert_eq!(body["services"]["ingress"]["payloads"], 25);
    let open = h.router(false);
    let (_, body) = get(&open, "/api/v1/payloads", Some(&org)).await;
    assert_eq!(
        body["count"], 25,
        "nothing is filtered when identity is not required"
    );
}

#[tokio::test]
async fn a_request_id_reused_by_another_org_shows_each_org_only_its_own_statuses() {
    let h = Harness::new().await;
    let base = t0();
    let at = |s: i64| intake_core::time::format(base + Duration::seconds(s));
    h.store
        .store_batch(&[
            with(
                json!({"request_id": "reused", "service": "ingress", "status": "received",
                "date": at(0), "org_id": "111", "status_msg": "first tenant"}),
            ),
            with(
                json!({"request_id": "reused", "service": "advisor", "status": "success",
                "date": at(1), "status_msg": "first tenant"}),
            ),
        ])
        .await
        .unwrap();
    // The object expired; another org's upload gets the same request id.
    h.store
        .store_batch(&[
            with(
                json!({"request_id": "reused", "service": "ingress", "status": "received",
                "date": at(3600), "org_id": "222", "status_msg": "second tenant"}),
            ),
            with(
                json!({"request_id": "reused", "service": "advisor", "status": "error",
                "date": at(3601), "status_msg": "second tenant"}),
            ),
        ])
        .await
        .unwrap();
    let router = h.router(true);
    for (org, mine) in [("111", "first tenant"), ("222", "second tenant")] {
        let id = identity(org);
        let (code, body) = get(&router, "/api/v1/payloads/reused", Some(&id)).await;
        assert_eq!(code, 200, "org {org}: {body}");
        let rows = body["data"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "org {org}: {body}");
        assert!(
            rows.iter()
                .all(|r| r["status_msg"] == mine && r["org_id"] == org),
            "org {org} sees only its own statuses: {body}"
        );
        let (_, body) = get(&router, "/api/v1/statuses?request_id=reused", Some(&id)).await;
        assert_eq!(body["count"], 2, "org {org}: {body}");
        let (_, body) = get(&router, "/api/v1/payloads", Some(&id)).await;
        assert_eq!(body["count"], 1, "org {org}: {body}");
        assert_eq!(body["data"][0]["org_id"], org);
    }
    let (_, body) = get(&router, "/api/v1/payloads/reused", Some(&identity("333"))).await;
    assert_eq!(body["status"], 404);
    let (_, body) = get(&router, "/api/v1/payloads/reused", Some(&associate())).await;
    assert_eq!(
        body["data"][0]["org_id"], "222",
        "an associate gets the newest: {body}"
    );
    let (_, body) = get(&router, "/api/v1/payloads", Some(&associate())).await;
    assert_eq!(body["count"], 2);
}

#[tokio::test]
async fn stats_report_counts_rates_and_percentiles() {
    let h = Harness::new().await;
    let base = t0();
    let mut batch = Vec::new();
    for (i, (end, secs)) in [("success", 2), ("success", 4), ("error", 6), ("", 0)]
        .iter()
        .enumerate()
    {
        let id = format!("st-{i}");
        batch.push(status(&id, "advisor", None, "received", base));
        if !end.is_empty() {
            batch.push(status(
                &id,
                "advisor",
                None,
                end,
                base + Duration::seconds(*secs),
            ));
        }
    }
    h.store.store_batch(&batch).await.unwrap();
    let router = h.router(false);
    let (code, body) = get(&router, "/api/v1/stats", None).await;
    assert_eq!(code, 200);
    assert_eq!(body["window"], "24h");
    let from = DateTime::parse_from_rfc3339(body["from"].as_str().unwrap()).unwrap();
    let to = DateTime::parse_from_rfc3339(body["to"].as_str().unwrap()).unwrap();
    assert_eq!((to - from).num_hours(), 24);
    let advisor = &body["services"]["advisor"];
    assert_eq!(
        advisor["statuses"],
        json!({"error": 1, "received": 4, "success": 2})
    );
    assert_eq!(advisor["payloads"], 4);
    assert_eq!(advisor["finished"], 3);
    assert_eq!(advisor["success_rate"], 0.6667);
    assert_eq!(advisor["duration_p50_seconds"], 4.0);
    assert_eq!(advisor["duration_p95_seconds"], 5.8);
    let (_, body) = get(&router, "/api/v1/stats?window=30m", None).await;
    assert_eq!(
        body["services"],
        json!({}),
        "the statuses are two hours old"
    );
    let (_, body) = get(&router, "/api/v1/stats?window=7d&service=ingress", None).await;
    assert_eq!(body["services"], json!({}));
}

#[tokio::test]
async fn stats_without_finished_payloads_give_null_rates() {
    let h = Harness::new().await;
    h.store
        .store_batch(&[status("only-1", "advisor", None, "received", t0())])
        .await
        .unwrap();
    let (_, body) = get(&h.router(false), "/api/v1/stats", None).await;
    assert_eq!(body["services"]["advisor"]["success_rate"], Value::Null);
    assert_eq!(
        body["services"]["advisor"]["duration_p50_seconds"],
        Value::Null
    );
}

#[tokio::test]
async fn other_methods_get_405_naming_the_allowed_ones() {
    let h = Harness::new().await;
    let router = h.router(false);
    for uri in [
        "/api/v1/payloads",
        "/v1/payloads/0123456789abcdef",
        "/api/v1/statuses",
        "/health",
        "/metrics",
        "/",
    ] {
        let response = tower::ServiceExt::oneshot(
            router.clone(),
            http::Request::post(uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 405, "{uri}");
        assert_eq!(
            response.headers().get(http::header::ALLOW).unwrap(),
            "GET, HEAD",
            "{uri}"
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_error(&body, 405, "allowed methods: GET, HEAD");
    }
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let h = Harness::new().await;
    let router = h.router(false);
    for uri in ["/health", "/readyz", "/api/v1/health", "/v1/health"] {
        let (code, body) = get(&router, uri, None).await;
        assert_eq!(code, 200, "{uri}");
        assert_eq!(
            body,
            json!({"status": "ok", "checks": {"database": "ok", "bus": "ok"}})
        );
    }
    let (code, body) = get(&router, "/livez", None).await;
    assert_eq!((code.as_u16(), body), (200, json!({"status": "ok"})));
    let (code, body) = get(&router, "/api/v1/openapi.json", None).await;
    assert_eq!(code, 200);
    assert!(body["openapi"].as_str().unwrap().starts_with("3."));
    assert!(body["paths"]["/payloads/{request_id}"].is_object());
    let response = tower::ServiceExt::oneshot(
        router.clone(),
        http::Request::get("/metrics")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let text = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(
            "payload_tracker_api_responses_total{code=\"200\",route=\"/api/v1/openapi.json\"} 1"
        ),
        "{text}"
    );
    let (code, body) = get(&router, "/api/v1/nothing-here", None).await;
    assert_eq!(code, 404);
    assert_error(&body, 404, "/api/v1/nothing-here");
}

#[tokio::test]
async fn health_is_503_while_the_database_is_down() {
    let h = Harness::new().await;
    let faulty = intake_tracker::store::faults::FaultyStore::new(h.store.clone());
    let faults = faulty.faults();
    let router = h.router_with(std::sync::Arc::new(faulty), false);
    faults.set_down(true);
    let (code, body) = get(&router, "/health", None).await;
    assert_eq!(code, 503);
    assert_ne!(body["checks"]["database"], "ok");
    let (code, body) = get(&router, "/api/v1/payloads", None).await;
    assert_eq!(code, 503);
    assert_error(&body, 503, "database");
    faults.set_down(false);
    let (code, _) = get(&router, "/health", None).await;
    assert_eq!(code, 200);
}
