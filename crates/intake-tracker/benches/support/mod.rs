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
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    if let Some(postmaster) = parent_of(&backend.to_string()) {
        let _ = POSTMASTER.set(postmaster);
    }
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

/// CPU seconds (user + system) a process and its waited-for children have used, from
/// `/proc/<pid>/stat` (`self` for this one); 0 when unreadable. A PostgreSQL backend that ended
/// counts in its postmaster's children's time. The host has two shared cores and others' builds, so the benches give CPU
/// time per status beside the wall-clock rate: it moves far less with the load.
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime and cstime are fields 14 to 17 of the line, 12 to 15 after the name;
    // in clock ticks (USER_HZ, 100 on Linux).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) / 100.0
}

/// CPU seconds so far of this process and, for a store named PostgreSQL…, of the server's
/// processes: `(bench, server)`.
pub fn cpu_of(store_name: &str) -> (f64, f64) {
    let server = if store_name.starts_with("PostgreSQL") {
        match POSTMASTER.get() {
            Some(postmaster) => cpu_seconds_of_server(postmaster),
            None => cpu_seconds_named("postgres"),
        }
    } else {
        0.0
    };
    (cpu_seconds("self"), server)
}

/// CPU seconds used by every process on this host named `name` (`postgres`: the server's
/// backends, WAL writer, checkpointer and autovacuum together), living ones only.
pub fn cpu_seconds_named(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .map(|pid| cpu_seconds(&pid))
        .sum()
}

/// The server the benches measure: its postmaster's process id, found by [`durability`] from a
/// backend's parent. Other PostgreSQL servers on the host (the harness's, another bench's) then do
/// not count, nor does one of them stopping mid-run take its CPU time out of the sum.
static POSTMASTER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The parent process id of `pid` (`/proc/<pid>/stat`, the field after the state).
fn parent_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(1).map(str::to_owned)
}

/// CPU seconds of a server: its postmaster (with the backends that ended, its waited-for
/// children) and every living child of it (backends, WAL writer, checkpointer, autovacuum).
fn cpu_seconds_of_server(postmaster: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let children: f64 = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| parent_of(pid).as_deref() == Some(postmaster))
        .map(|pid| cpu_seconds(&pid))
        .sum();
    cpu_seconds(postmaster) + children
}
