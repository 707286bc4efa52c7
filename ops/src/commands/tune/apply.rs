//! `tune postgres --apply`: the fragment installed as a conf.d include of the server's own
//! postgresql.conf, checked by the server, reloaded.
//!
//! Procedure: the server's postgresql.conf on this host → its `include_dir` (none: exit 78 —
//! postgresql.conf is the administrator's file and is never edited) → lock → back up the
//! fragment being replaced (written, then read back) → write the new one atomically, with
//! postgresql.conf's owner and mode so that the server can read it → `pg_file_settings`: an
//! error in our file puts the previous one back (or removes ours) and exits 78 → reload →
//! wait until the server has read its files → report the settings that wait for a restart.
//!
//! A crash before the write leaves the old fragment (and perhaps its backup); after it, the new
//! complete fragment, not yet reloaded: a rerun writes the same file and reloads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;
use sqlx::PgConnection;

use super::postgres::Server;
use super::{remove_stale_temps, utc_stamp};
use crate::commands::{say, Context};
use crate::db::Answer;
use crate::error::{Exit, OpsError};
use crate::run_lock::RunLock;

/// The fragment's name in the include directory: read after lower-numbered files, so it wins
/// over the distribution's, and before `zz-` files an administrator may keep for overrides.
pub(super) const FRAGMENT_NAME: &str = "90-ransomeye-tune.conf";
/// How long to wait for the server to read its files after `pg_reload_conf()`.
const RELOAD_WAIT: Duration = Duration::from_secs(10);

/// What `--apply` did (or, with --dry-run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The fragment's path.
    pub file: PathBuf,
    /// The copy of the fragment it replaced, if there was one.
    pub backup: Option<PathBuf>,
    /// The file already held this fragment: nothing written.
    pub unchanged: bool,
    /// Nothing was changed (--dry-run).
    pub dry_run: bool,
    /// Settings that take effect only after a restart.
    pub pending_restart: Vec<String>,
    /// Settings of the fragment that a later file overrides (name and that file).
    pub overridden: Vec<(String, String)>,
    /// Errors the server reports in other configuration files (left alone).
    pub other_errors: Vec<String>,
}

/// Installs `fragment` (see the module comment).
pub async fn apply(
    conn: &mut PgConnection,
    server: &Server,
    fragment: &str,
    dry_run: bool,
) -> Result<Applied, OpsError> {
    let config_file = local_config_file(server)?;
    let text = std::fs::read_to_string(&config_file)
        .map_err(|e| OpsError::from(PathError::new(FileAction::Read, &config_file, e)))?;
    let dir = include_dir(&config_file, &text)?;
    let file = dir.join(FRAGMENT_NAME);
    let previous = match std::fs::read_to_string(&file) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(PathError::new(FileAction::Read, &file, e).into()),
    };
    let unchanged = previous.as_deref() == Some(fragment);
    let backup_name = free_backup_name(&dir, &utc_stamp());
    let mut applied = Applied {
        file: file.clone(),
        backup: previous
            .as_ref()
            .filter(|_| !unchanged)
            .map(|_| backup_name.clone()),
        unchanged,
        dry_run,
        pending_restart: Vec::new(),
        overridden: Vec::new(),
        other_errors: Vec::new(),
    };
    if dry_run {
        return Ok(applied);
    }
    let started = std::time::SystemTime::now();
    let _lock = RunLock::acquire(&dir, "ransomeye-tune", "tune postgres --apply")?;
    remove_stale_temps(&dir, |target| target.starts_with(FRAGMENT_NAME), started);
    let meta = std::fs::metadata(&config_file)
        .map_err(|e| OpsError::from(PathError::new(FileAction::Read, &config_file, e)))?;
    // The server reads conf.d as its own user: the fragment gets postgresql.conf's owner and
    // mode (no setting in it is a secret).
    let ownership = Ownership::of(&meta);
    if !unchanged {
        if let (Some(old), Some(backup)) = (&previous, &applied.backup) {
            write_atomic(backup, old.as_bytes(), ownership, Replace::Never)?;
            read_back(backup, old)?;
        }
        write_atomic(&file, fragment.as_bytes(), ownership, Replace::Allowed)?;
        read_back(&file, fragment)?;
    }
    // A crash here leaves the new fragment unchecked and not reloaded: a rerun checks and
    // reloads it (the crash test).
    crate::failpoint::hit("tune-fragment-written");
    if let Err(e) = check(conn, &file, &mut applied).await {
        if !unchanged {
            roll_back(&file, previous.as_deref(), ownership)?;
        }
        return Err(e);
    }
    reload(conn).await?;
    applied.pending_restart =
        sqlx::query_scalar("select name from pg_settings where pending_restart order by name")
            .fetch_all(&mut *conn)
            .answer("reading pending_restart")
            .await?;
    Ok(applied)
}

/// `90-ransomeye-tune.conf.<stamp>.bak`, or `.<stamp>.<n>.bak` when runs in the same second
/// made that one already (a backup is never replaced).
fn free_backup_name(dir: &Path, stamp: &str) -> PathBuf {
    let mut n = 1u32;
    let mut name = dir.join(format!("{FRAGMENT_NAME}.{stamp}.bak"));
    while name.symlink_metadata().is_ok() {
        n += 1;
        name = dir.join(format!("{FRAGMENT_NAME}.{stamp}.{n}.bak"));
    }
    name
}

/// The server's postgresql.conf, which must be on this host.
fn local_config_file(server: &Server) -> Result<PathBuf, OpsError> {
    let Some(config_file) = server.config_file.clone() else {
        return Err(OpsError::new(
            Exit::NoPerm,
            "the database role may not read config_file and data_directory",
        )
        .hint("connect as a superuser or a member of pg_read_all_settings to --apply"));
    };
    if !server.local || !config_file.is_file() {
        return Err(OpsError::new(
            Exit::Config,
            format!(
                "the server's configuration {} is not on this host",
                config_file.display()
            ),
        )
        .hint("run --apply on the database host, or write the fragment with -o FILE and install it there"));
    }
    Ok(config_file)
}

/// The directory of postgresql.conf's last `include_dir` (relative paths are relative to the
/// file's directory), which must exist.
pub(super) fn include_dir(config_file: &Path, text: &str) -> Result<PathBuf, OpsError> {
    let Some(value) = text.lines().filter_map(include_dir_value).next_back() else {
        return Err(OpsError::new(
            Exit::Config,
            format!("{} has no include_dir: tune will not edit it", config_file.display()),
        )
        .hint(format!(
            "add the line include_dir = 'conf.d' to {} (Debian's default has it), create the directory, and run again; or install the fragment by hand (-o FILE)",
            config_file.display()
        )));
    };
    let base = config_file.parent().unwrap_or(Path::new("/"));
    let dir = base.join(value);
    if !dir.is_dir() {
        return Err(OpsError::new(
            Exit::Config,
            format!(
                "include_dir '{}' of {} is not a directory",
                dir.display(),
                config_file.display()
            ),
        )
        .hint("create it (owned by the server's user) and run again"));
    }
    Ok(dir)
}

/// The value of an `include_dir = 'x'` (or `include_dir 'x'`) line; none for comments and
/// other lines.
fn include_dir_value(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("include_dir")?;
    if !rest.starts_with([' ', '\t', '=', '\'']) {
        return None;
    }
    let rest = rest.trim_start().trim_start_matches('=').trim_start();
    if let Some(quoted) = rest.strip_prefix('\'') {
        let end = quoted.find('\'')?;
        return Some(quoted[..end].to_string());
    }
    let bare: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '#')
        .collect();
    (!bare.is_empty()).then_some(bare)
}

fn read_back(path: &Path, expected: &str) -> Result<(), OpsError> {
    let got = std::fs::read_to_string(path)
        .map_err(|e| OpsError::from(PathError::new(FileAction::Read, path, e)))?;
    if got != expected {
        return Err(OpsError::new(
            Exit::Io,
            format!(
                "{}: reads back different from what was written",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// A row of pg_file_settings: file, line, name, value, applied, error; and the setting's
/// context.
type FileSetting = (
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
    Option<String>,
);

/// What pg_file_settings says of a changed setting that only a restart can apply: not an
/// error in the file (pending_restart reports it after the reload).
const NEEDS_RESTART: &str = "setting could not be applied";

/// Asks the server to parse its files: errors in ours fail (78); settings of ours that a later
/// file overrides, and errors in other files, are noted.
async fn check(
    conn: &mut PgConnection,
    file: &Path,
    applied: &mut Applied,
) -> Result<(), OpsError> {
    let rows: Vec<FileSetting> = sqlx::query_as(
        "select f.sourcefile, f.sourceline, f.name, f.setting, f.applied, f.error, s.context \
         from pg_file_settings f left join pg_settings s on s.name = f.name order by f.seqno",
    )
    .fetch_all(&mut *conn)
    .answer("checking the configuration files (pg_file_settings)")
    .await?;
    let ours = file.to_string_lossy();
    let mut errors = Vec::new();
    for (source, line, name, value, was_applied, error, context) in &rows {
        let source = source.as_deref().unwrap_or("?");
        let name = name.as_deref().unwrap_or("?");
        let waits_for_restart =
            error.as_deref() == Some(NEEDS_RESTART) && context.as_deref() == Some("postmaster");
        if waits_for_restart {
            continue;
        }
        match error {
            Some(error) if source == ours => errors.push(format!(
                "line {}: {name} = '{}': {error}",
                line.unwrap_or(0),
                value.as_deref().unwrap_or("")
            )),
            Some(error) => applied
                .other_errors
                .push(format!("{source}:{}: {name}: {error}", line.unwrap_or(0))),
            None if source == ours && !was_applied => {
                let winner = rows
                    .iter()
                    .find(|r| r.2.as_deref() == Some(name) && r.4)
                    .and_then(|r| r.0.clone())
                    .unwrap_or_else(|| "a later file".into());
                applied.overridden.push((name.to_string(), winner));
            }
            None => {}
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(OpsError::new(
        Exit::Config,
        format!(
            "the server rejects {}: {}",
            file.display(),
            errors.join("; ")
        ),
    )
    .hint("the previous file was put back and nothing was reloaded; check --memory, --cpus and --connections against this server"))
}

/// Puts the previous fragment back, or removes ours when there was none.
fn roll_back(file: &Path, previous: Option<&str>, ownership: Ownership) -> Result<(), OpsError> {
    match previous {
        Some(old) => {
            write_atomic(file, old.as_bytes(), ownership, Replace::Allowed)?;
        }
        None => {
            std::fs::remove_file(file)
                .map_err(|e| OpsError::from(PathError::new(FileAction::Remove, file, e)))?;
        }
    }
    Ok(())
}

/// `pg_reload_conf()`, then waits (bounded) until this session has read the files again: the
/// postmaster re-reads them first and then signals every backend, ours included.
async fn reload(conn: &mut PgConnection) -> Result<(), OpsError> {
    let loaded = || {
        sqlx::query_scalar::<sqlx::Postgres, f64>(
            "select extract(epoch from pg_conf_load_time())::float8",
        )
    };
    let before = loaded()
        .fetch_one(&mut *conn)
        .answer("reading pg_conf_load_time()")
        .await?;
    let ok: bool = sqlx::query_scalar("select pg_reload_conf()")
        .fetch_one(&mut *conn)
        .answer("reloading the configuration")
        .await?;
    if !ok {
        return Err(OpsError::new(
            Exit::Unavailable,
            "pg_reload_conf() could not signal the server",
        ));
    }
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let now = loaded()
            .fetch_one(&mut *conn)
            .answer("reading pg_conf_load_time()")
            .await?;
        if now > before {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(OpsError::new(
                Exit::TempFail,
                format!(
                    "the server did not read its configuration within {} s of pg_reload_conf()",
                    RELOAD_WAIT.as_secs()
                ),
            )
            .hint("the fragment is in place; check the server's log, then run again"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The human lines for what --apply did.
pub fn print_human(ctx: &Context, a: &Applied) {
    let file = a.file.display();
    if a.dry_run {
        say!(
            ctx,
            "Dry run: would write {file}{}; nothing changed.",
            match &a.backup {
                Some(b) => format!(" (keeping the current one as {})", b.display()),
                None if a.unchanged => " (it already holds this fragment)".into(),
                None => String::new(),
            }
        );
        return;
    }
    if a.unchanged {
        say!(
            ctx,
            "{file} already holds this fragment; configuration reloaded."
        );
    } else {
        say!(ctx, "Wrote {file}; configuration reloaded.");
    }
    if let Some(b) = &a.backup {
        say!(ctx, "The previous fragment is kept as {}.", b.display());
    }
    for (name, winner) in &a.overridden {
        say!(ctx, "warning: {name} is overridden by {winner}");
    }
    for e in &a.other_errors {
        say!(
            ctx,
            "warning: the server reports an error in another file: {e}"
        );
    }
    if a.pending_restart.is_empty() {
        say!(ctx, "Every setting is in effect.");
    } else {
        say!(
            ctx,
            "Restart PostgreSQL for these to take effect: {}.",
            a.pending_restart.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_dir_lines_are_found_and_comments_skipped() {
        assert_eq!(
            include_dir_value("include_dir = 'conf.d'\t# add settings"),
            Some("conf.d".into())
        );
        assert_eq!(
            include_dir_value("  include_dir 'extra'"),
            Some("extra".into())
        );
        assert_eq!(
            include_dir_value("include_dir=conf.d"),
            Some("conf.d".into())
        );
        assert_eq!(include_dir_value("#include_dir = 'conf.d'"), None);
        assert_eq!(include_dir_value("include_dirs = 'x'"), None);
        assert_eq!(include_dir_value("include = 'x.conf'"), None);
    }

    #[test]
    fn the_last_include_dir_counts_relative_to_the_config_and_must_exist() {
        let d = tempfile::tempdir().expect("should succeed");
        std::fs::create_dir(d.path().join("conf.d")).expect("should succeed");
        let conf = d.path().join("postgresql.conf");
        let text = "#include_dir = 'nope'\ninclude_dir = 'missing'\ninclude_dir = 'conf.d'\n";
        assert_eq!(
            include_dir(&conf, text).expect("should succeed"),
            d.path().join("conf.d")
        );
        let err = include_dir(&conf, "shared_buffers = 128MB\n").expect_err("should fail");
        assert_eq!(err.exit, Exit::Config);
        assert!(err.what.contains("has no include_dir"), "{}", err.what);
        let err = include_dir(&conf, "include_dir = 'missing'\n").expect_err("should fail");
        assert!(err.what.contains("is not a directory"), "{}", err.what);
    }

    #[test]
    fn backups_made_in_the_same_second_get_their_own_names() {
        let d = tempfile::tempdir().expect("tempdir");
        let first = free_backup_name(d.path(), "20261201T220000Z");
        assert_eq!(
            first,
            d.path().join("90-ransomeye-tune.conf.20261201T220000Z.bak")
        );
        std::fs::write(&first, "a").expect("write");
        let second = free_backup_name(d.path(), "20261201T220000Z");
        assert_eq!(
            second,
            d.path()
                .join("90-ransomeye-tune.conf.20261201T220000Z.2.bak")
        );
    }

    #[test]
    fn roll_back_restores_the_previous_file_or_removes_ours() {
        let d = tempfile::tempdir().expect("should succeed");
        let file = d.path().join(FRAGMENT_NAME);
        let own = Ownership {
            mode: 0o644,
            gid: None,
            uid: None,
        };
        std::fs::write(&file, "work_mem = 'bad'\n").expect("should succeed");
        roll_back(&file, Some("work_mem = '4MB'\n"), own).expect("should succeed");
        assert_eq!(
            std::fs::read_to_string(&file).expect("should succeed"),
            "work_mem = '4MB'\n"
        );
        roll_back(&file, None, own).expect("should succeed");
        assert!(!file.exists());
    }
}
