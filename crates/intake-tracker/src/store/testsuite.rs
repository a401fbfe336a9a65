//! The status-store contract: one test per promise of [`StatusStore`], run against every driver by
//! [`status_store_contract_tests!`](crate::status_store_contract_tests) (feature `testsuite`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code behind the testsuite feature: a broken promise fails the test"
)]

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::StatusStore;
use crate::check::{check, DateWindow};
use crate::model::{
    CountMode, NewStatus, PageAt, PayloadQuery, PayloadSort, Scope, SortDir, StatusQuery,
    StatusSort, TimeRange,
};

/// A checked status built from JSON fields, dated `seconds_ago` before now.
pub fn status(
    request_id: &str,
    service: &str,
    source: Option<&str>,
    status: &str,
    date: DateTime<Utc>,
) -> NewStatus {
    let mut value = serde_json::json!({
        "request_id": request_id, "service": service, "status": status,
        "date": intake_core::time::format(date), "org_id": "54321", "account": "12345",
    });
    if let Some(source) = source {
        value["source"] = source.into();
    }
    with(value)
}

/// A checked status from any JSON object (dates must be recent).
pub fn with(value: serde_json::Value) -> NewStatus {
    let now = Utc::now();
    let window = DateWindow {
        earliest: now - Duration::days(30),
        latest: now + Duration::days(2),
    };
    check(value.to_string().as_bytes(), window).expect("fixture passes the checks")
}

fn base() -> DateTime<Utc> {
    use chrono::SubsecRound;
    (Utc::now() - Duration::hours(1)).trunc_subsecs(6)
}

pub fn payload_query(scope: Scope) -> PayloadQuery {
    PayloadQuery {
        scope,
        account: None,
        org_id: None,
        inventory_id: None,
        system_id: None,
        service: None,
        status: None,
        created_at: TimeRange::default(),
        sort_by: PayloadSort::CreatedAt,
        sort_dir: SortDir::Desc,
        page_size: 10,
        at: PageAt::Offset(0),
        count: CountMode::Exact,
    }
}

pub fn status_query() -> StatusQuery {
    StatusQuery {
        scope: Scope::All,
        service: None,
        source: None,
        status: None,
        status_msg: None,
        request_id: None,
        date: TimeRange::default(),
        created_at: TimeRange::default(),
        sort_by: StatusSort::Date,
        sort_dir: SortDir::Desc,
        page_size: 10,
        at: PageAt::Offset(0),
        count: CountMode::Exact,
    }
}

/// A redelivered or repeated status is stored once.
pub async fn duplicates_are_stored_once(store: Arc<dyn StatusStore>) {
    let t = base();
    let a = status("dup-1", "ingress", None, "received", t);
    let b = status(
        "dup-1",
        "ingress",
        None,
        "success",
        t + Duration::seconds(1),
    );
    let first = store
        .store_batch(&[a.clone(), b.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(first.stored.len(), 2);
    assert_eq!(first.duplicates, 1);
    let again = store.store_batch(&[a, b]).await.unwrap();
    assert_eq!(again.stored.len(), 0);
    assert_eq!(again.duplicates, 2);
    let p = store.payload("dup-1", &Scope::All).await.unwrap().unwrap();
    assert_eq!(store.payload_statuses(&p, None).await.unwrap().len(), 2);
}

/// Tenant fields: the first non-empty value wins; later different values are reported. A payload
/// without an org takes the first org named.
pub async fn first_non_empty_tenant_value_wins(store: Arc<dyn StatusStore>) {
    let t = base();
    let s1 = with(
        serde_json::json!({"request_id": "ten-1", "service": "ingress", "status": "received",
        "date": intake_core::time::format(t)}),
    );
    let s2 = with(
        serde_json::json!({"request_id": "ten-1", "service": "ingress", "status": "processing",
        "date": intake_core::time::format(t + Duration::seconds(1)), "org_id": "111", "inventory_id": "inv-1"}),
    );
    store.store_batch(&[s1]).await.unwrap();
    store.store_batch(&[s2]).await.unwrap();
    let s3 = with(
        serde_json::json!({"request_id": "ten-1", "service": "advisor", "status": "received",
        "date": intake_core::time::format(t + Duration::seconds(2)), "org_id": "111", "account": "9",
        "inventory_id": "inv-2"}),
    );
    let outcome = store.store_batch(&[s3]).await.unwrap();
    assert_eq!(outcome.conflicts.len(), 1);
    assert_eq!(outcome.conflicts[0].field, "inventory_id");
    let p = store.payload("ten-1", &Scope::All).await.unwrap().unwrap();
    assert_eq!(
        (
            p.org_id.as_str(),
            p.account.as_str(),
            p.inventory_id.as_str()
        ),
        ("111", "9", "inv-1")
    );
    assert_eq!(store.payload_statuses(&p, None).await.unwrap().len(), 3);
    assert!(store
        .payload("ten-1", &Scope::Org("222".into()))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .payload("ten-1", &Scope::Org("111".into()))
        .await
        .unwrap()
        .is_some());
    assert!(store
        .payload("ten-1", &Scope::Nothing)
        .await
        .unwrap()
        .is_none());
}

/// One payload per (request id, org): a request id reused by another org is another payload, so
/// neither org sees the other's statuses; a status without an org goes to the newest payload of its
/// request id; a caller who sees every org gets the newest.
pub async fn a_request_id_reused_by_another_org_is_another_payload(store: Arc<dyn StatusStore>) {
    let t = base();
    let at = |s: i64| intake_core::time::format(t + Duration::seconds(s));
    let old = [
        with(
            serde_json::json!({"request_id": "reuse-1", "service": "ingress", "status": "received",
            "date": at(0), "org_id": "111", "account": "1"}),
        ),
        with(
            serde_json::json!({"request_id": "reuse-1", "service": "advisor", "status": "success",
            "date": at(1)}),
        ),
    ];
    store.store_batch(&old).await.unwrap();
    let new = [
        with(
            serde_json::json!({"request_id": "reuse-1", "service": "ingress", "status": "received",
            "date": at(60), "org_id": "222", "account": "2", "status_msg": "second tenant"}),
        ),
        with(
            serde_json::json!({"request_id": "reuse-1", "service": "advisor", "status": "processing",
            "date": at(61), "status_msg": "second tenant"}),
        ),
    ];
    let outcome = store.store_batch(&new).await.unwrap();
    assert_eq!(outcome.stored.len(), 2);
    assert!(outcome.conflicts.is_empty(), "{:?}", outcome.conflicts);
    let first = store
        .payload("reuse-1", &Scope::Org("111".into()))
        .await
        .unwrap()
        .unwrap();
    let second = store
        .payload("reuse-1", &Scope::Org("222".into()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(
        (first.account.as_str(), second.account.as_str()),
        ("1", "2")
    );
    let first_rows = store.payload_statuses(&first, None).await.unwrap();
    let second_rows = store.payload_statuses(&second, None).await.unwrap();
    assert_eq!(first_rows.len(), 2);
    assert!(first_rows
        .iter()
        .all(|r| r.status_msg.is_empty() && r.org_id == "111"));
    assert_eq!(second_rows.len(), 2);
    assert!(second_rows
        .iter()
        .all(|r| r.status_msg == "second tenant" && r.org_id == "222"));
    assert_eq!(
        (first.last_status.as_str(), second.last_status.as_str()),
        ("success", "processing")
    );
    let newest = store
        .payload("reuse-1", &Scope::All)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.id, second.id);
    for (org, want) in [("111", ""), ("222", "second tenant")] {
        let mut q = status_query();
        q.scope = Scope::Org(org.into());
        q.request_id = Some("reuse-1".into());
        let page = store.list_statuses(&q).await.unwrap();
        assert_eq!(page.count, 2, "org {org}");
        assert!(page.rows.iter().all(|r| r.status_msg == want), "org {org}");
    }
    // A redelivery goes where the first delivery went.
    let again = store.store_batch(&new).await.unwrap();
    assert_eq!((again.stored.len(), again.duplicates), (0, 2));
    assert_eq!(
        store.payload_statuses(&second, None).await.unwrap().len(),
        2
    );
}

/// A payload the batch creates is written with what the batch stored, not with what it merely
/// carried: a status already stored (here under another org of the same request id, whose dedup key
/// it shares) moves neither its `created_at` nor its `last_*`, nor reports a duration.
pub async fn a_new_payload_ignores_its_already_stored_statuses(store: Arc<dyn StatusStore>) {
    let t = base();
    let at = |s: i64| intake_core::time::format(t + Duration::seconds(s));
    let known = serde_json::json!({"request_id": "known-1", "service": "ingress", "status": "success",
        "date": at(0), "org_id": "111"});
    store.store_batch(&[with(known.clone())]).await.unwrap();
    let mut repeated = known;
    repeated["org_id"] = "222".into();
    let outcome = store
        .store_batch(&[
            with(serde_json::json!({"request_id": "known-1", "service": "ingress", "status": "received",
                "date": at(5), "org_id": "222"})),
            with(repeated),
        ])
        .await
        .unwrap();
    assert_eq!((outcome.stored.len(), outcome.duplicates), (1, 1));
    assert!(
        outcome.service_durations.is_empty(),
        "{:?}",
        outcome.service_durations
    );
    let second = store
        .payload("known-1", &Scope::Org("222".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.created_at, t + Duration::seconds(5));
    assert_eq!(
        (second.last_status.as_str(), second.last_status_at),
        ("received", t + Duration::seconds(5))
    );
    assert_eq!(
        store.payload_statuses(&second, None).await.unwrap().len(),
        1
    );
}

/// Two writers storing statuses of the same new payloads at the same time (two tracker instances,
/// or a redelivery racing the first delivery) both succeed, storing each status once, on one
/// payload per (request id, org).
pub async fn concurrent_batches_store_each_status_once(store: Arc<dyn StatusStore>) {
    let t = base();
    // Partitions first, so that both batches run side by side rather than one after the other;
    // several rounds, so that later ones find both connections open.
    store
        .prepare_days(t.date_naive(), (t + Duration::seconds(2)).date_naive())
        .await
        .unwrap();
    for round in 0..5 {
        let ids: Vec<String> = (0..20).map(|p| format!("race-{round}-{p}")).collect();
        let first: Vec<_> = ids
            .iter()
            .map(|id| status(id, "ingress", None, "received", t))
            .collect();
        // The second batch repeats the first and adds a status of its own to every payload.
        let second: Vec<_> = ids
            .iter()
            .flat_map(|id| {
                [
                    status(id, "ingress", None, "received", t),
                    status(id, "advisor", None, "success", t + Duration::seconds(2)),
                ]
            })
            .collect();
        let (a, b) = tokio::join!(store.store_batch(&first), store.store_batch(&second));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.stored.len() + b.stored.len(), 40, "round {round}");
        assert_eq!(a.duplicates + b.duplicates, 20, "round {round}");
        for id in &ids {
            let payload = store.payload(id, &Scope::All).await.unwrap().unwrap();
            let rows = store.payload_statuses(&payload, None).await.unwrap();
            assert_eq!(rows.len(), 2, "{id}");
            assert_eq!(payload.last_status, "success", "{id}");
            assert_eq!(payload.created_at, t, "{id}");
        }
    }
    assert_eq!(
        store
            .list_payloads(&payload_query(Scope::All))
            .await
            .unwrap()
            .count,
        100
    );
}

/// Two batches adding statuses to the same existing payloads at the same time (two tracker
/// instances): the payload row ends with the newest status and the earliest date, whichever
/// transaction commits last, and the first non-empty tenant value.
pub async fn concurrent_batches_keep_the_newest_last_status(store: Arc<dyn StatusStore>) {
    let t = base();
    store
        .prepare_days(
            (t - Duration::seconds(5)).date_naive(),
            (t + Duration::seconds(3)).date_naive(),
        )
        .await
        .unwrap();
    for round in 0..5 {
        let ids: Vec<String> = (0..20).map(|p| format!("newest-{round}-{p}")).collect();
        let first: Vec<_> = ids
            .iter()
            .map(|id| status(id, "ingress", None, "received", t))
            .collect();
        store.store_batch(&first).await.unwrap();
        // One batch brings the newest status, the other an older one, an earlier date and the
        // inventory id; each reads the payload as the first batch left it.
        let newest: Vec<_> = ids
            .iter()
            .map(|id| status(id, "advisor", None, "success", t + Duration::seconds(3)))
            .collect();
        let older: Vec<_> = ids
            .iter()
            .flat_map(|id| {
                let inventory = |mut s: NewStatus| {
                    s.inventory_id = format!("inv-{id}");
                    s
                };
                [
                    inventory(status(
                        id,
                        "puptoo",
                        None,
                        "processing",
                        t + Duration::seconds(1),
                    )),
                    inventory(status(
                        id,
                        "ingress",
                        None,
                        "received",
                        t - Duration::seconds(5),
                    )),
                ]
            })
            .collect();
        // Either one first: the last to update a row must not be the one that decides it.
        let (a, b) = if round % 2 == 0 {
            tokio::join!(store.store_batch(&older), store.store_batch(&newest))
        } else {
            let (b, a) = tokio::join!(store.store_batch(&newest), store.store_batch(&older));
            (a, b)
        };
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.stored.len() + b.stored.len(), 60, "round {round}");
        for id in &ids {
            let p = store.payload(id, &Scope::All).await.unwrap().unwrap();
            assert_eq!(
                (
                    p.last_service.as_str(),
                    p.last_status.as_str(),
                    p.last_status_at
                ),
                ("advisor", "success", t + Duration::seconds(3)),
                "{id}"
            );
            assert_eq!(p.created_at, t - Duration::seconds(5), "{id}");
            assert_eq!(p.inventory_id, format!("inv-{id}"), "{id}");
        }
    }
}

/// `created_at` is the earliest date; `last_*` the newest status, a tie going to the one stored last.
pub async fn payload_row_follows_dates(store: Arc<dyn StatusStore>) {
    let t = base();
    store
        .store_batch(&[status("row-1", "ingress", None, "processing", t)])
        .await
        .unwrap();
    store
        .store_batch(&[status(
            "row-1",
            "ingress",
            None,
            "received",
            t - Duration::seconds(5),
        )])
        .await
        .unwrap();
    let p = store.payload("row-1", &Scope::All).await.unwrap().unwrap();
    assert_eq!(p.created_at, t - Duration::seconds(5));
    assert_eq!(
        (p.last_status.as_str(), p.last_status_at),
        ("processing", t)
    );
    store
        .store_batch(&[status("row-1", "advisor", None, "success", t)])
        .await
        .unwrap();
    let p = store.payload("row-1", &Scope::All).await.unwrap().unwrap();
    assert_eq!(
        (p.last_service.as_str(), p.last_status.as_str()),
        ("advisor", "success")
    );
}

/// Lists count every match, page by offset and by keyset, and filter.
pub async fn payload_lists_count_filter_and_page(store: Arc<dyn StatusStore>) {
    let t = base();
    let mut batch = Vec::new();
    for i in 0..25 {
        let id = format!("list-{i:02}");
        batch.push(status(
            &id,
            "ingress",
            None,
            "received",
            t + Duration::seconds(i),
        ));
        if i % 5 == 0 {
            batch.push(status(
                &id,
                "advisor",
                None,
                "error",
                t + Duration::seconds(i) + Duration::milliseconds(10),
            ));
        }
    }
    store.store_batch(&batch).await.unwrap();
    let mut q = payload_query(Scope::All);
    let page = store.list_payloads(&q).await.unwrap();
    assert_eq!(page.count, 25);
    assert_eq!(page.rows.len(), 10);
    assert_eq!(page.rows[0].request_id, "list-24");
    let mut seen: Vec<String> = page.rows.iter().map(|p| p.request_id.clone()).collect();
    let mut next = page.next.clone();
    while let Some(keyset) = next {
        q.at = PageAt::After(keyset);
        let page = store.list_payloads(&q).await.unwrap();
        assert_eq!(page.count, 25);
        seen.extend(page.rows.iter().map(|p| p.request_id.clone()));
        next = page.next;
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("list-{i:02}")).collect();
    assert_eq!(seen, expected);
    let mut q = payload_query(Scope::All);
    q.at = PageAt::Offset(20);
    let page = store.list_payloads(&q).await.unwrap();
    assert_eq!((page.rows.len(), page.next.is_none()), (5, true));
    let mut q = payload_query(Scope::All);
    q.service = Some("advisor".into());
    q.status = Some("error".into());
    assert_eq!(store.list_payloads(&q).await.unwrap().count, 5);
    q.status = Some("received".into());
    assert_eq!(
        store.list_payloads(&q).await.unwrap().count,
        0,
        "service and status on the same status"
    );
    let mut q = payload_query(Scope::All);
    q.created_at.gte = Some(t + Duration::seconds(20));
    assert_eq!(store.list_payloads(&q).await.unwrap().count, 5);
    assert_eq!(
        store
            .list_payloads(&payload_query(Scope::Org("other".into())))
            .await
            .unwrap()
            .count,
        0
    );
    assert_eq!(
        store
            .list_payloads(&payload_query(Scope::Nothing))
            .await
            .unwrap()
            .count,
        0
    );
    assert_eq!(
        store
            .list_payloads(&payload_query(Scope::Org("54321".into())))
            .await
            .unwrap()
            .count,
        25
    );
}

/// Statuses without a source are listed, with filters and sort.
pub async fn status_lists_include_sourceless(store: Arc<dyn StatusStore>) {
    let t = base();
    store
        .store_batch(&[
            status("st-1", "puptoo", None, "received", t),
            status(
                "st-1",
                "puptoo",
                Some("inventory"),
                "processing",
                t + Duration::seconds(1),
            ),
            status(
                "st-2",
                "puptoo",
                Some("engine"),
                "success",
                t + Duration::seconds(2),
            ),
        ])
        .await
        .unwrap();
    let page = store.list_statuses(&status_query()).await.unwrap();
    assert_eq!(page.count, 3);
    assert_eq!(page.rows[2].source, None);
    let mut q = status_query();
    q.source = Some("inventory".into());
    assert_eq!(store.list_statuses(&q).await.unwrap().count, 1);
    let mut q = status_query();
    q.request_id = Some("st-1".into());
    q.sort_by = StatusSort::Source;
    q.sort_dir = SortDir::Asc;
    let page = store.list_statuses(&q).await.unwrap();
    assert_eq!(
        page.rows
            .iter()
            .map(|s| s.source.clone())
            .collect::<Vec<_>>(),
        [None, Some("inventory".into())]
    );
    let p = store.payload("st-1", &Scope::All).await.unwrap().unwrap();
    let all = store.payload_statuses(&p, None).await.unwrap();
    assert_eq!(all.len(), 2);
    let after = store.payload_statuses(&p, Some(all[0].id)).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, all[1].id);
}

/// Stats count statuses and journeys per service inside the window.
pub async fn stats_count_per_service(store: Arc<dyn StatusStore>) {
    let t = base();
    store
        .store_batch(&[
            status("sx-1", "advisor", None, "received", t),
            status("sx-1", "advisor", None, "success", t + Duration::seconds(4)),
            status("sx-2", "advisor", None, "received", t),
            status("sx-2", "advisor", None, "error", t + Duration::seconds(2)),
            status("sx-3", "advisor", None, "received", t),
        ])
        .await
        .unwrap();
    let data = store
        .stats(t - Duration::hours(1), Utc::now(), None, &Scope::All)
        .await
        .unwrap();
    let received = data
        .status_counts
        .iter()
        .find(|(s, st, _)| s == "advisor" && st == "received")
        .unwrap();
    assert_eq!(received.2, 3);
    assert_eq!(data.journeys.len(), 3);
    assert_eq!(
        data.journeys
            .iter()
            .filter(|j| j.first_terminal.is_some())
            .count(),
        2
    );
    assert_eq!(data.journeys.iter().filter(|j| j.succeeded).count(), 1);
    let none = store
        .stats(
            t - Duration::hours(1),
            Utc::now(),
            None,
            &Scope::Org("x".into()),
        )
        .await
        .unwrap();
    assert!(none.journeys.is_empty());
}

/// A service's first terminal status reports its duration.
pub async fn first_terminal_status_reports_duration(store: Arc<dyn StatusStore>) {
    let t = base();
    let outcome = store
        .store_batch(&[
            status("dur-1", "advisor", None, "received", t),
            status(
                "dur-1",
                "advisor",
                None,
                "success",
                t + Duration::milliseconds(2500),
            ),
            status("dur-1", "advisor", None, "error", t + Duration::seconds(9)),
        ])
        .await
        .unwrap();
    assert_eq!(outcome.service_durations, [("advisor".to_string(), 2.5)]);
}

/// Retention deletes statuses before the cutoff and payloads whose last status is older.
pub async fn retention_deletes_old_rows(store: Arc<dyn StatusStore>) {
    let now = Utc::now();
    let old = now - Duration::days(9);
    store
        .prepare_days(old.date_naive(), now.date_naive())
        .await
        .unwrap();
    store
        .store_batch(&[
            status("old-1", "ingress", None, "received", old),
            status(
                "new-1",
                "ingress",
                None,
                "received",
                now - Duration::minutes(5),
            ),
        ])
        .await
        .unwrap();
    let report = store
        .apply_retention(now - Duration::days(7))
        .await
        .unwrap();
    assert_eq!(report.payloads_deleted, 1);
    assert!(store.payload("old-1", &Scope::All).await.unwrap().is_none());
    assert!(store.payload("new-1", &Scope::All).await.unwrap().is_some());
    assert_eq!(store.list_statuses(&status_query()).await.unwrap().count, 1);
    let again = store
        .apply_retention(now - Duration::days(7))
        .await
        .unwrap();
    assert_eq!(again.payloads_deleted, 0);
}

/// An estimated count of the unfiltered list is never below the exact one and comes with the same
/// page; a filtered or tenant-scoped list is counted exactly even when an estimate is allowed.
pub async fn payload_count_estimates_only_unfiltered_lists(store: Arc<dyn StatusStore>) {
    let t = base();
    let batch: Vec<NewStatus> = (0..12)
        .map(|i| {
            with(serde_json::json!({
                "request_id": format!("estimate-{i:02}"), "service": "ingress", "status": "received",
                "date": intake_core::time::format(t + Duration::seconds(i)),
                "org_id": if i % 3 == 0 { "a" } else { "b" },
            }))
        })
        .collect();
    store.store_batch(&batch).await.unwrap();
    let exact = store
        .list_payloads(&payload_query(Scope::All))
        .await
        .unwrap();
    assert_eq!((exact.count, exact.count_exact), (12, true));
    let mut q = payload_query(Scope::All);
    q.count = CountMode::Estimate;
    let estimated = store.list_payloads(&q).await.unwrap();
    assert!(!estimated.count_exact);
    assert!(estimated.count >= 12, "an upper bound: {}", estimated.count);
    assert_eq!((estimated.rows, estimated.next), (exact.rows, exact.next));
    let mut q = payload_query(Scope::Org("a".into()));
    q.count = CountMode::Estimate;
    let scoped = store.list_payloads(&q).await.unwrap();
    assert_eq!((scoped.count, scoped.count_exact), (4, true));
    let mut q = payload_query(Scope::All);
    q.count = CountMode::Estimate;
    q.created_at.gte = Some(t + Duration::seconds(10));
    let filtered = store.list_payloads(&q).await.unwrap();
    assert_eq!((filtered.count, filtered.count_exact), (2, true));
}

/// As for payloads: an estimated status count is an upper bound only for the unfiltered list, with
/// the same page; filtered and tenant-scoped status lists are counted exactly.
pub async fn status_count_estimates_only_unfiltered_lists(store: Arc<dyn StatusStore>) {
    let t = base();
    let batch: Vec<NewStatus> = (0..12)
        .map(|i| {
            with(serde_json::json!({
                "request_id": format!("estimate-{:02}", i / 2), "service": "ingress",
                "status": if i % 2 == 0 { "received" } else { "success" },
                "date": intake_core::time::format(t + Duration::seconds(i)),
                "org_id": if i < 4 { "a" } else { "b" },
            }))
        })
        .collect();
    store.store_batch(&batch).await.unwrap();
    let exact = store.list_statuses(&status_query()).await.unwrap();
    assert_eq!((exact.count, exact.count_exact), (12, true));
    let mut q = status_query();
    q.count = CountMode::Estimate;
    let estimated = store.list_statuses(&q).await.unwrap();
    assert!(!estimated.count_exact);
    assert!(estimated.count >= 12, "an upper bound: {}", estimated.count);
    assert_eq!((estimated.rows, estimated.next), (exact.rows, exact.next));
    q.scope = Scope::Org("a".into());
    let scoped = store.list_statuses(&q).await.unwrap();
    assert_eq!((scoped.count, scoped.count_exact), (4, true));
    q.scope = Scope::All;
    q.status = Some("success".into());
    let filtered = store.list_statuses(&q).await.unwrap();
    assert_eq!((filtered.count, filtered.count_exact), (6, true));
}

/// The database answers.
pub async fn ping_answers(store: Arc<dyn StatusStore>) {
    store.ping().await.unwrap();
}

/// Runs every contract case against a driver; `$make` is an async expression giving a fresh, empty
/// `Arc<dyn StatusStore>` for each test.
#[macro_export]
macro_rules! status_store_contract_tests {
    ($make:expr) => {
        $crate::status_store_contract_tests!(@cases $make;
            duplicates_are_stored_once,
            first_non_empty_tenant_value_wins,
            a_request_id_reused_by_another_org_is_another_payload,
            payload_row_follows_dates,
            a_new_payload_ignores_its_already_stored_statuses,
            concurrent_batches_store_each_status_once,
            concurrent_batches_keep_the_newest_last_status,
            payload_lists_count_filter_and_page,
            payload_count_estimates_only_unfiltered_lists,
            status_count_estimates_only_unfiltered_lists,
            status_lists_include_sourceless,
            stats_count_per_service,
            first_terminal_status_reports_duration,
            retention_deletes_old_rows,
            ping_answers,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let store = $make.await;
                $crate::store::testsuite::$case(store).await;
            }
        )*
    };
}
