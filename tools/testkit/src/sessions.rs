//! The database sessions of a running command, and the locks a test holds against it.
//!
//! `ransomeye-ops` names its sessions `ransomeye-ops <command> pid <pid>` (`application_name`),
//! so a test can wait until a run reached a point (waiting for a lock, deleting) by watching
//! `pg_stat_activity`, instead of sleeping.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::db::TestDb;

/// Waits (bounded) until the `archive` run with process id `pid` shows in `pg_stat_activity`
/// meeting `condition` (SQL over its columns).
pub async fn until_backend(conn: &mut PgConnection, pid: u32, condition: &str) {
    let sql = format!(
        "select count(*)::int8 from pg_stat_activity where application_name = 'ransomeye-ops archive pid {pid}' and {condition}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_one(&mut *conn)
            .await
            .expect("pg_stat_activity");
        if n > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {pid} never reached: {condition}"
        );
        // Polling the condition itself; the pause only spares the 2-core machine a busy loop.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The backend pids serving the process `pid` (any command).
pub fn backends_of(db: &TestDb, pid: u32) -> Vec<i32> {
    let pids = db.text(&format!(
        "select coalesce(string_agg(pid::text, ','), '') from pg_stat_activity \
         where application_name like 'ransomeye-ops % pid {pid}'"
    ));
    pids.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().expect("pid"))
        .collect()
}

/// A connection of its own holding `lock table audit_logs in <mode> mode` in an open
/// transaction, until `commit` is sent on it.
pub async fn hold_table_lock(url: &str, mode: &str) -> PgConnection {
    let mut holder = PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "begin; lock table audit_logs in {mode} mode"
    )))
    .execute(&mut holder)
    .await
    .expect("lock table");
    holder
}

/// Holds an exclusive `flock` on the lock file at `path` (created if missing, its text kept),
/// as a live run would, until dropped.
pub fn hold_flock(path: &Path) -> Flock<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .expect("open the lock file");
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("flock")
}
