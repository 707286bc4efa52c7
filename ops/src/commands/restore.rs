//! `restore`: a verified backup back into a database, and its files into a directory.
//!
//! [`run`] reads as the procedure: resolve the backup, the keys and the target → take the
//! restore lock → run the restore procedure with the configured services around it
//! (`crate::recovery`, which `drill` runs too; it also locks the target database) → report →
//! exit 65 when the restored data does not match the manifest.

use std::time::Instant;

use ransomeye_kernel::keys::{KeyDir, KeyPurpose};

use super::{say, Context};
use crate::backup_set::check::{self, Tools};
use crate::backup_set::fence::KeysFence;
use crate::cli::RestoreArgs;
use crate::error::OpsError;
use crate::interrupt;
use crate::recovery::{self, FilesTo, Plan};
use crate::run_lock::RunLock;
use crate::utils::{elapsed_ms, print_json, runtime};

/// Runs `restore`.
pub fn run(ctx: &Context, args: &RestoreArgs) -> Result<(), OpsError> {
    let started = Instant::now();
    crate::db::check_cli_url("--target-database-url", &args.target_database_url)?;
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Backup)?;
    let plan = Plan {
        paths: check::locate(&args.backup, &config.backup.dir)?,
        key: &key,
        trust_keys: crate::trust::verifying_keys(&config)?,
        tools: Tools::new(config.backup.pg_bin_dir.clone()),
        target_url: args.target_database_url.clone(),
        files_to: match args.files_to.as_deref() {
            Some(dir) => Some(FilesTo {
                dir: crate::utils::absolute(dir),
                keys: KeysFence::new(&config.keys.dir)?,
            }),
            None => None,
        },
        clean: args.clean,
        yes: args.yes,
        progress: ctx.progress("restoring", "bytes"),
        services: Some(&config.services),
        exclusive: true,
    };
    let _lock = lock(&config.backup.dir)?;
    let rt = runtime()?;
    interrupt::install()?;
    let outcome = rt.block_on(recovery::restore(&plan))?;
    rt.shutdown_background();
    let duration_ms = elapsed_ms(started);
    if ctx.json {
        print_json(&serde_json::json!({
            "status": if outcome.mismatches.is_empty() { "restored" } else { "mismatch" },
            "outcome": outcome,
            "duration_ms": duration_ms,
        }))?;
    } else {
        say!(
            ctx,
            "restored {} (snapshot {}) in {:.0} ms: {} tables, {} rows, {} files",
            outcome.backup,
            outcome.snapshot_time,
            duration_ms,
            outcome.tables_checked,
            outcome.rows,
            outcome.files_restored
        );
        for e in &outcome.files_excluded {
            say!(ctx, "  not restored {}: {}", e.path, e.reason);
        }
        for m in &outcome.mismatches {
            say!(ctx, "  MISMATCH: {m}");
        }
    }
    recovery::mismatch_error(&outcome)
}

/// One restore at a time on this host, whatever its target: two would stop and start the same
/// services under each other and write the same files. The lock file lives in the backup
/// directory; when that is read-only (backups restored from write-protected media) there is
/// nowhere to put it, and the target database's lock (taken by the procedure) is what remains.
fn lock(backup_dir: &std::path::Path) -> Result<Option<RunLock>, OpsError> {
    let read_only = nix::sys::statvfs::statvfs(backup_dir)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    if read_only || !backup_dir.is_dir() {
        tracing::warn!(
            dir = %backup_dir.display(),
            "the backup directory is read-only or missing: only the target database is locked against a second restore"
        );
        return Ok(None);
    }
    RunLock::acquire(backup_dir, "restore", "restore").map(Some)
}
