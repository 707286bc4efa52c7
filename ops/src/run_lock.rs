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
use ransomeye_kernel::atomic_file::{self, AtomicFile};
use ransomeye_kernel::{FileAction, PathError};
use sqlx::PgConnection;

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
        let started = std::time::SystemTime::now();
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
        remove_stale_temps(dir, &path, started);
        Ok(RunLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes what a run killed while creating the lock file left: its temp file, when it is older
/// than this run. Called with the lock held, so the lock file exists and no run creates one now.
fn remove_stale_temps(dir: &Path, lock: &Path, started: std::time::SystemTime) {
    let Some(lock_name) = lock.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    for file in atomic_file::remove_stale_temps(dir, |target| target == lock_name, started) {
        tracing::info!(file = %file.display(), "removed a lock file's temp file left by a killed run");
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

/// How long to wait for a database lock whose holder is gone: a run killed a moment ago keeps
/// the lock until its backend notices the closed connection (at once when idle, after the
/// statement when busy), so a rerun right after a kill waits this long at most instead of
/// failing. A live holder is never waited for.
const GONE_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often to retry the lock while a gone holder's backend ends. Each try is a quick
/// statement, so nothing blocks inside PostgreSQL (and no driver "slow statement" warning).
const GONE_HOLDER_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The session holding an advisory lock, as `pg_stat_activity` shows it.
struct Holder {
    backend_pid: i32,
    application_name: Option<String>,
    /// Connected from the same client address as this run (same host, as far as PostgreSQL
    /// can tell).
    same_client: bool,
}

impl Holder {
    /// The process id of a ransomeye-ops holder (`… pid N`, set by [`crate::db::connect`]).
    fn ops_pid(&self) -> Option<i32> {
        let app = self.application_name.as_deref()?;
        let rest = app.strip_prefix("ransomeye-ops ")?;
        rest.rsplit_once(" pid ")?.1.parse().ok()
    }

    /// True when the holder is a ransomeye-ops run on this host whose process has exited: its
    /// backend is only waiting to notice. Anything else (another host, another program, a
    /// process that still exists) counts as live.
    fn is_gone(&self) -> bool {
        match self.ops_pid() {
            // A zombie or a live process keeps its /proc entry: only an exited one is gone.
            Some(pid) if self.same_client && pid > 0 => {
                !Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match &self.application_name {
            Some(app) => format!("PostgreSQL backend pid {}, {app}", self.backend_pid),
            None => format!("PostgreSQL backend pid {}", self.backend_pid),
        }
    }
}

/// Takes a session-level advisory lock named `name` on `conn` (held until the connection ends),
/// or fails with exit 75 naming the session that holds it. Never waits for a live holder; waits
/// up to [`GONE_HOLDER_WAIT`] for one whose process has exited (see [`Holder::is_gone`]).
pub async fn advisory_lock(
    conn: &mut PgConnection,
    name: &str,
    operation: &str,
) -> Result<(), OpsError> {
    let deadline = std::time::Instant::now() + GONE_HOLDER_WAIT;
    loop {
        let taken: bool =
            sqlx::query_scalar("select pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(name)
                .fetch_one(&mut *conn)
                .answer("taking the advisory lock")
                .await?;
        if taken {
            return Ok(());
        }
        let holder = advisory_holder(conn, name).await;
        let in_time = std::time::Instant::now() < deadline;
        // No holder: it let go between the two statements; try again.
        if in_time && holder.as_ref().is_none_or(Holder::is_gone) {
            tokio::time::sleep(GONE_HOLDER_POLL).await;
            continue;
        }
        let (who, hint) = match &holder {
            Some(h) if h.is_gone() => (
                format!("{}, whose process has exited but whose database session has not ended yet", h.describe()),
                "the session ends when PostgreSQL notices; retry in a minute, or end it with pg_terminate_backend".to_string(),
            ),
            Some(h) => (
                h.describe(),
                "it may run on another host sharing this database; wait for it to finish and retry".to_string(),
            ),
            None => (
                "holder unknown".to_string(),
                "wait for it to finish and retry".to_string(),
            ),
        };
        return Err(OpsError::new(
            Exit::TempFail,
            format!("another {operation} is running ({who})"),
        )
        .hint(hint));
    }
}

/// The session holding the advisory lock `name` in this database (advisory locks are per
/// database), if any and if it can be read.
async fn advisory_holder(conn: &mut PgConnection, name: &str) -> Option<Holder> {
    let row: Option<(i32, Option<String>, bool)> = sqlx::query_as(
        "select a.pid, nullif(a.application_name, ''), \
                a.client_addr is not distinct from inet_client_addr() from pg_locks l \
         join pg_stat_activity a on a.pid = l.pid \
         where l.locktype = 'advisory' and l.granted \
           and l.database = (select oid from pg_database where datname = current_database()) \
           and ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended($1, 0) limit 1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .answer("looking up the lock's holder")
    .await
    .unwrap_or(None);
    row.map(|(backend_pid, application_name, same_client)| Holder {
        backend_pid,
        application_name,
        same_client,
    })
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
    fn a_killed_creators_temp_file_is_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join("..op.lock.tmp-0123456789abcdef");
        let other = dir.path().join(".other.tmp-0123456789abcdef");
        let look_alike = dir.path().join("..op.lock.tmp-notours");
        for f in [&stale, &other, &look_alike] {
            std::fs::write(f, b"").expect("write");
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for f in [&stale, &other, &look_alike] {
            std::fs::File::options()
                .write(true)
                .open(f)
                .and_then(|file| file.set_modified(old))
                .expect("age");
        }
        let lock = RunLock::acquire(dir.path(), "op", "test").expect("lock");
        assert!(!stale.exists(), "the killed creator's temp file is removed");
        assert!(other.exists() && look_alike.exists(), "nothing else is");
        drop(lock);
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
