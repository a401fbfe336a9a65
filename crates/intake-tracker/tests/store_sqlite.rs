//! The status-store contract on the embedded SQLite driver.

use std::sync::Arc;

use intake_tracker::store::sqlite::SqliteStore;
use intake_tracker::StatusStore;

async fn fresh() -> Arc<dyn StatusStore> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tracker.db").display());
    // The directory must outlive the store; tests are short, so it is leaked on purpose.
    std::mem::forget(dir);
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
