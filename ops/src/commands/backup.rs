//! `backup`: one consistent, encrypted, verified backup of the database and the files around it.
//!
//! [`run`] reads as the procedure: lock → clear what an interrupted run left → open a snapshot
//! → dump it (pg_dump → zstd → envelope) while counting rows and exporting the intel graph in
//! the same snapshot → bundle the files (tar → zstd → envelope) → sign the manifest → commit →
//! verify the new backup → apply retention → report.
//!
//! The steps live in submodules by job: `snapshot` (the snapshot and what is read in it),
//! `dump`, `files` (the bundle), `commit` (durable order, interrupted runs, removal) and
//! `retention`; `backup list` and `backup cat` are in `list`. What a backup on disk is
//! (names, manifest, bundle, checks) is `crate::backup_set`, shared with the other commands.
//!
//! No write lock is needed for consistency: the snapshot is an MVCC snapshot exported from a
//! `REPEATABLE READ` transaction (`pg_export_snapshot()`), which pg_dump imports
//! (`--snapshot`), so the dump, the row counts and the graph export all see exactly the same
//! committed data while writers carry on.
//!
//! Verification is a read-back that overlaps the writing instead of following it: a second
//! thread reads the dump's temp file right behind the writer ([`crate::follow`]) and runs every
//! check `verify` runs on it (authenticated decrypt, decompression with zstd's content
//! checksum, SHA-256 of file and plaintext, `pg_restore --list`); the bundle is read back as
//! soon as it is written, while pg_dump still runs. Once committed, the files under their final
//! names are hashed again against the signed manifest, so the bytes kept are the bytes that
//! were read back.
//!
//! Durable order: the dump, the bundle and the manifest are written to temp files and fsynced;
//! then the dump and the bundle are renamed to their names, and the manifest last: its rename
//! is the backup's commit point. An interrupted run leaves only the atomic writer's temp files
//! (`.<file>.tmp-<16 hex>`), plus data files under their names while its manifest is still a
//! temp file. The next run finishes that (`commit::settle_interrupted`): when the temp manifest
//! is complete, signed, and names exactly the bytes of both data files, the backup is
//! completed; otherwise the temp files are removed. Deleting a backup (retention, a failed
//! verification) takes the same steps backwards (`commit::remove_backup`). Nothing else is ever
//! deleted: a data file under its name with neither a manifest nor a temp manifest is an orphan
//! (its manifest was lost), reported by `backup`, `backup list`, `verify --all` and `health`,
//! and kept.
//! Retention deletes old backups only after the new one verified.

mod commit;
mod dump;
mod files;
mod list;
mod retention;
mod snapshot;

use std::path::PathBuf;
use std::time::Instant;

use ransomeye_kernel::atomic_file::AtomicFile;
use ransomeye_kernel::config::Config;
use ransomeye_kernel::keys::{KeyDir, KeyPurpose, SigningKey, SymmetricKey};
use serde::Serialize;
use sqlx::PgConnection;

use super::{say, Context};
use crate::backup_set::fence::{self, KeysFence};
use crate::backup_set::manifest::{self, Manifest, Paths, SealedFile};
use crate::backup_set::{bundle, check};
use crate::cli::{BackupArgs, BackupCommand};
use crate::db;
use crate::error::OpsError;
use crate::run_lock::{self, RunLock};
use crate::sealed::Digests;
use crate::utils::{elapsed_ms, print_json, runtime};

/// Runs `backup` or one of its subcommands.
pub fn run(ctx: &Context, args: &BackupArgs) -> Result<(), OpsError> {
    match &args.command {
        None => backup(ctx, args.keep),
        Some(BackupCommand::List) => list::list(ctx),
        Some(BackupCommand::Cat { backup }) => list::cat(ctx, backup),
    }
}

/// What one backup run did, as reported.
#[derive(Debug, Default, Serialize)]
struct Report {
    status: &'static str,
    backup: String,
    manifest: PathBuf,
    snapshot_time: String,
    dump: Option<SealedFile>,
    files: Option<SealedFile>,
    tables: usize,
    rows: u64,
    intel_nodes: u64,
    intel_edges: u64,
    entries_stored: usize,
    entries_unchanged: u64,
    skipped: Vec<String>,
    /// Paths left out on purpose (the keys directory), with the reason.
    excluded: Vec<fence::Excluded>,
    /// Backups an interrupted run left committed up to the manifest, completed by this run.
    completed: Vec<String>,
    /// Data files without a manifest: kept, reported.
    orphans: Vec<String>,
    deleted: Vec<String>,
    kept_unverified: Vec<String>,
    phases_ms: Phases,
    duration_ms: f64,
}

/// Wall-clock milliseconds of each step, as reported.
#[derive(Debug, Default, Serialize)]
struct Phases {
    lock: f64,
    /// From the snapshot until pg_dump, the writer and the read-back are done; includes the
    /// counts, the graph export and the bundle.
    dump: f64,
    /// The bundle written and read back (during `dump`).
    files: f64,
    /// The committed files hashed against the manifest.
    verify: f64,
    retention: f64,
}

/// Everything a run needs, resolved before any work starts.
struct Job {
    dir: PathBuf,
    keep: u32,
    zstd_level: i32,
    config_files: Vec<PathBuf>,
    artifacts_dir: Option<PathBuf>,
    keys_fence: KeysFence,
    pg_bin_dir: Option<PathBuf>,
    database_url: String,
    backup_key: SymmetricKey,
    signing_key: SigningKey,
    trust_keys: crate::trust::TrustKeys,
    json: bool,
}

impl Job {
    fn prepare(ctx: &Context, config: &Config, keep: Option<u32>) -> Result<Job, OpsError> {
        let dir = config.backup.dir.clone();
        crate::dirs::check_writable(&dir, "[backup] dir")?;
        let mut config_files = vec![crate::utils::absolute(&ctx.config_source.path)];
        config_files.extend(
            config
                .backup
                .include
                .iter()
                .map(|p| crate::utils::absolute(p)),
        );
        Ok(Job {
            dir,
            keep: keep.unwrap_or(config.backup.keep),
            zstd_level: config.backup.zstd_level,
            config_files,
            artifacts_dir: config.backup.artifacts_dir.clone(),
            pg_bin_dir: config.backup.pg_bin_dir.clone(),
            database_url: config.database.url.clone(),
            backup_key: KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Backup)?,
            signing_key: crate::trust::signing_key(config)?,
            trust_keys: crate::trust::verifying_keys(config)?,
            // After the keys: a missing or unreadable keys directory is their error to report.
            keys_fence: KeysFence::new(&config.keys.dir)?,
            json: ctx.json,
        })
    }
}

/// A sealed file written under its temp name, not yet committed, and its digests.
struct Sealed {
    file: AtomicFile,
    digests: Digests,
}

fn backup(ctx: &Context, keep: Option<u32>) -> Result<(), OpsError> {
    let started = Instant::now();
    let config = ctx.config()?;
    let job = Job::prepare(ctx, &config, keep)?;
    let mut report = Report::default();
    let rt = runtime()?;
    crate::interrupt::install()?;
    rt.block_on(take_backup(&job, &mut report))
        .map_err(crate::interrupt::attribute)?;
    rt.shutdown_background();
    report.duration_ms = elapsed_ms(started);
    print_report(ctx, &report)
}

/// The procedure (see the module comment), filling in `report` as it goes.
async fn take_backup(job: &Job, report: &mut Report) -> Result<(), OpsError> {
    let mut conn = db::connect(&job.database_url, "backup").await?;
    let phase = Instant::now();
    let _lock = lock(&mut conn, job).await?;
    report.phases_ms.lock = elapsed_ms(phase);
    report.completed = commit::settle_interrupted(&job.dir, &job.trust_keys)?;
    report.orphans = manifest::orphans(&job.dir)?;

    let phase = Instant::now();
    let taken = snapshot::take(&mut conn, job).await?;
    report.phases_ms.dump = elapsed_ms(phase);
    report.phases_ms.files = taken.bundle_ms;

    let manifest = Manifest::sign(taken.body(job), &job.signing_key)?;
    // The safe point: nothing is committed yet, and returning drops (removes) the temp files.
    crate::failpoint::pause("backup-commit-safe-point");
    crate::interrupt::check("the new backup was not committed and its temp files were removed; older backups are untouched")?;
    let snapshot::Taken {
        paths,
        dump,
        bundle,
        ..
    } = taken;
    commit::persist(dump.file, bundle.sealed.file, &manifest, &paths, &job.dir)?;
    report.record(&paths, &manifest, &bundle.written);

    let phase = Instant::now();
    verify_new(job, &paths)?;
    report.phases_ms.verify = elapsed_ms(phase);

    let phase = Instant::now();
    let retention = retention::apply(job, &paths.name)?;
    report.deleted = retention.deleted;
    report.kept_unverified = retention.kept_unverified;
    report.phases_ms.retention = elapsed_ms(phase);
    report.status = "verified";
    Ok(())
}

/// Step 1: one backup at a time: the lock file in the backup dir, then the database lock.
async fn lock(conn: &mut PgConnection, job: &Job) -> Result<RunLock, OpsError> {
    let file_lock = RunLock::acquire(&job.dir, "backup", "backup")?;
    run_lock::advisory_lock(conn, "ransomeye-ops backup", "backup").await?;
    Ok(file_lock)
}

/// Step 7: the committed files hashed again against the signed manifest. A backup that does
/// not read back is not a backup: it is unmade (manifest first) so that nothing relies on it,
/// retention least of all.
fn verify_new(job: &Job, paths: &Paths) -> Result<(), OpsError> {
    if crate::failpoint::armed("backup-damage-before-verify") {
        commit::damage_for_test(&paths.dump)?;
    }
    if let Err(e) = check::committed(paths, &job.trust_keys) {
        commit::remove_backup(&job.dir, paths)?;
        return Err(e.hint(format!(
            "the new backup {} failed its own verification and was removed; older backups are untouched. Check the disk (dmesg) and rerun",
            paths.name
        )));
    }
    Ok(())
}

impl Report {
    /// What the committed backup holds, from its manifest and what the bundle wrote.
    fn record(&mut self, paths: &Paths, manifest: &Manifest, written: &bundle::Written) {
        let tables = &manifest.body.tables;
        self.backup = paths.name.clone();
        self.manifest = paths.manifest.clone();
        self.snapshot_time = manifest.body.snapshot_time.clone();
        self.tables = tables.len();
        self.rows = tables.values().sum();
        self.intel_nodes = manifest.body.intel.nodes;
        self.intel_edges = manifest.body.intel.edges;
        self.entries_stored = manifest
            .body
            .entries
            .iter()
            .filter(|e| e.stored_in == paths.name)
            .count();
        self.entries_unchanged = written.unchanged;
        self.skipped = written.skipped.clone();
        self.excluded = written.excluded.clone();
        self.dump = Some(manifest.body.dump.clone());
        self.files = Some(manifest.body.files.clone());
    }
}

fn print_report(ctx: &Context, r: &Report) -> Result<(), OpsError> {
    if ctx.json {
        return print_json(r);
    }
    let (dump, files) = (
        r.dump.clone().unwrap_or_default(),
        r.files.clone().unwrap_or_default(),
    );
    say!(
        ctx,
        "backup {} verified (snapshot {})",
        r.backup,
        r.snapshot_time
    );
    say!(
        ctx,
        "  database: {} tables, {} rows; dump {} bytes -> {} ({} bytes encrypted)",
        r.tables,
        r.rows,
        dump.plaintext_bytes,
        dump.file,
        dump.bytes
    );
    say!(ctx,
        "  files: {} stored, {} unchanged artifacts referenced; intel graph {} nodes, {} edges -> {} ({} bytes)",
        r.entries_stored, r.entries_unchanged, r.intel_nodes, r.intel_edges, files.file, files.bytes
    );
    for s in &r.skipped {
        say!(ctx, "  skipped (not a regular file): {s}");
    }
    for e in &r.excluded {
        say!(ctx, "  excluded {}: {}", e.path, e.reason);
    }
    for c in &r.completed {
        say!(
            ctx,
            "  completed backup {c}, which an interrupted run had written up to its manifest"
        );
    }
    for o in &r.orphans {
        say!(ctx, "  warning: {o} has no manifest (an orphan): kept, not a verifiable backup; see `ransomeye-ops backup list`");
    }
    for d in &r.deleted {
        say!(ctx, "  retention: deleted {d}");
    }
    for u in &r.kept_unverified {
        say!(ctx, "  warning: {u} does not pass the quick check; kept for inspection (`ransomeye-ops verify {u}`)");
    }
    let p = &r.phases_ms;
    say!(ctx,
        "  dump and read-back {:.0} ms (files {:.0} ms beside it), committed files re-hashed {:.0} ms, retention {:.0} ms, total {:.0} ms",
        p.dump, p.files, p.verify, p.retention, r.duration_ms
    );
    Ok(())
}
