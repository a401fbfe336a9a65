//! What both tracker benches share: a fresh PostgreSQL database per run, the server's durability
//! settings, and the process's memory.

use sqlx::Connection;

/// A new, empty database on the server `admin` points at; returns its URL.
pub async fn fresh_postgres(admin: &str) -> String {
    let name = format!("tracker_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// The server's durability settings, as the benches print them beside their figures. The test
/// harness's server runs with all three off (set on its command line, so `ALTER SYSTEM` cannot
/// change them); `benches/with-durable-postgres.sh` runs one with PostgreSQL's defaults (all on).
pub async fn durability(admin: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    let mut values = Vec::new();
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        let v: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        values.push(format!("{setting}={v}"));
    }
    values.join(" ")
}

/// This process's resident memory now and its peak so far, in MiB (`/proc/self/status`).
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The host's load average over the last minute (`/proc/loadavg`), for the figures' context.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
