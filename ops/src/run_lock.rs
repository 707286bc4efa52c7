//! One run of an operation at a time.
//!
//! Two locks, because a run touches two places: a lock file in the operation's directory, held
//! with `flock` (the kernel releases it when the process dies, even by SIGKILL, so a crash never
//! leaves a stale lock) and naming its holder; and a PostgreSQL advisory lock on the run's
//! database connection (released when that connection ends), which also stops a second host
//! that shares the database but not the directory. A second run exits 75 saying who holds it.
//!
//! The lock file is opened in place rather than through the atomic writer: every contender must
//! lock the same inode, and its contents are only a description of the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use ransomeye_kernel::{FileAction, PathError};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::db::Answer;
use crate::error::{Exit, OpsError};

/// A held lock file; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl RunLock {
    /// Takes `<dir>/.<name>.lock` for `operation` (e.g. "archive of audit_logs"), or fails with
    /// exit 75 naming the holder.
    pub fn acquire(dir: &Path, name: &str, operation: &str) -> Result<RunLock, OpsError> {
        let path = dir.join(format!(".{name}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .map_err(PathError::at(FileAction::Create, &path))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(OpsError::new(
                    Exit::TempFail,
                    format!(
                        "another {operation} is running ({})",
                        if holder.is_empty() { "holder unknown" } else { holder }
                    ),
                )
                .hint(format!(
                    "wait for it to finish and retry; the lock is {} and is released when that process exits",
                    path.display()
                )));
            }
            Err((_, errno)) => {
                return Err(
                    PathError::new(FileAction::Open, &path, std::io::Error::from(errno)).into(),
                )
            }
        };
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown-host".into());
        let description = format!(
            "pid {} on {host}, started {}",
            std::process::id(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(description.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(PathError::at(FileAction::Write, &path))?;
        Ok(RunLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How long to wait for the database lock. A run killed a moment ago still holds it until its
/// backend notices the closed connection, so a rerun right after a kill waits briefly instead
/// of failing; a live run elsewhere still makes this one exit 75 after the wait.
const ADVISORY_WAIT: &str = "5s";

/// Takes a session-level advisory lock named `name` on `conn` (held until the connection ends),
/// waiting up to [`ADVISORY_WAIT`], or fails with exit 75 naming the backend that holds it.
pub async fn advisory_lock(
    conn: &mut PgConnection,
    name: &str,
    operation: &str,
) -> Result<(), OpsError> {
    sqlx::query(AssertSqlSafe(format!(
        "set lock_timeout = '{ADVISORY_WAIT}'"
    )))
    .execute(&mut *conn)
    .answer("setting the lock timeout")
    .await?;
    let taken = sqlx::query("select pg_advisory_lock(hashtextextended($1, 0))")
        .bind(name)
        .execute(&mut *conn)
        .await;
    sqlx::query("set lock_timeout = 0")
        .execute(&mut *conn)
        .answer("resetting the lock timeout")
        .await?;
    match taken {
        Ok(_) => return Ok(()),
        // 55P03 lock_not_available: the wait timed out.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {}
        Err(e) => return Err(crate::db::error(e, "taking the advisory lock")),
    }
    let holder: Option<(i32, Option<String>)> = sqlx::query_as(
        "select a.pid, nullif(a.application_name, '') from pg_locks l \
         join pg_stat_activity a on a.pid = l.pid \
         where l.locktype = 'advisory' and l.granted \
           and ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended($1, 0) limit 1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .unwrap_or(None);
    let who = match holder {
        Some((pid, Some(app))) => format!("PostgreSQL backend pid {pid}, {app}"),
        Some((pid, None)) => format!("PostgreSQL backend pid {pid}"),
        None => "holder unknown".into(),
    };
    Err(OpsError::new(
        Exit::TempFail,
        format!("another {operation} is running ({who})"),
    )
    .hint("it may run on another host sharing this database; wait for it to finish and retry"))
}
