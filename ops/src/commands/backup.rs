//! `backup`: one consistent, encrypted, verified backup of the database and the files around it.
//!
//! [`run`] reads as the procedure: lock → clear what an interrupted run left → open a snapshot
//! → dump it (pg_dump → zstd → envelope) while counting rows and exporting the intel graph in
//! the same snapshot → bundle the files (tar → zstd → envelope) → sign the manifest → verify
//! the new backup → apply retention → report.
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
//! temp file. The next run finishes that ([`settle_interrupted`]): when the temp manifest is
//! complete, signed, and names exactly the bytes of both data files, the backup is completed;
//! otherwise the temp files are removed. Deleting a backup (retention, a failed verification)
//! takes the same steps backwards ([`remove_backup`]). Nothing else is ever deleted: a data file
//! under its name with neither a manifest nor a temp manifest is an orphan (its manifest was
//! lost), reported by `backup`, `backup list`, `verify --all` and `health`, and kept.
//! Retention deletes old backups only after the new one verified.

pub(crate) mod bundle;
pub(crate) mod check;
pub(crate) mod fence;
pub(crate) mod manifest;

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::AtomicFile;
use ransomeye_kernel::config::Config;
use ransomeye_kernel::envelope::{EnvelopeReader, EnvelopeWriter, Purpose};
use ransomeye_kernel::keys::{KeyDir, KeyPurpose, SigningKey, SymmetricKey};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use self::manifest::{Body, Entry, Manifest, Paths, SealedFile};
use super::Context;
use crate::cli::{BackupArgs, BackupCommand};
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::pg_tools::{PgTool, Stall, StderrTail};
use crate::run_lock::{self, RunLock};
use crate::sealed::{Digests, SealedReader, SealedWriter};
use crate::utils::{elapsed_ms, print_json, progress, runtime, stdout_error};

/// Size asked for the pipe from pg_dump.
const PIPE_BYTES: i32 = 1 << 20;
/// Bytes read from pg_dump at a time.
const DUMP_CHUNK: usize = 256 * 1024;

/// Runs `backup` or one of its subcommands.
pub fn run(ctx: &Context, args: &BackupArgs) -> Result<(), OpsError> {
    match &args.command {
        None => backup(ctx, args.keep),
        Some(BackupCommand::List) => list(ctx),
        Some(BackupCommand::Cat { backup }) => cat(ctx, backup),
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
    keys_fence: fence::KeysFence,
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
            keys_fence: fence::KeysFence::new(&config.keys.dir)?,
            json: ctx.json,
        })
    }
}

fn backup(ctx: &Context, keep: Option<u32>) -> Result<(), OpsError> {
    let started = Instant::now();
    let config = ctx.config()?;
    let job = Job::prepare(ctx, &config, keep)?;
    let mut report = Report::default();
    let rt = runtime()?;
    crate::interrupt::install()?;
    rt.block_on(async {
        let mut conn = db::connect(&job.database_url, "backup").await?;
        let phase = Instant::now();
        let _lock = lock(&mut conn, &job).await?;
        report.phases_ms.lock = elapsed_ms(phase);
        report.completed = settle_interrupted(&job.dir, &job.trust_keys)?;
        report.orphans = manifest::orphans(&job.dir)?;

        let phase = Instant::now();
        let previous = previous_entries(&job)?;
        let mut tx = conn
            .begin_with("begin isolation level repeatable read, read only")
            .answer("starting the snapshot transaction")
            .await?;
        let snapshot = Snapshot::export(&mut tx).await?;
        let pg_dump = PgTool::find("pg_dump", snapshot.server_major, job.pg_bin_dir.as_deref())?;
        let pg_restore = check::Tools::new(job.pg_bin_dir.clone()).pg_restore(&pg_dump.version)?;
        let paths = Paths::new(&job.dir, &manifest::next_name(&job.dir, &snapshot.stamp));
        let dump = Dump::start(&pg_dump, &pg_restore, &job, &snapshot, &paths.dump)?;
        let tables = count_rows(&mut tx).await;
        let intel = match tables {
            Ok(_) => Some(IntelSpool::export(&mut tx, &job.dir).await),
            Err(_) => None,
        };
        // The bundle needs only the graph export: it is written and read back while pg_dump
        // is still running.
        let bundle = match intel {
            Some(Ok(intel)) => {
                let started = Instant::now();
                let bundle = write_bundle(&job, &paths, &previous, intel).await;
                report.phases_ms.files = elapsed_ms(started);
                Some(bundle)
            }
            Some(Err(e)) => Some(Err(e)),
            None => None,
        };
        // The dump must finish either way before any error is reported, so that no child
        // outlives the run; the snapshot stays exported until then.
        let dumped = dump.finish().await;
        let _ = db::bounded(tx.commit(), "ending the snapshot transaction").await;
        // A failed query ends the snapshot, and pg_dump then fails to import it: report the
        // cause, not pg_dump's consequence.
        let tables = tables?;
        let (files_file, files_digests, written) =
            bundle.ok_or_else(|| OpsError::new(Exit::Software, "intel export skipped"))??;
        let (dump_file, dump_digests) = dumped?;
        report.phases_ms.dump = elapsed_ms(phase);

        let body = Body {
            format: manifest::FORMAT,
            name: paths.name.clone(),
            snapshot_time: snapshot.time.clone(),
            database: snapshot.database.clone(),
            server_version: snapshot.server_version.clone(),
            pg_dump_version: pg_dump.version.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            backup_key_id: job.backup_key.id().to_string(),
            zstd_level: job.zstd_level,
            dump: sealed_file(&paths.dump, &dump_digests),
            files: sealed_file(&paths.files, &files_digests),
            tables: tables.clone(),
            intel: written.1.clone(),
            entries: written.0.entries.clone(),
        };
        let manifest = Manifest::sign(body, &job.signing_key)?;
        // The safe point: nothing is committed yet, and returning drops (removes) the temp files.
        crate::failpoint::pause("backup-commit-safe-point");
        crate::interrupt::check("the new backup was not committed and its temp files were removed; older backups are untouched")?;
        persist(dump_file, files_file, &manifest, &paths, &job.dir)?;
        report.backup = paths.name.clone();
        report.manifest = paths.manifest.clone();
        report.snapshot_time = snapshot.time.clone();
        report.tables = tables.len();
        report.rows = tables.values().sum();
        report.intel_nodes = manifest.body.intel.nodes;
        report.intel_edges = manifest.body.intel.edges;
        report.entries_stored = manifest
            .body
            .entries
            .iter()
            .filter(|e| e.stored_in == paths.name)
            .count();
        report.entries_unchanged = written.0.unchanged;
        report.skipped = written.0.skipped.clone();
        report.excluded = written.0.excluded.clone();
        report.dump = Some(manifest.body.dump.clone());
        report.files = Some(manifest.body.files.clone());

        let phase = Instant::now();
        if crate::failpoint::armed("backup-damage-before-verify") {
            damage_for_test(&paths.dump)?;
        }
        if let Err(e) = check::committed(&paths, &job.trust_keys) {
            // A backup that does not read back is not a backup: unmake it (manifest first) so
            // that nothing relies on it, retention least of all.
            remove_backup(&job.dir, &paths)?;
            return Err(e.hint(format!(
                "the new backup {} failed its own verification and was removed; older backups are untouched. Check the disk (dmesg) and rerun",
                paths.name
            )));
        }
        report.phases_ms.verify = elapsed_ms(phase);

        let phase = Instant::now();
        let retention = apply_retention(&job, &paths.name)?;
        report.deleted = retention.0;
        report.kept_unverified = retention.1;
        report.phases_ms.retention = elapsed_ms(phase);
        report.status = "verified";
        Ok::<(), OpsError>(())
    })
    .map_err(crate::interrupt::attribute)?;
    rt.shutdown_background();
    report.duration_ms = elapsed_ms(started);
    print_report(ctx, &report)
}

/// Step 1: one backup at a time: the lock file in the backup dir, then the database lock.
async fn lock(conn: &mut PgConnection, job: &Job) -> Result<RunLock, OpsError> {
    let file_lock = RunLock::acquire(&job.dir, "backup", "backup")?;
    run_lock::advisory_lock(conn, "ransomeye-ops backup", "backup").await?;
    Ok(file_lock)
}

/// Step 2: finish what an interrupted run (or removal) left, which is only ever temp files of
/// the atomic writer named after a backup's files, and data files under their names beside a
/// temp manifest. A backup without a manifest whose temp manifest is signed and names the exact
/// bytes of both data files (under their names or in temp files) is completed; the other temp
/// files are removed. Nothing else is touched. Call only while holding the lock. Returns the
/// backups completed.
fn settle_interrupted(
    dir: &Path,
    trust: &crate::trust::TrustKeys,
) -> Result<Vec<String>, OpsError> {
    let mut by_backup: std::collections::BTreeMap<String, Vec<(PathBuf, String)>> =
        std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(PathError::at(FileAction::Read, dir))? {
        let entry = entry.map_err(PathError::at(FileAction::Read, dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(target) = ransomeye_kernel::atomic_file::temp_target(&name) else {
            continue;
        };
        let Some(backup) = manifest::backup_name(target) else {
            continue;
        };
        if entry.path().symlink_metadata().is_ok_and(|m| m.is_file()) {
            by_backup
                .entry(backup.to_string())
                .or_default()
                .push((entry.path(), target.to_string()));
        }
    }
    let mut completed = Vec::new();
    for (backup, temps) in &by_backup {
        let paths = Paths::new(dir, backup);
        if complete(&paths, temps, trust)? {
            tracing::info!(backup = %backup, "completed a backup an interrupted run had written up to its manifest");
            completed.push(backup.clone());
        }
        for (temp, _) in temps {
            match std::fs::remove_file(temp) {
                Ok(()) => {
                    tracing::info!(file = %temp.display(), "removed a temporary file left by an interrupted run")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(PathError::new(FileAction::Remove, temp, e).into()),
            }
        }
    }
    if !by_backup.is_empty() {
        ransomeye_kernel::atomic_file::sync_dir(dir)?;
    }
    Ok(completed)
}

/// Completes backup `paths` from its temp files `temps` (path, final name) if it has no
/// manifest, a temp manifest that parses, names it and verifies, and both data files it names
/// with their exact size and SHA-256, each under its name or in a temp file. False otherwise.
fn complete(
    paths: &Paths,
    temps: &[(PathBuf, String)],
    trust: &crate::trust::TrustKeys,
) -> Result<bool, OpsError> {
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    if paths.manifest.symlink_metadata().is_ok() {
        return Ok(false);
    }
    let Some((manifest_temp, m)) = temps
        .iter()
        .filter(|(_, target)| Some(target) == file_name(&paths.manifest).as_ref())
        .find_map(|(temp, _)| {
            let m = Manifest::read(temp, "backup manifest").ok()?;
            (m.body.name == paths.name && m.verify_signature(trust).is_ok()).then_some((temp, m))
        })
    else {
        return Ok(false);
    };
    let mut renames = Vec::new();
    for (final_path, expected) in [(&paths.dump, &m.body.dump), (&paths.files, &m.body.files)] {
        if file_name(final_path).as_deref() != Some(expected.file.as_str()) {
            return Ok(false);
        }
        let matches = |p: &Path| -> Result<bool, OpsError> {
            let (bytes, sha256) = bundle::hash_file(p)?;
            Ok(bytes == expected.bytes && sha256 == expected.sha256)
        };
        if final_path.symlink_metadata().is_ok() {
            if !matches(final_path)? {
                return Ok(false);
            }
            continue;
        }
        let mut found = None;
        for (temp, target) in temps {
            if *target == expected.file && matches(temp)? {
                found = Some(temp);
                break;
            }
        }
        match found {
            Some(temp) => renames.push((temp, final_path)),
            None => return Ok(false),
        }
    }
    // The data files first, the manifest last, as a run commits them; a hard link fails if the
    // name exists, so nothing is ever replaced.
    renames.push((manifest_temp, &paths.manifest));
    for (temp, final_path) in renames {
        std::fs::hard_link(temp, final_path)
            .map_err(PathError::at(FileAction::Rename, final_path))?;
        std::fs::remove_file(temp).map_err(PathError::at(FileAction::Remove, temp))?;
    }
    Ok(true)
}

/// The exported snapshot everything in one backup is taken from.
struct Snapshot {
    id: String,
    time: String,
    stamp: String,
    database: String,
    server_version: String,
    server_major: u32,
}

impl Snapshot {
    /// Step 3: exports the snapshot of `conn`'s transaction (REPEATABLE READ, read only).
    async fn export(conn: &mut PgConnection) -> Result<Snapshot, OpsError> {
        let (id, time, stamp, database, server_version, num): (
            String,
            String,
            String,
            String,
            String,
            String,
        ) = sqlx::query_as(
            "select pg_export_snapshot(), to_json(now())#>>'{}', \
             to_char(now() at time zone 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"'), \
             current_database(), current_setting('server_version'), \
             current_setting('server_version_num')",
        )
        .fetch_one(&mut *conn)
        .answer("exporting the snapshot")
        .await?;
        let server_major = num.parse::<u32>().map(|n| n / 10000).unwrap_or(0);
        Ok(Snapshot {
            id,
            time,
            stamp,
            database,
            server_version,
            server_major,
        })
    }
}

/// Exact row counts of every ordinary table outside the system schemas (`schema.table`), as
/// seen by `conn`'s current transaction.
pub(crate) async fn count_rows(
    conn: &mut PgConnection,
) -> Result<std::collections::BTreeMap<String, u64>, OpsError> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "select n.nspname::text, c.relname::text from pg_class c \
         join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') \
           and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%' \
         order by 1, 2",
    )
    .fetch_all(&mut *conn)
    .answer("listing tables")
    .await?;
    let mut counts = std::collections::BTreeMap::new();
    for (schema, table) in tables {
        let quoted = format!("{}.{}", db::quote_ident(&schema), db::quote_ident(&table));
        let (n,): (i64,) = sqlx::query_as(AssertSqlSafe(format!("select count(*) from {quoted}")))
            .fetch_one(&mut *conn)
            .answer(&format!("counting rows of {schema}.{table}"))
            .await?;
        counts.insert(format!("{schema}.{table}"), n.max(0) as u64);
    }
    Ok(counts)
}

/// A running `pg_dump` whose output streams into the sealed dump file on its own thread, while
/// a second thread reads that file back right behind the writer.
struct Dump {
    child: std::process::Child,
    stall: Stall,
    stderr: StderrTail,
    writer: std::thread::JoinHandle<Result<(AtomicFile, Digests), OpsError>>,
    reader: std::thread::JoinHandle<Result<Digests, OpsError>>,
    program: PathBuf,
}

impl Dump {
    /// Step 4: `pg_dump -Fc -Z0 --snapshot` → zstd → envelope (backup key) → temp file.
    /// pg_dump's own compression is off: zstd on our thread is both faster and smaller.
    ///
    /// The read-back of the new backup's dump starts at once: the temp file is read as it grows
    /// (authenticated, decrypted, decompressed, hashed, streamed through `pg_restore --list`),
    /// so that verifying it costs no time after the dump. [`Dump::finish`] holds the writer's
    /// digests against what was read back.
    fn start(
        tool: &PgTool,
        pg_restore: &PgTool,
        job: &Job,
        snapshot: &Snapshot,
        path: &Path,
    ) -> Result<Dump, OpsError> {
        let (mut cmd, url) = tool.command_for(&job.database_url)?;
        cmd.args(["--format=custom", "--compress=0", "--no-sync"])
            .arg(format!("--snapshot={}", snapshot.id))
            .arg(format!("--dbname={url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (mut writer, followed) =
            SealedWriter::create_followed(path, &job.backup_key, Purpose::Backup, job.zstd_level)?;
        let mut child = cmd.spawn().map_err(|e| {
            OpsError::new(
                Exit::Unavailable,
                format!("cannot start {}: {e}", tool.path.display()),
            )
        })?;
        let stderr = StderrTail::start(&mut child);
        let stall = Stall::watch(&child, db::timeouts().answer);
        let beat = stall.beat();
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| OpsError::new(Exit::Software, "pg_dump has no stdout"))?;
        // pg_dump writes in 4 KiB stdio blocks; a 1 MiB pipe (Linux's default limit for any
        // user) lets it run ahead instead of waking the writer every 64 KiB, which measurably
        // helps when the cores are saturated (docs/PERFORMANCE.md). Best effort: the default
        // pipe works, only slower.
        if let Err(e) = nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES)) {
            tracing::debug!(error = %e, "cannot enlarge pg_dump's pipe; keeping the default");
        }
        let key = job.backup_key.clone();
        let mut list = pg_restore.command();
        list.arg("--list");
        let reader = std::thread::spawn(move || {
            let reader = SealedReader::following(followed, &key)?;
            check::pipe_sealed(reader, list, Stdio::null(), |_| Ok(()))
        });
        let bar = progress(job.json, "dumping", "bytes");
        let writer = std::thread::spawn(move || {
            let mut buf = vec![0u8; DUMP_CHUNK];
            let mut total = 0u64;
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(OpsError::new(
                            Exit::Io,
                            format!("reading pg_dump's output failed: {e}"),
                        ))
                    }
                };
                beat.touch();
                writer.write_bytes(&buf[..n])?;
                total += n as u64;
                bar.set_position(total);
            }
            bar.finish_and_clear();
            writer.finish()
        });
        Ok(Dump {
            child,
            stall,
            stderr,
            writer,
            reader,
            program: tool.path.clone(),
        })
    }

    /// Waits for pg_dump, the writer and the read-back; a failed dump leaves no file (the temp
    /// file is removed when the uncommitted writer is dropped).
    async fn finish(mut self) -> Result<(AtomicFile, Digests), OpsError> {
        let written = tokio::task::spawn_blocking(move || {
            let written = self
                .writer
                .join()
                .map_err(|_| OpsError::new(Exit::Software, "the dump writer panicked"));
            if !matches!(written, Ok(Ok(_))) {
                // The writer failed (disk full…): stop pg_dump rather than let it block.
                let _ = self.child.kill();
            }
            // The writer has ended either way (a failed one abandons the file), so the reader
            // ends too.
            let read = self
                .reader
                .join()
                .map_err(|_| OpsError::new(Exit::Software, "the dump read-back panicked"));
            let status = self.child.wait();
            let stalled = self.stall.stop();
            (
                written,
                read,
                status,
                stalled,
                self.stderr.finish(),
                self.program,
            )
        })
        .await
        .map_err(|e| OpsError::new(Exit::Software, format!("dump thread failed: {e}")))?;
        let (written, read, status, stalled, stderr, program) = written;
        if stalled {
            return Err(db::no_answer(
                db::timeouts().answer,
                "dumping the database (pg_dump received nothing and was stopped)",
            ));
        }
        let written = written??;
        let status = status.map_err(|e| {
            OpsError::new(Exit::Software, format!("waiting for pg_dump failed: {e}"))
        })?;
        if !status.success() {
            return Err(OpsError::new(
                Exit::Unavailable,
                format!(
                    "{} failed ({status}): {}",
                    program.display(),
                    if stderr.is_empty() {
                        "no message"
                    } else {
                        &stderr
                    }
                ),
            )
            .hint("no backup was written; fix the cause pg_dump names and rerun"));
        }
        let read = read?.map_err(unreadable)?;
        let (file, mut digests) = written;
        // The writer did not hash the plaintext (see `SealedWriter::create_followed`).
        if (read.file_bytes, &read.file_sha256, read.plaintext_bytes)
            != (
                digests.file_bytes,
                &digests.file_sha256,
                digests.plaintext_bytes,
            )
        {
            return Err(unreadable(OpsError::new(
                Exit::Data,
                format!(
                    "{}: read back {} bytes (SHA-256 {}) decoding to {} bytes, but {} bytes (SHA-256 {}) of {} bytes were written",
                    file.temp_path().display(),
                    read.file_bytes,
                    read.file_sha256,
                    read.plaintext_bytes,
                    digests.file_bytes,
                    digests.file_sha256,
                    digests.plaintext_bytes,
                ),
            )));
        }
        digests.plaintext_sha256 = read.plaintext_sha256;
        Ok((file, digests))
    }
}

/// A new file that does not read back as written: nothing was committed.
fn unreadable(e: OpsError) -> OpsError {
    e.hint("the new backup did not read back as written and was not kept; older backups are untouched. Check the disk (dmesg) and rerun")
}

/// The intel graph export, spooled encrypted with a throwaway key into an unnamed temp file
/// (the tar header needs its size before its bytes, and plaintext never touches the disk).
struct IntelSpool {
    file: std::fs::File,
    key: SymmetricKey,
    digest: ransomeye_intel::GraphDigest,
}

impl IntelSpool {
    async fn export(conn: &mut PgConnection, dir: &Path) -> Result<IntelSpool, OpsError> {
        let key = SymmetricKey::generate(KeyPurpose::Backup)
            .map_err(|e| OpsError::new(Exit::Software, format!("cannot make a spool key: {e}")))?;
        let file = tempfile::tempfile_in(dir).map_err(PathError::at(FileAction::Create, dir))?;
        let mut writer = EnvelopeWriter::new(
            std::io::BufWriter::with_capacity(256 * 1024, file),
            &key,
            Purpose::Backup,
        )
        .map_err(PathError::at(FileAction::Write, dir))?;
        // One answer timeout for the whole export (see restore's digest).
        let digest = db::bounded(
            ransomeye_intel::export(conn, &mut writer),
            "exporting the intel graph",
        )
        .await?
        .map_err(|e| intel_error(e, "exporting the intel graph"))?;
        let mut file = writer
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(PathError::at(FileAction::Write, dir))?;
        file.rewind()
            .map_err(PathError::at(FileAction::Read, dir))?;
        Ok(IntelSpool { file, key, digest })
    }
}

/// An intel crate error as an operator error.
pub(crate) fn intel_error(e: ransomeye_intel::IntelError, doing: &str) -> OpsError {
    use ransomeye_intel::IntelError;
    match e {
        IntelError::Database { source, .. } => db::error(source, doing),
        IntelError::Io { source, .. } => {
            if ransomeye_kernel::envelope::EnvelopeError::from_io(&source).is_some() {
                return OpsError::new(Exit::Data, format!("{doing}: {source}"));
            }
            OpsError::io(doing, &source)
        }
        IntelError::Snapshot { .. } => OpsError::new(Exit::Software, format!("{doing}: {e}")),
        other => OpsError::new(Exit::Data, format!("{doing}: {other}")),
    }
}

/// Entries of the newest backup whose manifest verifies (the base of incremental artifacts),
/// keeping only those whose holding backup still passes the quick check: an artifact whose
/// holder was lost is stored again rather than referenced. None if there is no such backup.
fn previous_entries(job: &Job) -> Result<Vec<Entry>, OpsError> {
    for paths in manifest::list(&job.dir)?.iter().rev() {
        let Ok(m) = manifest::read(paths) else {
            continue;
        };
        if m.verify_signature(&job.trust_keys).is_err() {
            continue;
        }
        let mut holders = std::collections::HashMap::new();
        let entries = m
            .body
            .entries
            .into_iter()
            .filter(|e| {
                *holders.entry(e.stored_in.clone()).or_insert_with(|| {
                    check::quick(&Paths::new(&job.dir, &e.stored_in), &job.trust_keys).is_ok()
                })
            })
            .collect();
        return Ok(entries);
    }
    Ok(Vec::new())
}

/// Step 5: the file bundle (configuration, intel graph, artifacts) → temp file, read back at
/// once (the graph export by its SHA-256, see [`check::GraphCheck::Hash`]).
async fn write_bundle(
    job: &Job,
    paths: &Paths,
    previous: &[Entry],
    intel: IntelSpool,
) -> Result<
    (
        AtomicFile,
        Digests,
        (bundle::Written, ransomeye_intel::GraphDigest),
    ),
    OpsError,
> {
    let writer = SealedWriter::create(
        &paths.files,
        &job.backup_key,
        Purpose::Backup,
        job.zstd_level,
    )?;
    let sources_config = job.config_files.clone();
    let artifacts_dir = job.artifacts_dir.clone();
    let previous = previous.to_vec();
    let name = paths.name.clone();
    let shown = paths.files.clone();
    let dir = job.dir.clone();
    let key = job.backup_key.clone();
    let trust_keys = job.trust_keys.clone();
    let fence = job.keys_fence.clone();
    tokio::task::spawn_blocking(move || {
        let sources = bundle::Sources {
            config: sources_config,
            artifacts_dir: artifacts_dir.as_deref(),
            previous: &previous,
            name: &name,
            fence: &fence,
        };
        let spool = EnvelopeReader::open(std::io::BufReader::new(intel.file), &intel.key)
            .map_err(|e| OpsError::stream(&shown, e))?;
        let (written, writer) = bundle::write(
            writer,
            &sources,
            spool,
            intel.digest.bytes,
            &intel.digest.sha256,
        )?;
        let (file, digests) = writer.finish()?;
        // Read back before it is committed, as verify reads it.
        let spec = check::BundleSpec {
            name: &name,
            file: &sealed_file(&shown, &digests),
            intel: &intel.digest,
            entries: &written.entries,
        };
        check::check_bundle(
            file.temp_path(),
            &dir,
            &spec,
            check::GraphCheck::Hash,
            &key,
            &trust_keys,
        )
        .map_err(unreadable)?;
        Ok((file, digests, (written, intel.digest)))
    })
    .await
    .map_err(|e| OpsError::new(Exit::Software, format!("bundle thread failed: {e}")))?
}

fn sealed_file(path: &Path, d: &Digests) -> SealedFile {
    SealedFile {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: d.file_bytes,
        sha256: d.file_sha256.clone(),
        plaintext_bytes: d.plaintext_bytes,
        plaintext_sha256: d.plaintext_sha256.clone(),
    }
}

/// Step 6: the data files and the manifest made durable under their temp names, then the data
/// files renamed to their names, then the manifest (the commit point). A crash before that
/// leaves what [`settle_interrupted`] completes or removes; a failure unmakes the backup.
fn persist(
    mut dump: AtomicFile,
    mut files: AtomicFile,
    manifest: &Manifest,
    paths: &Paths,
    dir: &Path,
) -> Result<(), OpsError> {
    dump.sync()?;
    files.sync()?;
    let mut manifest_file = AtomicFile::create(&paths.manifest, Ownership::secret_file())?;
    manifest_file
        .write_all(&manifest.to_vec()?)
        .map_err(|e| PathError::new(FileAction::Write, manifest_file.temp_path(), e))?;
    manifest_file.sync()?;
    ransomeye_kernel::atomic_file::sync_dir(dir)?;
    crate::failpoint::hit("backup-before-commit");
    let committed = dump.commit().and_then(|_| {
        crate::failpoint::hit("backup-before-manifest");
        files.commit()?;
        manifest_file.commit()
    });
    if let Err(e) = committed {
        // The uncommitted temp files went with their writers; what was renamed is this run's.
        remove_backup(dir, paths)?;
        return Err(OpsError::from(e).hint(format!(
            "the new backup {} could not be committed and was removed; older backups are untouched",
            paths.name
        )));
    }
    Ok(())
}

/// Step 8: keep the newest `keep` backups that pass the quick check (signature, files present
/// with their sizes), plus any older backup still holding artifacts a kept one refers to.
/// Backups failing the check are never counted and never deleted: they are reported for a
/// human to look at. Returns (deleted, kept unverified).
fn apply_retention(job: &Job, newest: &str) -> Result<(Vec<String>, Vec<String>), OpsError> {
    let mut good = Vec::new();
    let mut unverified = Vec::new();
    for paths in manifest::list(&job.dir)? {
        match check::quick(&paths, &job.trust_keys) {
            Ok(m) => good.push((paths, m)),
            Err(_) => unverified.push(paths.name),
        }
    }
    if !good.iter().any(|(p, _)| p.name == newest) {
        return Err(OpsError::new(
            Exit::Software,
            format!("the new backup {newest} is not among the verified backups; nothing deleted"),
        ));
    }
    let keep = job.keep.max(1) as usize;
    let split = good.len().saturating_sub(keep);
    let (old, kept) = good.split_at(split);
    let referenced: std::collections::HashSet<&str> = kept
        .iter()
        .flat_map(|(_, m)| m.body.entries.iter().map(|e| e.stored_in.as_str()))
        .collect();
    let mut deleted = Vec::new();
    for (paths, _) in old {
        if referenced.contains(paths.name.as_str()) {
            continue;
        }
        remove_backup(&job.dir, paths)?;
        deleted.push(paths.name.clone());
    }
    Ok((deleted, unverified))
}

/// Flips one byte in the middle of `path` (the `backup-damage-before-verify` failpoint: a disk
/// that corrupts what it was given).
fn damage_for_test(path: &Path) -> Result<(), OpsError> {
    let mut bytes = std::fs::read(path).map_err(PathError::at(FileAction::Read, path))?;
    let middle = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(middle) {
        *b ^= 0x40;
    }
    std::fs::write(path, bytes).map_err(PathError::at(FileAction::Write, path))?;
    Ok(())
}

/// Deletes a backup, the commit steps backwards: the manifest moved to a temp name (the backup
/// is no longer committed), then its data files, then the temp files removed, data first. A
/// crash in between leaves temp files and perhaps data files beside a temp manifest, which the
/// next run completes (and retention deletes again) or removes; never an orphan.
fn remove_backup(dir: &Path, paths: &Paths) -> Result<(), OpsError> {
    use ransomeye_kernel::atomic_file::{rename_to_temp, sync_dir};
    let mut moved = Vec::new();
    for path in [&paths.manifest, &paths.dump, &paths.files] {
        match path.symlink_metadata() {
            Ok(_) => moved.push(rename_to_temp(path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PathError::new(FileAction::Read, path, e).into()),
        }
        if path == &paths.manifest {
            sync_dir(dir)?;
        }
    }
    sync_dir(dir)?;
    crate::failpoint::hit("backup-remove-before-delete");
    for path in &moved {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PathError::new(FileAction::Remove, path, e).into()),
        }
    }
    Ok(sync_dir(dir)?)
}

fn print_report(ctx: &Context, r: &Report) -> Result<(), OpsError> {
    if ctx.json {
        return print_json(r);
    }
    let (dump, files) = (
        r.dump.clone().unwrap_or_default(),
        r.files.clone().unwrap_or_default(),
    );
    println!(
        "backup {} verified (snapshot {})",
        r.backup, r.snapshot_time
    );
    println!(
        "  database: {} tables, {} rows; dump {} bytes -> {} ({} bytes encrypted)",
        r.tables, r.rows, dump.plaintext_bytes, dump.file, dump.bytes
    );
    println!(
        "  files: {} stored, {} unchanged artifacts referenced; intel graph {} nodes, {} edges -> {} ({} bytes)",
        r.entries_stored, r.entries_unchanged, r.intel_nodes, r.intel_edges, files.file, files.bytes
    );
    for s in &r.skipped {
        println!("  skipped (not a regular file): {s}");
    }
    for e in &r.excluded {
        println!("  excluded {}: {}", e.path, e.reason);
    }
    for c in &r.completed {
        println!("  completed backup {c}, which an interrupted run had written up to its manifest");
    }
    for o in &r.orphans {
        println!("  warning: {o} has no manifest (an orphan): kept, not a verifiable backup; see `ransomeye-ops backup list`");
    }
    for d in &r.deleted {
        println!("  retention: deleted {d}");
    }
    for u in &r.kept_unverified {
        println!("  warning: {u} does not pass the quick check; kept for inspection (`ransomeye-ops verify {u}`)");
    }
    let p = &r.phases_ms;
    println!(
        "  dump and read-back {:.0} ms (files {:.0} ms beside it), committed files re-hashed {:.0} ms, retention {:.0} ms, total {:.0} ms",
        p.dump, p.files, p.verify, p.retention, r.duration_ms
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// backup list / cat

fn list(ctx: &Context) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let trust = crate::trust::verifying_keys(&config)?;
    let mut rows = Vec::new();
    for paths in manifest::list(&config.backup.dir)? {
        let (state, m) = match check::quick(&paths, &trust) {
            Ok(m) => ("ok".to_string(), Some(m)),
            Err(e) => (format!("damaged: {}", e.what), manifest::read(&paths).ok()),
        };
        rows.push(serde_json::json!({
            "backup": paths.name,
            "state": state,
            "snapshot_time": m.as_ref().map(|m| m.body.snapshot_time.clone()),
            "rows": m.as_ref().map(|m| m.body.tables.values().sum::<u64>()),
            "bytes": m.as_ref().map(|m| m.body.dump.bytes + m.body.files.bytes),
        }));
    }
    let orphans = manifest::orphans(&config.backup.dir)?;
    for file in &orphans {
        rows.push(serde_json::json!({
            "backup": manifest::backup_name(file),
            "file": file,
            "state": manifest::ORPHAN_STATE,
        }));
    }
    if ctx.json {
        print_json(&rows)?;
    } else {
        if rows.is_empty() {
            println!("no backups in {}", config.backup.dir.display());
        }
        for r in rows {
            let state = r["state"].as_str().unwrap_or_default();
            if let Some(file) = r["file"].as_str() {
                println!("{file}  {state}");
                continue;
            }
            println!(
                "{}  {}  {} rows  {} bytes  {state}",
                r["backup"].as_str().unwrap_or_default(),
                r["snapshot_time"].as_str().unwrap_or("?"),
                r["rows"],
                r["bytes"],
            );
        }
    }
    match orphans.is_empty() {
        true => Ok(()),
        false => Err(manifest::orphans_error(&config.backup.dir, &orphans)),
    }
}

/// `backup cat BACKUP`: the plain custom-format dump on stdout, for `pg_restore` by hand. The
/// dump is checked against the manifest as it streams; a mismatch exits 65 (and the output
/// must then be discarded).
fn cat(ctx: &Context, backup: &Path) -> Result<(), OpsError> {
    if crate::utils::stdout_is_terminal() {
        return Err(OpsError::new(
            Exit::Usage,
            "refusing to write a binary dump to a terminal",
        )
        .hint("redirect it: `ransomeye-ops backup cat BACKUP > dump.pgc` or pipe it to pg_restore"));
    }
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Backup)?;
    let trust = crate::trust::verifying_keys(&config)?;
    let paths = check::locate(backup, &config.backup.dir)?;
    let manifest = check::quick(&paths, &trust)?;
    let mut reader = crate::sealed::SealedReader::open(&paths.dump, &key)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| reader.error(e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    let digests = reader.finish()?;
    check::compare_sealed(&paths.dump, &manifest.body.dump, &digests)
}
