//! The status-store contract on a real PostgreSQL (from the harness, `INTAKE_TEST_POSTGRES_URL`),
//! one fresh database per test, plus the partition rules: created ahead, dropped by retention.

use std::sync::Arc;

use chrono::{Days, Duration, Utc};
use intake_tracker::store::postgres::{partition_name, PostgresStore};
use intake_tracker::store::testsuite::{status, status_query};
use intake_tracker::StatusStore;
use sqlx::Connection;

/// Creates an empty database and returns its URL.
async fn fresh_url() -> String {
    let admin = intake_testkit::servers::postgres_url();
    let name = format!("tracker_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap();
    format!("{base}/{name}")
}

async fn fresh_store() -> PostgresStore {
    PostgresStore::open(&fresh_url().await).await.unwrap()
}

async fn fresh() -> Arc<dyn StatusStore> {
    Arc::new(fresh_store().await)
}

intake_tracker::status_store_contract_tests!(fresh());

#[tokio::test]
async fn partitions_are_created_ahead_idempotently() {
    let store = fresh_store().await;
    let today = Utc::now().date_naive();
    let first = today.checked_sub_days(Days::new(7)).unwrap();
    let last = today.checked_add_days(Days::new(3)).unwrap();
    let created = store.prepare_days(first, last).await.unwrap();
    assert_eq!(created.len(), 11);
    assert_eq!(created[0], partition_name(first));
    assert_eq!(created[10], partition_name(last));
    assert!(
        created[0].starts_with("payload_statuses_")
            && created[0].len() == "payload_statuses_20240502".len()
    );
    assert!(
        store.prepare_days(first, last).await.unwrap().is_empty(),
        "a second run creates nothing"
    );
    let partitions = store.partitions().await.unwrap();
    assert_eq!(partitions.len(), 11);
    // Every partition carries the parent's indexes (the primary key, the payload's, the dedup key's,
    // service and status, created_at).
    let count = |table: String| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT COUNT(*) FROM pg_indexes WHERE tablename = '{table}'"
            ))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let parent = count("payload_statuses".to_owned()).await;
    let indexes = count(partition_name(today)).await;
    assert!(parent >= 5, "{parent} indexes on payload_statuses");
    assert_eq!(indexes, parent, "indexes on today's partition");
}

#[tokio::test]
async fn concurrent_instances_create_partitions_safely() {
    let url = fresh_url().await;
    let a = PostgresStore::open(&url).await.unwrap();
    let b = PostgresStore::open(&url).await.unwrap();
    let today = Utc::now().date_naive();
    let last = today.checked_add_days(Days::new(5)).unwrap();
    let (ra, rb) = tokio::join!(a.prepare_days(today, last), b.prepare_days(today, last));
    assert_eq!(ra.unwrap().len() + rb.unwrap().len(), 6);
}

#[tokio::test]
async fn a_status_for_a_day_without_partition_gets_one() {
    let store = fresh_store().await;
    let date = Utc::now() - Duration::days(2);
    assert!(store.partitions().await.unwrap().is_empty());
    store
        .store_batch(&[status("np-1", "ingress", None, "received", date)])
        .await
        .unwrap();
    assert_eq!(
        store.partitions().await.unwrap(),
        [partition_name(date.date_naive())]
    );
    // Dropped behind the store's back (another pod's retention): made again on demand.
    sqlx::query(&format!("DROP TABLE {}", partition_name(date.date_naive())))
        .execute(store.pool())
        .await
        .unwrap();
    store
        .store_batch(&[status("np-1", "ingress", None, "success", date)])
        .await
        .unwrap();
    assert_eq!(store.list_statuses(&status_query()).await.unwrap().count, 1);
}

#[tokio::test]
async fn retention_drops_every_partition_that_ended_before_the_cutoff() {
    let store = fresh_store().await;
    let now = Utc::now();
    let today = now.date_naive();
    store
        .prepare_days(today.checked_sub_days(Days::new(12)).unwrap(), today)
        .await
        .unwrap();
    store
        .store_batch(&[status(
            "ret-old",
            "ingress",
            None,
            "received",
            now - Duration::days(10),
        )])
        .await
        .unwrap();
    store
        .store_batch(&[status(
            "ret-new",
            "ingress",
            None,
            "received",
            now - Duration::hours(1),
        )])
        .await
        .unwrap();
    let cutoff = now - Duration::days(7);
    let report = store.apply_retention(cutoff).await.unwrap();
    let cutoff_day = cutoff.date_naive();
    let expected: Vec<String> = (1..=5)
        .rev()
        .map(|d| partition_name(cutoff_day.checked_sub_days(Days::new(d)).unwrap()))
        .collect();
    assert_eq!(report.partitions_dropped, expected);
    assert_eq!(report.payloads_deleted, 1);
    let left = store.partitions().await.unwrap();
    assert_eq!(
        left.first(),
        Some(&partition_name(cutoff_day)),
        "the cutoff's own day is kept"
    );
    assert!(store
        .payload("ret-new", &intake_tracker::model::Scope::All)
        .await
        .unwrap()
        .is_some());
    assert!(
        store
            .apply_retention(cutoff)
            .await
            .unwrap()
            .partitions_dropped
            .is_empty(),
        "idempotent"
    );
}

/// A table filled from empty gets its statistics once 10 000 statuses are stored, before autovacuum
/// would get to it, and a filtered list then looks its id up instead of reading the whole table.
#[tokio::test]
async fn payloads_are_analyzed_as_the_table_grows_from_empty() {
    let store = fresh_store().await;
    let analyzed = || async {
        sqlx::query_scalar::<_, f32>("SELECT reltuples FROM pg_class WHERE relname = 'payloads'")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let t = Utc::now() - Duration::hours(1);
    let mut stored = 0;
    for chunk in 0..20 {
        let batch: Vec<_> = (0..500)
            .map(|i| {
                let mut s = status(&format!("an-{chunk}-{i}"), "ingress", None, "received", t);
                s.inventory_id = format!("inv-{chunk}-{i}");
                s
            })
            .collect();
        stored += store.store_batch(&batch).await.unwrap().stored.len();
    }
    assert_eq!(stored, 10_000);
    assert!(analyzed().await >= 9_000.0, "{}", analyzed().await);
    let mut q = intake_tracker::store::testsuite::payload_query(intake_tracker::model::Scope::All);
    q.inventory_id = Some("inv-7-7".into());
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT p.id FROM payloads p WHERE p.inventory_id = 'inv-7-7' \
         ORDER BY p.created_at DESC, p.id DESC LIMIT 11",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("payloads_inventory")),
        "{plan:#?}"
    );
    assert_eq!(store.list_payloads(&q).await.unwrap().count, 1);
}

/// A database made before the dedup index led with the date gets it rebuilt at open, on every
/// existing partition, and a status stored before still counts as a duplicate.
#[tokio::test]
async fn an_older_database_gets_the_date_first_dedup_index() {
    use chrono::SubsecRound;
    let url = fresh_url().await;
    let old_migrations = tempfile::tempdir().unwrap();
    for file in ["0001_schema.sql", "0002_payload_per_org.sql"] {
        std::fs::copy(
            format!("{}/migrations/postgres/{file}", env!("CARGO_MANIFEST_DIR")),
            old_migrations.path().join(file),
        )
        .unwrap();
    }
    let date = (Utc::now() - Duration::hours(1)).trunc_subsecs(6);
    let known = status("mig-1", "ingress", None, "received", date);
    let day = date.date_naive();
    let partition = partition_name(day);
    {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(old_migrations.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(&format!(
            "CREATE TABLE {partition} PARTITION OF payload_statuses FOR VALUES FROM ('{day} 00:00:00+00') TO ('{} 00:00:00+00')",
            day.checked_add_days(Days::new(1)).unwrap()
        ))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO payloads (id, request_id, org_id, account, created_at, last_status_at, \
             last_service, last_status) VALUES (3, 'mig-1', '54321', '12345', $1, $1, 'ingress', 'received')",
        )
        .bind(date)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO payload_statuses (payload_id, service, status, date, created_at, dedup_key) \
             VALUES (3, 'ingress', 'received', $1, $1, $2)",
        )
        .bind(date)
        .bind(&known.dedup_key)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = PostgresStore::open(&url).await.unwrap();
    let definitions: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%UNIQUE%dedup_key%' ORDER BY tablename",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(definitions.len(), 2, "{definitions:#?}");
    assert!(
        definitions.iter().all(|d| d.ends_with("(date, dedup_key)")),
        "{definitions:#?}"
    );
    // The dedup index serves the date's ranges and orders: the date's own index is gone, from the
    // parent and the existing partition.
    let date_indexes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_indexes WHERE indexdef LIKE '%USING btree (date)'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(date_indexes, 0);
    let again = store.store_batch(&[known]).await.unwrap();
    assert_eq!((again.stored.len(), again.duplicates), (0, 1));
}

#[tokio::test]
async fn a_missing_database_is_config_with_the_servers_error_as_its_source() {
    let admin = intake_testkit::servers::postgres_url();
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap();
    let url = format!("{base}/tracker_nosuchdb_{}", uuid::Uuid::new_v4().simple());
    let e = match PostgresStore::open(&url).await {
        Err(e) => e,
        Ok(_) => panic!("the database does not exist"),
    };
    assert!(
        matches!(e, intake_tracker::store::StoreError::Config { .. }),
        "{e:?}"
    );
    let source = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<sqlx::Error>())
        .expect("the sqlx error as the source");
    let sqlx::Error::Database(db) = source else {
        panic!("the server's answer: {source:?}");
    };
    assert_eq!(db.code().as_deref(), Some("3D000"));
    // What the operator reads is the server's own sentence, as before the cause was kept.
    assert_eq!(
        intake_tracker::store::postgres::refusal(&e),
        db.message(),
        "{e}"
    );
    assert!(db.message().contains("does not exist"), "{e}");
}
