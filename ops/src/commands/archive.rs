//! `archive`: audit-log rows older than N days → encrypted cold storage, verified before deleted.
//!
//! [`run`] reads as the procedure: lock → finish what an interrupted run left → cutoff →
//! select → encode → compress → encrypt → persist → verify → prune → vacuum → report.
//!
//! Crash safety comes from the order of durable steps. The archive is written to a temp file;
//! its manifest (state `written`) is written next; only then is the archive fsynced and renamed
//! into place. Rows are deleted only after the archive under its final name read back in full
//! and matched; the manifest becomes `pruned` after the delete. A run interrupted anywhere leaves
//! either a temp file (removed by the next run), a `written` manifest whose archive is still at
//! its temp name (the next run checks that file against the manifest and renames it into place;
//! nothing was deleted), or a `written` archive whose prune the next run verifies and completes.
//!
//! The prune deletes a row only while it is still the version the archive holds: each delete
//! renders the row as the export did and compares it with its archived line, in the delete
//! statement itself. A row
//! updated after the export stays in the table (a later run archives its new version), and
//! deleting a row that is already gone is a no-op, so nothing is ever lost or archived twice.
//!
//! Runs delete only their own temp files (`.logs_*.tmp-*`). A data file without its manifest,
//! or a manifest without its data file, is an orphan: reported by the run, `archive list` and
//! `archive verify --all`, and kept until the operator resolves it. `--dry-run` changes nothing
//! at all: it reports what the run would complete, remove and archive.
//!
//! The steps live in submodules by job: `shape` (the table's columns, the cutoff, the dry run's
//! estimate), `recover` (the directory scan, orphans, interrupted runs), `export`, `check` (the
//! read-back against the manifest), `prune` (and the vacuum); `inspect` holds `archive list`,
//! `verify` and `cat`, `restore` holds `archive restore`. The file format is `manifest`,
//! `stream` and `versions`.

mod check;
mod export;
mod inspect;
pub(crate) mod manifest;
mod prune;
mod recover;
mod restore;
mod shape;
mod stream;
mod versions;

use std::path::PathBuf;
use std::time::Instant;

use ransomeye_kernel::config::Config;
use ransomeye_kernel::keys::{KeyDir, KeyPurpose, SigningKey, SymmetricKey};
use serde::Serialize;
use sqlx::PgConnection;

use self::check::verify_archive_against;
use self::export::export;
use self::inspect::{cat, list, verify};
use self::manifest::manifest_path;
use self::prune::{prune, vacuum};
use self::recover::{finish_interrupted, Orphan, Recovery};
use self::restore::restore;
use self::shape::{cutoff, estimate, TableShape};
use super::{say, Context};
use crate::cli::{ArchiveArgs, ArchiveCommand, ArchiveRunArgs};
use crate::db::{self, Answer};
use crate::error::OpsError;
use crate::pace::Pace;
use crate::run_lock::{self, RunLock};
use crate::utils::{elapsed_ms, print_json, runtime};

/// Runs `archive` or one of its subcommands.
pub fn run(ctx: &Context, args: &ArchiveArgs) -> Result<(), OpsError> {
    match &args.command {
        None => archive(ctx, &args.run),
        Some(ArchiveCommand::List) => list(ctx),
        Some(ArchiveCommand::Verify { file, all }) => verify(ctx, file.as_deref(), *all),
        Some(ArchiveCommand::Cat { file }) => cat(ctx, file),
        Some(ArchiveCommand::Restore { file }) => restore(ctx, file),
    }
}

/// What one archive run did, as reported.
#[derive(Debug, Default, Serialize)]
struct RunReport {
    status: &'static str,
    table: String,
    cutoff: String,
    file: Option<PathBuf>,
    manifest: Option<PathBuf>,
    rows: u64,
    rows_deleted: u64,
    /// Delete transactions of the prune, and the time it rested between them for other
    /// writers (see [`crate::pace`]).
    prune_transactions: u64,
    prune_rest_ms: f64,
    plaintext_bytes: u64,
    file_bytes: u64,
    compression_ratio: Option<f64>,
    estimated_file_bytes: Option<u64>,
    /// Dry run: bytes free on the archive dir's filesystem, and whether the estimated file fits
    /// (when it does not, the run would fail with exit 74; the dry run itself exits 0).
    free_bytes: Option<u64>,
    space_ok: Option<bool>,
    /// Interrupted archives completed (in a dry run: that the run would complete).
    recovered: Vec<PathBuf>,
    /// Temp files of interrupted runs removed (in a dry run: that the run would remove).
    removed_temp_files: Vec<PathBuf>,
    /// Orphans found in the archive directory, all kept.
    orphans: Vec<Orphan>,
    phases_ms: Phases,
    duration_ms: f64,
}

#[derive(Debug, Default, Serialize)]
struct Phases {
    lock: f64,
    recover: f64,
    export: f64,
    verify: f64,
    prune: f64,
    vacuum: f64,
}

/// Everything a run needs, resolved before any work starts.
struct Job {
    dir: PathBuf,
    table: String,
    time_column: String,
    days: u32,
    batch_size: usize,
    pace: Pace,
    zstd_level: i32,
    vacuum: bool,
    archive_key: SymmetricKey,
    signing_key: SigningKey,
    trust_keys: crate::trust::TrustKeys,
    /// `--json` or `-q`: no progress display.
    no_progress: bool,
}

fn archive(ctx: &Context, opts: &ArchiveRunArgs) -> Result<(), OpsError> {
    let started = Instant::now();
    let config = ctx.config()?;
    let job = Job::prepare(&config, opts, ctx.json || ctx.quiet)?;
    let mut report = RunReport {
        table: job.table.clone(),
        ..RunReport::default()
    };
    let rt = runtime()?;
    if !opts.dry_run {
        crate::interrupt::install()?;
    }
    rt.block_on(async {
        let mut conn = db::connect(&config.database.url, "archive").await?;
        utc_session(&mut conn).await?;
        let phase = Instant::now();
        let _lock = lock(&mut conn, &job, opts.dry_run).await?;
        report.phases_ms.lock = elapsed_ms(phase);

        let shape = TableShape::load(&mut conn, &job.table, &job.time_column).await?;

        let phase = Instant::now();
        let Recovery {
            completed,
            pending_ids,
            temp_files,
            orphans,
        } = finish_interrupted(&mut conn, &job, &shape, opts.dry_run).await?;
        report.recovered = completed;
        report.removed_temp_files = temp_files;
        report.orphans = orphans;
        for orphan in &report.orphans {
            tracing::warn!(file = %orphan.file.display(), "orphan kept: {}; see `ransomeye-ops archive list`", orphan.reason);
        }
        report.phases_ms.recover = elapsed_ms(phase);

        let cutoff = cutoff(&mut conn, job.days).await?;
        report.cutoff = cutoff.clone();
        if opts.dry_run {
            estimate(&mut conn, &job, &shape, &cutoff, &pending_ids, &mut report).await?;
            return space_for_estimate(&job.dir, &mut report);
        }

        let phase = Instant::now();
        let Some((path, manifest, versions)) = export(&mut conn, &job, &shape, &cutoff).await? else {
            report.status = "nothing_to_archive";
            return Ok(());
        };
        report.phases_ms.export = elapsed_ms(phase);
        report.rows = manifest.body.rows;
        report.plaintext_bytes = manifest.body.plaintext_bytes;
        report.file_bytes = manifest.body.file_bytes;
        report.compression_ratio = ratio(manifest.body.plaintext_bytes, manifest.body.file_bytes);
        report.manifest = Some(manifest_path(&path));
        report.file = Some(path.clone());

        let phase = Instant::now();
        verify_archive_against(
            &path,
            &manifest,
            &job.archive_key,
            &job.trust_keys,
            Some(versions.reader()?),
        )
        .await?;
        report.phases_ms.verify = elapsed_ms(phase);
        crate::failpoint::hit("archive-before-prune");

        let phase = Instant::now();
        let pruned = prune(&mut conn, &job, &shape, &path, manifest, Some(versions)).await?;
        report.rows_deleted = pruned.rows;
        report.prune_transactions = pruned.transactions;
        report.prune_rest_ms = pruned.rested.as_secs_f64() * 1000.0;
        report.phases_ms.prune = elapsed_ms(phase);

        if job.vacuum {
            let phase = Instant::now();
            vacuum(&mut conn, &shape).await?;
            report.phases_ms.vacuum = elapsed_ms(phase);
        }
        report.status = "archived";
        Ok::<(), OpsError>(())
    })
    .map_err(crate::interrupt::attribute)?;
    rt.shutdown_background();
    report.duration_ms = elapsed_ms(started);
    print_report(ctx, &report)
}

impl Job {
    fn prepare(config: &Config, opts: &ArchiveRunArgs, no_progress: bool) -> Result<Job, OpsError> {
        let dir = config.archive.dir.clone();
        crate::dirs::check_writable(&dir, "[archive] dir")?;
        let keys = KeyDir::new(&config.keys.dir);
        let trust_keys = crate::trust::verifying_keys(config)?;
        let signing_key = crate::trust::signing_key(config)?;
        Ok(Job {
            dir,
            table: config.archive.table.clone(),
            time_column: config.archive.time_column.clone(),
            days: opts.days.unwrap_or(config.archive.retention_days),
            batch_size: opts.batch_size as usize,
            pace: match config.archive.prune_slice_ms {
                0 => Pace::UNPACED,
                ms => Pace {
                    slice: std::time::Duration::from_millis(ms.into()),
                    rest_percent: config.archive.prune_rest_percent,
                },
            },
            zstd_level: opts.zstd_level,
            vacuum: !opts.no_vacuum,
            archive_key: keys.load_symmetric(KeyPurpose::Archive)?,
            signing_key,
            trust_keys,
            no_progress,
        })
    }
}

/// Every statement of a run sees times in UTC: the archive's JSON is written that way, and the
/// prune compares rows with it.
async fn utc_session(conn: &mut PgConnection) -> Result<(), OpsError> {
    sqlx::query("set time zone 'UTC'")
        .execute(&mut *conn)
        .answer("setting the session time zone")
        .await?;
    Ok(())
}

/// Dry run: whether the archive dir's filesystem has room for the estimated file, so that a
/// run that would end in "no space left" (exit 74) is seen before it starts.
fn space_for_estimate(dir: &std::path::Path, report: &mut RunReport) -> Result<(), OpsError> {
    let free = crate::dirs::free_bytes(dir, "[archive] dir")?;
    report.free_bytes = Some(free);
    report.space_ok = Some(
        report
            .estimated_file_bytes
            .is_none_or(|needed| needed <= free),
    );
    Ok(())
}

/// Step 1: one run per table: the lock file in the archive dir, then the database lock.
///
/// A dry run takes only the database lock (every run of the table holds it, whatever its
/// directory), so that it neither reports a live run's files as interrupted nor writes the
/// lock file: it changes nothing on disk.
async fn lock(
    conn: &mut PgConnection,
    job: &Job,
    dry_run: bool,
) -> Result<Option<RunLock>, OpsError> {
    let what = format!("archive run for table {}", job.table);
    let file_lock = if dry_run {
        None
    } else {
        Some(RunLock::acquire(
            &job.dir,
            &format!("archive-{}", job.table),
            &what,
        )?)
    };
    run_lock::advisory_lock(conn, &format!("ransomeye-ops archive {}", job.table), &what).await?;
    Ok(file_lock)
}

/// Step 8: the report, for people or machines.
fn print_report(ctx: &Context, r: &RunReport) -> Result<(), OpsError> {
    if ctx.json {
        return print_json(r);
    }
    let dry_run = r.status == "dry_run";
    for path in &r.recovered {
        if dry_run {
            say!(
                ctx,
                "would complete the interrupted archive {}",
                path.display()
            );
        } else {
            say!(ctx, "completed the interrupted archive {}", path.display());
        }
    }
    if dry_run {
        for path in &r.removed_temp_files {
            say!(
                ctx,
                "would remove {}, a temp file of an interrupted run",
                path.display()
            );
        }
    }
    match r.status {
        "nothing_to_archive" => say!(ctx, "nothing to archive: no row of {} is older than {}", r.table, r.cutoff),
        "dry_run" => say!(
            ctx,
            "dry run: {} rows of {} older than {} would be archived ({} bytes of JSON, about {} bytes encrypted); nothing changed",
            r.rows,
            r.table,
            r.cutoff,
            r.plaintext_bytes,
            r.estimated_file_bytes.unwrap_or(0)
        ),
        _ => {
            say!(
                ctx,
                "archived {} rows of {} older than {} to {}",
                r.rows,
                r.table,
                r.cutoff,
                r.file.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
            );
            say!(
                ctx,
                "  {} bytes of JSON -> {} bytes encrypted (ratio {:.1}), verified, {} rows deleted",
                r.plaintext_bytes,
                r.file_bytes,
                r.compression_ratio.unwrap_or(0.0),
                r.rows_deleted
            );
            let p = &r.phases_ms;
            say!(
                ctx,
                "  export {:.0} ms, verify {:.0} ms, prune {:.0} ms ({} transactions, {:.0} ms of it resting for other writers), vacuum {:.0} ms, total {:.0} ms",
                p.export, p.verify, p.prune, r.prune_transactions, r.prune_rest_ms, p.vacuum, r.duration_ms
            );
        }
    }
    if dry_run && r.space_ok == Some(false) {
        // A problem the dry run found: shown even with -q.
        println!(
            "the run would fail with exit 74: [archive] dir has {} bytes free, the archive needs about {}",
            r.free_bytes.unwrap_or(0),
            r.estimated_file_bytes.unwrap_or(0)
        );
    }
    Ok(())
}

fn ratio(plain: u64, file: u64) -> Option<f64> {
    (file > 0).then(|| (plain as f64 / file as f64 * 100.0).round() / 100.0)
}
