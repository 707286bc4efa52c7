//! One run of an operation at a time.
//!
//! Two locks, because a run touches two places: a lock file in the operation's directory, held
//! with `flock` (the kernel releases it when the process dies, even by SIGKILL, so a crash never
//! leaves a stale lock) and naming its holder; and a PostgreSQL advisory lock on the run's
//! database connection (released when that connection ends), which also stops a second host
//! that shares the database but not the directory. A second run exits 75 saying who holds it.
//!
//! The lock file is opened in place rather than rewritten through the atomic writer: every
//! contender must lock the same inode, and its contents are only a description of the holder.
//! Root and every member of `ransomeye-admin` must be able to open it for writing, whoever
//! created it, so it is created complete with its group and mode `0660` (by the atomic writer,
//! so no contender ever sees it with narrower permissions), and a run by its owner or root
//! repairs one that an older version left `0640` or in another group.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use ransomeye_kernel::access::{Ownership, ADMIN_GROUP};
use ransomeye_kernel::atomic_file::AtomicFile;
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
        let file = open_shared(&path)?;
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

/// Opens the lock file at `path` for reading and writing, creating it first if it is missing.
fn open_shared(path: &Path) -> Result<File, OpsError> {
    let policy = Ownership::shared_file();
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(path)
    };
    let file = match open() {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Created whole with its final mode and group; a contender that created it first
            // wins the no-replace commit, and both then open the same file.
            match AtomicFile::create(path, policy).and_then(AtomicFile::commit) {
                Ok(_) => {}
                Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
            open().map_err(|e| open_error(path, e))?
        }
        Err(e) => return Err(open_error(path, e)),
    };
    let meta = file
        .metadata()
        .map_err(PathError::at(FileAction::Read, path))?;
    let me = nix::unistd::geteuid();
    let wrong_group = policy.gid.is_some_and(|gid| gid != meta.gid());
    if (me.is_root() || me.as_raw() == meta.uid())
        && (wrong_group || meta.mode() & 0o7777 != policy.mode)
    {
        policy.apply_to_file(&file, path)?;
    }
    Ok(file)
}

/// A lock file that cannot be opened: permission denied (77) says how to share it.
fn open_error(path: &Path, e: std::io::Error) -> OpsError {
    let denied = e.kind() == std::io::ErrorKind::PermissionDenied;
    let err: OpsError = PathError::new(FileAction::Open, path, e).into();
    if !denied {
        return err;
    }
    let shown = path.display();
    err.hint(format!(
        "root and every member of group '{ADMIN_GROUP}' need to write the lock file: \
         `chgrp {ADMIN_GROUP} {shown} && chmod 0660 {shown}` (a run as root repairs it)"
    ))
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
    let taken = crate::db::bounded(
        sqlx::query("select pg_advisory_lock(hashtextextended($1, 0))")
            .bind(name)
            .execute(&mut *conn),
        "taking the advisory lock",
    )
    .await?;
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
    .answer("looking up the lock's holder")
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode_and_group(path: &Path) -> (u32, u32) {
        let meta = std::fs::metadata(path).expect("metadata");
        (meta.mode() & 0o7777, meta.gid())
    }

    #[test]
    fn a_new_lock_file_is_shared_with_the_group_and_names_its_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = RunLock::acquire(dir.path(), "job", "job").expect("acquire");
        let policy = Ownership::shared_file();
        let (mode, gid) = mode_and_group(lock.path());
        assert_eq!(mode, policy.mode);
        if let Some(admin) = policy.gid {
            assert_eq!(gid, admin);
        }
        let holder = std::fs::read_to_string(lock.path()).expect("read");
        assert!(
            holder.contains(&format!("pid {}", std::process::id())),
            "{holder}"
        );
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(".job.lock")]);
    }

    #[test]
    fn a_held_lock_makes_a_second_run_retry_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = RunLock::acquire(dir.path(), "job", "job").expect("acquire");
        let err = RunLock::acquire(dir.path(), "job", "job").expect_err("second run");
        assert_eq!(err.exit, Exit::TempFail);
        assert!(err.what.contains("pid"), "{}", err.what);
    }

    #[test]
    fn the_owner_repairs_a_lock_file_an_older_version_left_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".job.lock");
        std::fs::write(&path, b"").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        drop(RunLock::acquire(dir.path(), "job", "job").expect("acquire"));
        let policy = Ownership::shared_file();
        let (mode, gid) = mode_and_group(&path);
        assert_eq!(mode, policy.mode);
        if let Some(admin) = policy.gid {
            assert_eq!(gid, admin);
        }
    }
}
