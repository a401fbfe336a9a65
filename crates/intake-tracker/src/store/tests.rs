//! The store's errors keep what caused them as their source, and say what they said before.

use std::error::Error as _;

use super::*;

/// A loopback port nothing listens on: connecting to it is refused at once.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn sqlx_source(e: &StoreError) -> &sqlx::Error {
    e.source()
        .and_then(|s| s.downcast_ref::<sqlx::Error>())
        .unwrap_or_else(|| panic!("the source of {e:?} is a sqlx error"))
}

#[tokio::test]
async fn a_refused_postgresql_connection_is_unavailable_with_the_sqlx_error_as_its_source() {
    let url = format!("postgres://u:secret@127.0.0.1:{}/db", closed_port());
    let e = match postgres::PostgresStore::open(&url).await {
        Err(e) => e,
        Ok(_) => panic!("nothing listens there"),
    };
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    let cause = sqlx_source(&e);
    assert!(matches!(cause, sqlx::Error::Io(_)), "{cause:?}");
    // The message is the one the tracker gave before: the kind, then what sqlx said.
    assert_eq!(e.to_string(), format!("database unavailable: {cause}"));
    assert_eq!(e.detail(), cause.to_string());
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[tokio::test]
async fn an_unreadable_postgresql_url_is_config_with_the_sqlx_error_as_its_source() {
    let e = match postgres::PostgresStore::open("postgres://u@127.0.0.1:notaport/db").await {
        Err(e) => e,
        Ok(_) => panic!("the URL cannot be read"),
    };
    assert!(matches!(e, StoreError::Config { .. }), "{e:?}");
    let cause = sqlx_source(&e);
    assert_eq!(
        e.to_string(),
        format!("bad database configuration: cannot read the URL: {cause}")
    );
}

#[tokio::test]
async fn a_sqlite_folder_that_cannot_be_made_is_config_with_the_io_error_as_its_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").expect("write");
    let url = format!("sqlite://{}", file.join("t.db").display());
    let e = match sqlite::SqliteStore::open(&url).await {
        Err(e) => e,
        Ok(_) => panic!("its folder is a file"),
    };
    assert!(matches!(e, StoreError::Config { .. }), "{e:?}");
    let io = e
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("an io error as the source");
    assert!(
        e.to_string()
            .ends_with(&format!("cannot create {}: {io}", file.display())),
        "{e}"
    );
}

#[tokio::test]
async fn a_changed_migration_is_migration_with_the_migrate_error_as_its_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = sqlite::SqliteStore::open(&url).await.expect("opens");
    sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00'")
        .execute(store.pool())
        .await
        .expect("checksums changed");
    store.pool().close().await;
    let e = match sqlite::SqliteStore::open(&url).await {
        Err(e) => e,
        Ok(_) => panic!("an applied migration no longer matches"),
    };
    assert!(matches!(e, StoreError::Migration { .. }), "{e:?}");
    let cause = e
        .source()
        .and_then(|s| s.downcast_ref::<sqlx::migrate::MigrateError>())
        .expect("the migrate error as the source");
    assert_eq!(e.to_string(), format!("database migration failed: {cause}"));
}

#[tokio::test]
async fn a_constraint_is_rejected_with_the_sqlx_error_as_its_source() {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite");
    sqlx::query("CREATE TABLE t (x INTEGER NOT NULL)")
        .execute(&mut conn)
        .await
        .expect("table");
    let refused = sqlx::query("INSERT INTO t VALUES (NULL)")
        .execute(&mut conn)
        .await
        .expect_err("NOT NULL");
    let message = refused.to_string();
    let e = classify(refused);
    assert!(matches!(e, StoreError::Rejected { .. }), "{e:?}");
    // What a dead letter's dlq_detail says is sqlx's message, as before.
    assert_eq!(e.detail(), message);
    assert!(matches!(sqlx_source(&e), sqlx::Error::Database(_)));
}

#[test]
fn errors_without_a_cause_say_their_context() {
    let e = StoreError::unavailable("injected outage");
    assert_eq!(e.to_string(), "database unavailable: injected outage");
    assert_eq!(e.detail(), "injected outage");
    assert!(e.source().is_none());
    let io = std::io::Error::other("disk full");
    let e = StoreError::unavailable_from("writing", io);
    assert_eq!(e.to_string(), "database unavailable: writing: disk full");
    assert_eq!(
        e.source().map(|s| s.to_string()).as_deref(),
        Some("disk full")
    );
}
