//! The status-store contract on the embedded SQLite driver.

use std::sync::Arc;

use intake_tracker::store::sqlite::SqliteStore;
use intake_tracker::StatusStore;

async fn fresh() -> Arc<dyn StatusStore> {
    // The directory must outlive the store, so it is kept, under cargo's temporary folder for
    // integration tests (inside `target/`), not in the system's `/tmp`.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .keep();
    let url = format!("sqlite://{}", dir.join("tracker.db").display());
    Arc::new(SqliteStore::open(&url).await.unwrap())
}

intake_tracker::status_store_contract_tests!(fresh());

#[tokio::test]
async fn uses_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn checkpoints_the_wal_every_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(pages, 16_384);
}

/// A database made before payloads were per (request id, org) is rebuilt at open, keeping every
/// payload and status; opening it again changes nothing.
#[tokio::test]
async fn an_older_database_gets_one_payload_per_org_keeping_its_rows() {
    use intake_tracker::model::Scope;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .unwrap();
        let now = chrono::Utc::now().timestamp_micros();
        sqlx::query(
            "INSERT INTO payloads (id, request_id, org_id, account, created_at, last_status_at, \
             last_service, last_status) VALUES (7, 'old-1', '111', '1', $1, $1, 'ingress', 'received')",
        )
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
        for (i, status) in ["received", "processing"].iter().enumerate() {
            sqlx::query(
                "INSERT INTO payload_statuses (payload_id, service, status, date, created_at, dedup_key) \
                 VALUES (7, 'ingress', $1, $2, $2, $3)",
            )
            .bind(*status)
            .bind(now + i as i64)
            .bind(format!("key-{i}"))
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let store = SqliteStore::open(&url).await.unwrap();
    let unique_request_id: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_autoindex_payloads_%'",
    )
    .fetch_optional(store.pool())
    .await
    .unwrap();
    assert_eq!(unique_request_id, None);
    let old = store
        .payload("old-1", &Scope::Org("111".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((old.id, old.account.as_str()), (7, "1"));
    assert_eq!(store.payload_statuses(&old, None).await.unwrap().len(), 2);
    let reuse = intake_tracker::store::testsuite::with(serde_json::json!({
        "request_id": "old-1", "service": "ingress", "status": "received", "org_id": "222",
        "date": intake_core::time::format(chrono::Utc::now())}));
    store.store_batch(&[reuse]).await.unwrap();
    let second = store
        .payload("old-1", &Scope::Org("222".into()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.id, old.id);
    assert_eq!(store.payload_statuses(&old, None).await.unwrap().len(), 2);
    // Deleting a payload still cascades to its statuses: the foreign key survived the rebuild.
    sqlx::query("DELETE FROM payloads WHERE id = 7")
        .execute(store.pool())
        .await
        .unwrap();
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM payload_statuses WHERE payload_id = 7")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(left, 0);
    drop(store);
    SqliteStore::open(&url).await.unwrap();
}

/// A database made before the dedup index led with the date gets it rebuilt at open, and a status
/// stored before still counts as a duplicate.
#[tokio::test]
async fn an_older_database_gets_the_date_first_dedup_index() {
    use chrono::SubsecRound;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let old_migrations = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_schema.sql"
        ),
        old_migrations.path().join("0001_schema.sql"),
    )
    .unwrap();
    let date = (chrono::Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(6);
    let known =
        intake_tracker::store::testsuite::status("mig-1", "ingress", None, "received", date);
    {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(old_migrations.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let micros = date.timestamp_micros();
        sqlx::query(
            "INSERT INTO payloads (id, request_id, org_id, account, created_at, last_status_at, \
             last_service, last_status) VALUES (3, 'mig-1', '54321', '12345', $1, $1, 'ingress', 'received')",
        )
        .bind(micros)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO payload_statuses (payload_id, service, status, date, created_at, dedup_key) \
             VALUES (3, 'ingress', 'received', $1, $1, $2)",
        )
        .bind(micros)
        .bind(&known.dedup_key)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::open(&url).await.unwrap();
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pragma_index_info('payload_statuses_dedup') ORDER BY seqno",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(columns, ["date", "dedup_key"]);
    // The dedup index serves the date's ranges and orders: the date's own index is gone.
    let date_index: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = 'payload_statuses_date'")
            .fetch_optional(store.pool())
            .await
            .unwrap();
    assert_eq!(date_index, None);
    let again = store.store_batch(&[known]).await.unwrap();
    assert_eq!((again.stored.len(), again.duplicates), (0, 1));
}
