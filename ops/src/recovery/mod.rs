//! The restore procedure `restore` and `drill` run: a verified backup back into a database,
//! and its files into a directory.
//!
//! [`restore`] reads as the procedure: check the manifest → refuse a non-empty target (unless
//! `--clean`) and existing files (unless `--yes`) → stop services → stream decrypt →
//! `pg_restore` (one transaction: a failure leaves the target as it was), the dump verified as
//! it streams and the bundle beside it, the dump's last bytes held back until both checked out →
//! restore files, following the incremental chain → compare row counts and the intel graph
//! digest with the manifest → start services, also after a failure or a signal. Every refusal
//! comes before anything changes, and a damaged dump restores nothing. A signal (see
//! [`crate::interrupt`]) kills a running stop command, or stops the restore before pg_restore
//! starts or commits; the services are started either way. No file is ever written into
//! `[keys] dir` (backups made before keys were excluded hold them; see
//! [`crate::backup_set::fence`]): such entries are left out and reported, as is a second entry
//! for the same file. `drill` runs the same [`restore`] without services or files.

mod compare;
mod files;
pub(crate) mod services;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use ransomeye_kernel::config::Services;
use ransomeye_kernel::keys::SymmetricKey;
use serde::Serialize;

use crate::backup_set::check::{self, Tools};
use crate::backup_set::fence::{Excluded, KeysFence};
use crate::backup_set::manifest::Paths;
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::interrupt;
use crate::utils::elapsed_ms;

/// What to restore, where.
pub struct Plan<'a> {
    pub paths: Paths,
    pub key: &'a SymmetricKey,
    pub trust_keys: crate::trust::TrustKeys,
    pub tools: Tools,
    pub target_url: String,
    pub files_to: Option<FilesTo>,
    pub clean: bool,
    pub yes: bool,
    /// Services to stop and start around the restore (`None`: leave them alone).
    pub services: Option<&'a Services>,
    /// Shows the dump streaming into pg_restore (hidden off a terminal and with `--json`).
    pub progress: indicatif::ProgressBar,
}

/// Where backed-up files are restored (`--files-to`).
pub struct FilesTo {
    /// Each file goes to `DIR/<original path>`.
    pub dir: PathBuf,
    /// Nothing is written into the keys directory.
    pub keys: KeysFence,
}

/// What a restore did, as reported.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub backup: String,
    pub snapshot_time: String,
    pub tables_checked: usize,
    pub rows: u64,
    pub mismatches: Vec<String>,
    pub intel_digest_matches: bool,
    pub files_restored: usize,
    /// Backup entries not restored, with the reason (the keys directory).
    pub files_excluded: Vec<Excluded>,
    pub services_stopped: Vec<String>,
    pub services_started: Vec<String>,
    pub verify_ms: f64,
    pub restore_ms: f64,
    pub compare_ms: f64,
}

/// The restore procedure (see the module comment). The caller installs the signal handlers
/// ([`crate::interrupt::install`]).
pub async fn restore(plan: &Plan<'_>) -> Result<Outcome, OpsError> {
    let mut outcome = Outcome::default();
    let phase = Instant::now();
    // The manifest is checked here; the dump is verified as it streams into pg_restore and the
    // bundle beside it, and pg_restore gets the dump's last bytes (without which it can neither
    // finish nor commit) only once both checked out (see `check::pipe_dump`). So a damaged
    // backup restores nothing, and each file is read once.
    let manifest = check::quick(&plan.paths, &plan.trust_keys)?;
    check::check_key(&plan.paths, &manifest, plan.key)?;
    outcome.verify_ms = elapsed_ms(phase);
    outcome.backup = manifest.body.name.clone();
    outcome.snapshot_time = manifest.body.snapshot_time.clone();

    let mut target = db::connect(&plan.target_url, "restore").await?;
    refuse_non_empty(&mut target, plan.clean).await?;
    let files = match &plan.files_to {
        Some(to) => {
            let (files, excluded) = files::plan(to, &manifest, plan.yes)?;
            outcome.files_excluded = excluded;
            files
        }
        None => Vec::new(),
    };
    let pg_restore = plan.tools.pg_restore(&manifest.body.pg_dump_version)?;

    // A signal so far stops the run before anything changes, services included.
    interrupt::check("nothing was changed")?;
    if let Some(services) = plan.services {
        match services::run_commands(&services.stop, services.timeout_secs, "stop", true) {
            Ok(stopped) => outcome.services_stopped = stopped,
            Err(e) => {
                // Bring back whatever was stopped before the failure (or the signal).
                let started = services::start(services, &mut outcome);
                return Err(add_hint(
                    interrupt::attribute(e),
                    &format!("nothing was restored; {started}"),
                ));
            }
        }
    }
    let restored = async {
        crate::failpoint::pause("restore-before-pg-restore");
        interrupt::check("nothing was restored")?;
        let phase = Instant::now();
        let (mut cmd, url) = pg_restore.command_for(&plan.target_url)?;
        cmd.args(["--exit-on-error", "--single-transaction"])
            .arg(format!("--dbname={url}"));
        if plan.clean {
            cmd.args(["--clean", "--if-exists"]);
        }
        let piped = std::thread::scope(|scope| {
            let bundle = scope
                .spawn(|| check::verify_bundle(&plan.paths, &manifest, plan.key, &plan.trust_keys));
            let release = || {
                bundle
                    .join()
                    .map_err(|_| OpsError::new(Exit::Software, "the bundle check panicked"))??;
                // The last safe point: pg_restore has all but the dump's last bytes, and is
                // killed before it can commit.
                crate::failpoint::pause("restore-before-commit");
                interrupt::check(
                    "pg_restore was stopped before it could commit; the target database is as it was",
                )
            };
            check::pipe_dump(
                &plan.paths,
                &manifest,
                plan.key,
                cmd,
                Stdio::null(),
                release,
                &plan.progress,
            )
        });
        plan.progress.finish_and_clear();
        piped?;
        // Committed: the restore is finished (files, comparison) whatever arrives now.
        outcome.files_restored = files::restore(&plan.paths, &manifest, plan, &files)?;
        outcome.restore_ms = elapsed_ms(phase);

        let phase = Instant::now();
        compare::compare(&mut target, &plan.target_url, &manifest, &mut outcome).await?;
        outcome.compare_ms = elapsed_ms(phase);
        Ok::<(), OpsError>(())
    }
    .await
    .map_err(interrupt::attribute);
    if let Some(services) = plan.services {
        let started = services::start(services, &mut outcome);
        match restored {
            Ok(()) if outcome.services_started.len() < services.start.len() => {
                return Err(OpsError::new(
                    Exit::Unavailable,
                    format!("the restore succeeded, but {started}"),
                ))
            }
            Ok(()) => {}
            Err(e) => return Err(add_hint(e, &started)),
        }
    }
    restored?;
    Ok(outcome)
}

/// Exit 65 naming the differences when the restored data does not match the manifest.
pub fn mismatch_error(outcome: &Outcome) -> Result<(), OpsError> {
    if outcome.mismatches.is_empty() {
        return Ok(());
    }
    Err(OpsError::new(
        Exit::Data,
        format!(
            "the restored data does not match backup {}: {}",
            outcome.backup,
            outcome.mismatches.join("; ")
        ),
    ))
}

/// `e` with `more` (what happened to the services) put before its hint.
fn add_hint(e: OpsError, more: &str) -> OpsError {
    let hint = match &e.hint {
        Some(h) => format!("{more}; {h}"),
        None => more.to_string(),
    };
    e.hint(hint)
}

/// A target with tables is refused unless `--clean` (73: the restore cannot create into it).
async fn refuse_non_empty(conn: &mut sqlx::PgConnection, clean: bool) -> Result<(), OpsError> {
    let (tables,): (i64,) = sqlx::query_as(
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema') \
           and n.nspname not like 'pg_toast%'",
    )
    .fetch_one(&mut *conn)
    .answer("looking at the target database")
    .await?;
    if tables > 0 && !clean {
        return Err(OpsError::new(
            Exit::CantCreate,
            format!("the target database is not empty: it has {tables} tables"),
        )
        .hint("restore into an empty database, or pass --clean to drop and recreate the backup's objects"));
    }
    Ok(())
}
