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

pub(crate) mod manifest;
mod stream;
mod versions;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use ransomeye_kernel::atomic_file::Replace;
use ransomeye_kernel::config::Config;
use ransomeye_kernel::envelope::Purpose;
use ransomeye_kernel::keys::{KeyDir, KeyPurpose, SigningKey, SymmetricKey};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection};

use self::manifest::{manifest_path, Body, Manifest, State};
use self::stream::read_back;
use self::versions::{RowVersions, VersionSplitter};
use super::Context;
use crate::cli::{ArchiveArgs, ArchiveCommand, ArchiveRunArgs};
use crate::db::{self, quote_ident, Answer};
use crate::error::{Exit, OpsError};
use crate::pace::{Pace, Pacer};
use crate::run_lock::{self, RunLock};
use crate::sealed::{Digests, SealedWriter};
use crate::table::{Align, Table};
use crate::utils::{elapsed_ms, print_json, progress, runtime, stdout_error};

/// Bytes of JSON Lines handed from the database reader to the encoder thread at a time.
const CHUNK: usize = 256 * 1024;
/// Rows per INSERT when restoring.
const RESTORE_BATCH: usize = 1000;

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
    /// Machine output: no progress display.
    json: bool,
}

fn archive(ctx: &Context, opts: &ArchiveRunArgs) -> Result<(), OpsError> {
    let started = Instant::now();
    let config = ctx.config()?;
    let job = Job::prepare(&config, opts, ctx.json)?;
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
            return estimate(&mut conn, &job, &shape, &cutoff, &pending_ids, &mut report).await;
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
    fn prepare(config: &Config, opts: &ArchiveRunArgs, json: bool) -> Result<Job, OpsError> {
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
            json,
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

/// The table's columns as the archive needs them.
struct TableShape {
    /// `"schema"."table"` or `"table"`, quoted.
    quoted: String,
    /// The single integer primary-key column.
    primary_key: String,
    /// Every column, quoted, primary key first (so each JSON line starts with it).
    select_list: String,
    /// The same columns of the row aliased `t` (`t."id", t."created_at", …`): selected from a
    /// row, they give its JSON exactly as the export wrote it.
    row_list: String,
    time_column: String,
}

impl TableShape {
    async fn load(
        conn: &mut PgConnection,
        table: &str,
        time_column: &str,
    ) -> Result<TableShape, OpsError> {
        let quoted = table
            .split('.')
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(".");
        let exists: Option<String> = sqlx::query_scalar("select to_regclass($1)::text")
            .bind(&quoted)
            .fetch_one(&mut *conn)
            .answer("looking up the archive table")
            .await?;
        if exists.is_none() {
            return Err(OpsError::new(
                Exit::Config,
                format!("[archive] table `{table}` does not exist in the database"),
            )
            .hint(
                "fix [archive] table, or check [database] url points at the RansomEye database",
            ));
        }
        let columns: Vec<(String, String)> = sqlx::query_as(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod) from pg_attribute a \
             where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum",
        )
        .bind(&quoted)
        .fetch_all(&mut *conn)
        .answer("reading the archive table's columns")
        .await?;
        let keys: Vec<(String, String)> = sqlx::query_as(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod) from pg_index i \
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) \
             where i.indrelid = $1::regclass and i.indisprimary",
        )
        .bind(&quoted)
        .fetch_all(&mut *conn)
        .answer("reading the archive table's primary key")
        .await?;
        let primary_key = match keys.as_slice() {
            [(name, ty)] if matches!(ty.as_str(), "bigint" | "integer" | "smallint") => name.clone(),
            _ => {
                return Err(OpsError::new(
                    Exit::Config,
                    format!("[archive] table `{table}` needs a single-column integer primary key (found {keys:?})"),
                ))
            }
        };
        match columns.iter().find(|(name, _)| name == time_column) {
            Some((_, ty)) if ty.starts_with("timestamp") || ty == "date" => {}
            Some((_, ty)) => {
                return Err(OpsError::new(
                    Exit::Config,
                    format!(
                    "[archive] time_column `{time_column}` of `{table}` is {ty}, not a timestamp"
                ),
                ))
            }
            None => {
                return Err(OpsError::new(
                    Exit::Config,
                    format!(
                        "[archive] time_column `{time_column}` does not exist in table `{table}`"
                    ),
                )
                .hint("fix [archive] time_column in the configuration"))
            }
        }
        let mut ordered: Vec<String> = vec![quote_ident(&primary_key)];
        ordered.extend(
            columns
                .iter()
                .filter(|(n, _)| *n != primary_key)
                .map(|(n, _)| quote_ident(n)),
        );
        Ok(TableShape {
            quoted,
            select_list: ordered.join(", "),
            row_list: ordered
                .iter()
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            primary_key,
            time_column: time_column.to_string(),
        })
    }
}

/// A file of the archive directory whose other half is missing. Runs never delete one: only the
/// operator knows whether its other half was moved, lost or never existed.
#[derive(Debug, Clone, Serialize)]
struct Orphan {
    file: PathBuf,
    reason: &'static str,
}

const NO_MANIFEST: &str = "a data file without its manifest";
const NO_DATA: &str = "a manifest without its data file";

/// The archive directory's files, by name.
struct DirScan {
    /// Manifests (`logs_*.manifest.json`), sorted by name.
    manifests: Vec<(PathBuf, Manifest)>,
    /// Data files (`logs_*.zst.enc`), sorted by name.
    data_files: Vec<PathBuf>,
    /// Temp files of the atomic writer (`.logs_*.tmp-*`): only an unfinished run leaves them.
    temp_files: Vec<PathBuf>,
}

impl DirScan {
    fn read(dir: &Path) -> Result<DirScan, OpsError> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(PathError::at(FileAction::Read, dir))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        let mut scan = DirScan {
            manifests: Vec::new(),
            data_files: Vec::new(),
            temp_files: Vec::new(),
        };
        for name in names {
            let path = dir.join(&name);
            if ransomeye_kernel::atomic_file::is_temp_name(&name) && name.starts_with(".logs_") {
                scan.temp_files.push(path);
            } else if name.starts_with("logs_") && name.ends_with(".manifest.json") {
                let manifest = Manifest::read(&path, "archive manifest")?;
                scan.manifests.push((path, manifest));
            } else if name.starts_with("logs_") && name.ends_with(".zst.enc") {
                scan.data_files.push(path);
            }
        }
        Ok(scan)
    }

    /// The temp files an unfinished commit of `archive` may have left (`.<name>.tmp-*`).
    fn temps_of(&self, archive: &Path) -> Vec<PathBuf> {
        let prefix = format!(
            ".{}{}",
            file_name(archive),
            ransomeye_kernel::atomic_file::TEMP_MARKER
        );
        self.temp_files
            .iter()
            .filter(|t| file_name(t).starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// Whether `manifest` is a `written` one whose archive is still at a temp name: an
    /// interrupted run that the next run completes, not an orphan.
    fn is_interrupted(&self, manifest_file: &Path, manifest: &Manifest) -> bool {
        manifest.body.state == State::Written
            && !self
                .temps_of(&manifest::archive_path(manifest_file, &manifest.body))
                .is_empty()
    }

    /// Data files without their manifest, and manifests without their data file (except an
    /// interrupted run's, whose data file is still at its temp name).
    fn orphans(&self) -> Vec<Orphan> {
        let mut orphans: Vec<Orphan> = self
            .data_files
            .iter()
            .filter(|d| !manifest_path(d).exists())
            .map(|d| Orphan {
                file: d.clone(),
                reason: NO_MANIFEST,
            })
            .collect();
        for (path, manifest) in &self.manifests {
            if !manifest::archive_path(path, &manifest.body).exists()
                && !self.is_interrupted(path, manifest)
            {
                orphans.push(Orphan {
                    file: path.clone(),
                    reason: NO_DATA,
                });
            }
        }
        orphans.sort_by(|a, b| a.file.cmp(&b.file));
        orphans
    }
}

/// What [`finish_interrupted`] did (or, in a dry run, would do).
struct Recovery {
    completed: Vec<PathBuf>,
    /// First and last ids of the completed archives.
    pending_ids: Vec<(i64, i64)>,
    temp_files: Vec<PathBuf>,
    orphans: Vec<Orphan>,
}

/// Step 2: complete what an interrupted run left in the archive directory: a `written` archive
/// is verified and its prune completed; a `written` manifest whose archive is still at its temp
/// name gets that file renamed into place first, if the file matches the manifest in full. Then
/// the remaining temp files are removed. Orphans are reported and kept. With `dry_run`, every
/// check is made and nothing is changed.
async fn finish_interrupted(
    conn: &mut PgConnection,
    job: &Job,
    shape: &TableShape,
    dry_run: bool,
) -> Result<Recovery, OpsError> {
    let scan = DirScan::read(&job.dir)?;
    let mut orphans = scan.orphans();
    let mut pending: Vec<(PathBuf, Option<PathBuf>, &Manifest)> = Vec::new();
    // Temp files that stay: the ones to rename into place, and those of another table's
    // interrupted run (that table's next run completes it).
    let mut keep = HashSet::new();
    for (manifest_file, manifest) in &scan.manifests {
        if manifest.body.state != State::Written {
            continue;
        }
        if manifest.body.table != job.table {
            keep.extend(scan.temps_of(&manifest::archive_path(manifest_file, &manifest.body)));
            continue;
        }
        let archive = manifest::archive_path(manifest_file, &manifest.body);
        if archive.exists() {
            verify_archive(&archive, manifest, &job.archive_key, &job.trust_keys)
                .await
                .map_err(|e| e.hint("an interrupted archive does not verify, so its rows were not deleted; investigate before rerunning"))?;
            pending.push((archive, None, manifest));
            continue;
        }
        // Interrupted between the manifest and the archive's rename: nothing was deleted, and
        // the archive is complete at its temp name unless the machine lost it (power cut).
        let mut found = None;
        for temp in scan.temps_of(&archive) {
            match verify_archive(&temp, manifest, &job.archive_key, &job.trust_keys).await {
                Ok(()) => {
                    found = Some(temp);
                    break;
                }
                Err(e) if e.exit == Exit::Data => {
                    tracing::warn!(file = %temp.display(), "an interrupted run's temp file does not match its manifest: {}", e.what);
                }
                Err(e) => return Err(e),
            }
        }
        match found {
            Some(temp) => {
                keep.insert(temp.clone());
                pending.push((archive, Some(temp), manifest));
            }
            None if scan.is_interrupted(manifest_file, manifest) => orphans.push(Orphan {
                file: manifest_file.clone(),
                reason: NO_DATA,
            }),
            None => {}
        }
    }
    orphans.sort_by(|a, b| a.file.cmp(&b.file));
    let temp_files: Vec<PathBuf> = scan
        .temp_files
        .iter()
        .filter(|t| !keep.contains(*t))
        .cloned()
        .collect();
    let completed: Vec<PathBuf> = pending.iter().map(|(a, _, _)| a.clone()).collect();
    let pending_ids = pending
        .iter()
        .filter_map(|(_, _, m)| Some((m.body.first_id?, m.body.last_id?)))
        .collect();
    if dry_run {
        return Ok(Recovery {
            completed,
            pending_ids,
            temp_files,
            orphans,
        });
    }
    for (archive, temp, manifest) in pending {
        tracing::warn!(file = %archive.display(), "completing an interrupted archive run");
        if let Some(temp) = temp {
            adopt(&temp, &archive)?;
        }
        // No row versions survive a crash: the resumed prune compares the rows' contents.
        prune(conn, job, shape, &archive, manifest.clone(), None).await?;
    }
    for temp in &temp_files {
        tracing::info!(file = %temp.display(), "removing a temporary file left by an interrupted run");
        std::fs::remove_file(temp).map_err(PathError::at(FileAction::Remove, temp))?;
    }
    Ok(Recovery {
        completed,
        pending_ids,
        temp_files,
        orphans,
    })
}

/// Puts an interrupted run's complete temp file under its final name: fsync, link (which never
/// replaces an existing file), fsync the directory, then remove the temp name.
fn adopt(temp: &Path, archive: &Path) -> Result<(), OpsError> {
    std::fs::File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(PathError::at(FileAction::Sync, temp))?;
    std::fs::hard_link(temp, archive).map_err(PathError::at(FileAction::Rename, archive))?;
    let dir = archive.parent().unwrap_or(Path::new("."));
    ransomeye_kernel::atomic_file::sync_dir(dir)?;
    std::fs::remove_file(temp).map_err(PathError::at(FileAction::Remove, temp))?;
    ransomeye_kernel::atomic_file::sync_dir(dir)?;
    Ok(())
}

/// Step 3: the cutoff, fixed once from the database clock, as RFC 3339.
async fn cutoff(conn: &mut PgConnection, days: u32) -> Result<String, OpsError> {
    sqlx::query_scalar("select to_json(now() - make_interval(days => $1))#>>'{}'")
        .bind(days as i32)
        .fetch_one(&mut *conn)
        .answer("computing the cutoff")
        .await
}

/// `--dry-run`: rows and JSON size exactly, file size estimated by compressing a sample. Rows
/// inside the id ranges of the interrupted archives the run would complete first (`pending`,
/// first and last ids) are left out: that run prunes them instead of archiving them again.
async fn estimate(
    conn: &mut PgConnection,
    job: &Job,
    shape: &TableShape,
    cutoff: &str,
    pending: &[(i64, i64)],
    report: &mut RunReport,
) -> Result<(), OpsError> {
    let (lows, highs): (Vec<i64>, Vec<i64>) = pending.iter().copied().unzip();
    let not_pending = format!(
        "not exists (select 1 from unnest($2::int8[], $3::int8[]) p(lo, hi) where {} between p.lo and p.hi)",
        quote_ident(&shape.primary_key)
    );
    let sql = format!(
        "select count(*)::int8, coalesce(sum(octet_length(row_to_json(x)::text) + 1), 0)::int8 \
         from (select {} from {} where {} < $1::timestamptz and {not_pending}) x",
        shape.select_list,
        shape.quoted,
        quote_ident(&shape.time_column)
    );
    let (rows, bytes): (i64, i64) = sqlx::query_as(AssertSqlSafe(sql))
        .bind(cutoff)
        .bind(&lows)
        .bind(&highs)
        .fetch_one(&mut *conn)
        .answer("counting rows to archive")
        .await?;
    let sample_sql = format!(
        "select coalesce(string_agg(row_to_json(x)::text, E'\\n'), '') from \
         (select {} from {} where {} < $1::timestamptz and {not_pending} order by {} limit 5000) x",
        shape.select_list,
        shape.quoted,
        quote_ident(&shape.time_column),
        quote_ident(&shape.primary_key)
    );
    let sample: String = sqlx::query_scalar(AssertSqlSafe(sample_sql))
        .bind(cutoff)
        .bind(&lows)
        .bind(&highs)
        .fetch_one(&mut *conn)
        .answer("sampling rows to archive")
        .await?;
    let compressed = zstd::bulk::compress(sample.as_bytes(), job.zstd_level)
        .map(|c| c.len())
        .unwrap_or(0);
    report.status = "dry_run";
    report.rows = rows as u64;
    report.plaintext_bytes = bytes as u64;
    if !sample.is_empty() {
        report.estimated_file_bytes =
            Some((bytes as f64 * compressed as f64 / sample.len() as f64) as u64);
    }
    Ok(())
}

/// First and last row of an export, for the manifest.
#[derive(Default)]
struct Bounds {
    first: Option<Vec<u8>>,
    last: Vec<u8>,
}

impl Bounds {
    /// Takes the next bytes of the JSON Lines stream: keeps the first and the latest complete
    /// line, gathers a line split across chunks in `partial`. Returns the lines completed.
    fn take(&mut self, data: &[u8], partial: &mut Vec<u8>) -> u64 {
        let mut rows = 0;
        let mut start = 0;
        let mut newlines = memchr::memchr_iter(b'\n', data).peekable();
        while let Some(end) = newlines.next() {
            rows += 1;
            // Only the first line and the last line completed in this chunk are kept.
            if self.first.is_none() || newlines.peek().is_none() {
                partial.extend_from_slice(&data[start..end]);
                if self.first.is_none() {
                    self.first = Some(partial.clone());
                }
                std::mem::swap(&mut self.last, partial);
            }
            partial.clear();
            start = end + 1;
        }
        partial.extend_from_slice(&data[start..]);
        rows
    }
}

/// Step 4: select → encode → compress → encrypt → persist. The database streams JSON Lines
/// (COPY) on this task; compression, encryption and writing run beside it on a blocking thread.
/// The same statement reads each row's version, for the prune ([`RowVersions`]).
/// Returns `None` (and leaves no file) when no row is old enough.
async fn export(
    conn: &mut PgConnection,
    job: &Job,
    shape: &TableShape,
    cutoff: &str,
) -> Result<Option<(PathBuf, Manifest, RowVersions)>, OpsError> {
    let (date, created_at): (String, String) = sqlx::query_as(
        "select to_char(now() at time zone 'UTC', 'YYYY-MM-DD'), to_json(now())#>>'{}'",
    )
    .fetch_one(&mut *conn)
    .answer("reading the database clock")
    .await?;
    let path = next_archive_name(&job.dir, &date);
    let mut writer =
        SealedWriter::create(&path, &job.archive_key, Purpose::Archive, job.zstd_level)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let encoder = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            writer.write_bytes(&chunk)?;
        }
        writer.finish()
    });

    // Each line is the row's primary key and xmin (for the prune, see `versions`) and one JSON
    // object with the primary key first, the archive's line. CSV with control characters as
    // quote and delimiter passes row_to_json's output through verbatim (JSON escapes them).
    let pk = quote_ident(&shape.primary_key);
    let statement = format!(
        "COPY (SELECT t.{pk}, t.xmin, row_to_json(x) FROM {} t CROSS JOIN LATERAL (SELECT {}) x \
         WHERE t.{} < '{cutoff}'::timestamptz ORDER BY t.{pk}) \
         TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')",
        shape.quoted,
        shape.row_list,
        quote_ident(&shape.time_column),
    );
    let mut splitter = VersionSplitter::new(&job.dir)?;
    let progress = progress(job.json, "exporting", "rows");
    let mut rows = 0u64;
    let mut bounds = Bounds::default();
    let mut line = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut send_failed = false;
    {
        let mut copy = conn
            .copy_out_raw(&statement)
            .answer("starting the export")
            .await?;
        while let Some(data) = db::bounded(copy.next(), "exporting rows").await? {
            let data = data.map_err(|e| db::error(e, "exporting rows"))?;
            let start = chunk.len();
            splitter.feed(&data, &mut chunk)?;
            rows += bounds.take(&chunk[start..], &mut line);
            progress.set_position(rows);
            if chunk.len() >= CHUNK
                && tx
                    .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                    .await
                    .is_err()
            {
                send_failed = true;
                break;
            }
        }
    }
    if !send_failed && !chunk.is_empty() {
        let _ = tx.send(chunk).await;
    }
    drop(tx);
    progress.finish_and_clear();
    let (file, digests) = encoder
        .await
        .map_err(|e| OpsError::new(Exit::Software, format!("encoder thread failed: {e}")))??;
    let versions = splitter.finish()?;
    if rows == 0 {
        return Ok(None); // `file` is dropped uncommitted: no archive appears
    }
    let (first_id, first_time) = row_bounds(bounds.first.as_deref().unwrap_or_default(), shape)?;
    let (last_id, last_time) = row_bounds(&bounds.last, shape)?;
    let body = Body {
        format: manifest::FORMAT,
        file: file_name(&path),
        table: job.table.clone(),
        primary_key: shape.primary_key.clone(),
        time_column: shape.time_column.clone(),
        cutoff: cutoff.to_string(),
        rows,
        first_id: Some(first_id),
        last_id: Some(last_id),
        first_time,
        last_time,
        plaintext_bytes: digests.plaintext_bytes,
        plaintext_sha256: digests.plaintext_sha256,
        file_bytes: digests.file_bytes,
        file_sha256: digests.file_sha256,
        archive_key_id: job.archive_key.id().to_string(),
        zstd_level: job.zstd_level,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at,
        state: State::Written,
        rows_deleted: None,
    };
    let manifest = Manifest::sign(body, &job.signing_key)?;
    // Manifest first, then the archive under its name: see the module comment.
    manifest.write(&manifest_path(&path), Replace::Never)?;
    crate::failpoint::hit("archive-before-commit");
    file.commit()?;
    Ok(Some((path, manifest, versions)))
}

fn next_archive_name(dir: &Path, date: &str) -> PathBuf {
    (1u32..)
        .map(|n| match n {
            1 => dir.join(format!("logs_{date}.zst.enc")),
            n => dir.join(format!("logs_{date}.{n}.zst.enc")),
        })
        .find(|p| p.symlink_metadata().is_err() && manifest_path(p).symlink_metadata().is_err())
        .unwrap_or_else(|| dir.join(format!("logs_{date}.zst.enc")))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Primary key and time of one exported line.
fn row_bounds(line: &[u8], shape: &TableShape) -> Result<(i64, Option<String>), OpsError> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| OpsError::new(Exit::Software, format!("exported row is not JSON: {e}")))?;
    let id = value[&shape.primary_key]
        .as_i64()
        .ok_or_else(|| OpsError::new(Exit::Software, "exported row has no integer primary key"))?;
    Ok((id, value[&shape.time_column].as_str().map(str::to_string)))
}

/// The primary key at the start of an exported line (`{"id":123,…`), without parsing the rest.
fn line_id(line: &[u8], primary_key: &str) -> Option<i64> {
    let prefix = format!("{{{}:", serde_json::to_string(primary_key).ok()?);
    let rest = line.strip_prefix(prefix.as_bytes())?;
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Step 5: the archive under its final name, read back in full, must match its manifest.
async fn verify_archive(
    path: &Path,
    manifest: &Manifest,
    key: &SymmetricKey,
    trust_keys: &crate::trust::TrustKeys,
) -> Result<(), OpsError> {
    verify_archive_against(path, manifest, key, trust_keys, None).await
}

/// [`verify_archive`], also holding every archived row's primary key against the row versions
/// the export read (`versions`, in the same order), so that the prune can then work from the
/// versions alone without decrypting the archive a second time.
async fn verify_archive_against(
    path: &Path,
    manifest: &Manifest,
    key: &SymmetricKey,
    trust_keys: &crate::trust::TrustKeys,
    versions: Option<versions::VersionReader>,
) -> Result<(), OpsError> {
    let shown = path.display().to_string();
    manifest
        .verify_signature(trust_keys)
        .map_err(|m| OpsError::new(Exit::Data, format!("{shown}: {m}")))?;
    if manifest.body.archive_key_id != key.id().to_string() {
        return Err(OpsError::new(
            Exit::NoPerm,
            format!(
                "{shown}: encrypted with archive key {}, but the archive key is {}",
                manifest.body.archive_key_id,
                key.id()
            ),
        ));
    }
    let (path, key) = (path.to_path_buf(), key.clone());
    let pk = manifest.body.primary_key.clone();
    let (digests, rows) = tokio::task::spawn_blocking(move || {
        let Some(mut versions) = versions else {
            return read_back(&path, &key, |_| Ok(()));
        };
        let shown = path.display().to_string();
        let read = read_back(&path, &key, |line| {
            let id = line_id(line, &pk).ok_or_else(|| {
                OpsError::new(
                    Exit::Data,
                    format!("{shown}: a row without a leading integer `{pk}`"),
                )
            })?;
            versions.next_for(id).map(|_| ())
        })?;
        versions.finish()?;
        Ok(read)
    })
    .await
    .map_err(|e| OpsError::new(Exit::Software, format!("verify thread failed: {e}")))??;
    compare(&shown, &manifest.body, &digests, rows)
}

fn compare(shown: &str, body: &Body, got: &Digests, rows: u64) -> Result<(), OpsError> {
    let mut problems = Vec::new();
    if got.file_bytes != body.file_bytes || got.file_sha256 != body.file_sha256 {
        problems.push(format!(
            "file is {} bytes with SHA-256 {}, manifest says {} bytes, {}",
            got.file_bytes, got.file_sha256, body.file_bytes, body.file_sha256
        ));
    }
    if got.plaintext_sha256 != body.plaintext_sha256 || got.plaintext_bytes != body.plaintext_bytes
    {
        problems.push("decrypted contents differ from the manifest's hash".to_string());
    }
    if rows != body.rows {
        problems.push(format!("{rows} rows, manifest says {}", body.rows));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(
            OpsError::new(Exit::Data, format!("{shown}: {}", problems.join("; ")))
                .hint("the archive or its manifest was modified; use another copy"),
        )
    }
}

/// Runs of consecutive primary keys written by the same transaction (one `xmin`).
#[derive(Debug, Default, PartialEq, Eq)]
struct VersionRuns {
    lows: Vec<i64>,
    highs: Vec<i64>,
    xmins: Vec<i64>,
}

/// Splits `ids` (ascending) and their `xmins` into runs: `[1,2,3,5]` with `[7,7,8,8]` → `1..=2`
/// at 7, `3..=3` at 8, `5..=5` at 8. Every id inside a run is in the batch, so deleting the run's
/// range where `xmin` matches deletes exactly those rows in their exported versions.
fn version_runs(ids: &[i64], xmins: &[i64]) -> VersionRuns {
    let mut runs = VersionRuns::default();
    for (&id, &xmin) in ids.iter().zip(xmins) {
        match (runs.highs.last_mut(), runs.xmins.last()) {
            (Some(high), Some(&run_xmin)) if *high + 1 == id && run_xmin == xmin => *high = id,
            _ => {
                runs.lows.push(id);
                runs.highs.push(id);
                runs.xmins.push(xmin);
            }
        }
    }
    runs
}

/// Planner settings of the prune by version (see [`prune`]), reset when it ends.
const PRUNE_PLAN: [&str; 4] = [
    "enable_hashjoin",
    "enable_mergejoin",
    "enable_seqscan",
    "jit",
];

/// Compresses the full-page images in the prune's WAL (lz4 where the server has it), which
/// halves the WAL a prune writes after a checkpoint and with it the flushes every concurrent
/// commit waits for. Only a superuser may set it (or a role granted SET on it, which this does
/// not look for: trying and failing would put an error in the server's log on every run); for
/// anyone else the prune runs as it is. Returns whether it was set.
async fn compress_wal(conn: &mut PgConnection) -> Result<bool, OpsError> {
    let method: Option<String> = sqlx::query_scalar(
        "select case when current_setting('is_superuser') <> 'on' then null \
                     when 'lz4' = any(enumvals) then 'lz4' else 'on' end \
         from pg_settings where name = 'wal_compression'",
    )
    .fetch_optional(&mut *conn)
    .answer("setting up the prune")
    .await?
    .flatten();
    let Some(method) = method else {
        return Ok(false);
    };
    sqlx::query(AssertSqlSafe(format!("set wal_compression = {method}")))
        .execute(&mut *conn)
        .answer("setting up the prune")
        .await?;
    Ok(true)
}

/// One batch of archived rows for the prune: their primary keys, and either the versions the
/// export saw (`xmins`) or their archived lines (`docs`).
struct Batch {
    ids: Vec<i64>,
    xmins: Vec<i64>,
    docs: Vec<String>,
}

/// What a prune did.
struct Pruned {
    rows: u64,
    transactions: u64,
    rested: std::time::Duration,
}

/// Step 6: delete exactly the rows the verified archive holds, in short transactions paced for
/// the platform's own writers (see [`crate::pace`]), then mark the manifest `pruned`.
///
/// A row is deleted only if it is still the archived version, checked in the delete's own
/// statement, so even an UPDATE that commits while the delete waits for the row is seen
/// (PostgreSQL re-checks the condition on the new version). A row changed since the export
/// stays in the table for a later run. The run that exported the rows compares each row's
/// `xmin` with the one the export saw (`versions`, see [`RowVersions`]); a prune resumed by a
/// later run after a crash renders each row as the export did (`row_to_json` of the same
/// columns in the same order, session in UTC) and compares the text with its archived line,
/// byte for byte: everything that needs is the archive itself.
async fn prune(
    conn: &mut PgConnection,
    job: &Job,
    shape: &TableShape,
    path: &Path,
    mut manifest: Manifest,
    versions: Option<RowVersions>,
) -> Result<Pruned, OpsError> {
    let by_version = versions.is_some();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(4);
    let (reader_path, key, pk, batch_size) = (
        path.to_path_buf(),
        job.archive_key.clone(),
        shape.primary_key.clone(),
        job.batch_size,
    );
    let reader = tokio::task::spawn_blocking(move || {
        let new_batch = || Batch {
            ids: Vec::with_capacity(batch_size),
            xmins: Vec::new(),
            docs: Vec::new(),
        };
        let mut batch = new_batch();
        if let Some(versions) = versions {
            // Verified against the archive, row for row, by the run's own read-back.
            let mut versions = versions.reader()?;
            while let Some((id, xmin)) = versions.next()? {
                batch.ids.push(id);
                batch.xmins.push(xmin);
                if batch.ids.len() >= batch_size {
                    tx.blocking_send(std::mem::replace(&mut batch, new_batch()))
                        .map_err(|_| OpsError::new(Exit::Software, "prune stopped"))?;
                }
            }
            if !batch.ids.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            return Ok((Digests::default(), 0));
        }
        let shown = reader_path.display().to_string();
        let result = read_back(&reader_path, &key, |line| {
            let bad = |what: &str| OpsError::new(Exit::Data, format!("{shown}: {what}"));
            let id = line_id(line, &pk)
                .ok_or_else(|| bad(&format!("a row without a leading integer `{pk}`")))?;
            batch.ids.push(id);
            let doc = std::str::from_utf8(line).map_err(|_| bad("a row that is not UTF-8"))?;
            batch.docs.push(doc.to_string());
            if batch.ids.len() >= batch_size {
                tx.blocking_send(std::mem::replace(&mut batch, new_batch()))
                    .map_err(|_| OpsError::new(Exit::Software, "prune stopped"))?;
            }
            Ok(())
        });
        if result.is_ok() && !batch.ids.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        result
    });
    // By version: consecutive ids written by one transaction (a bulk insert, an import) form
    // one run, deleted by one index range scan where xmin matches, as fast as deleting the
    // range blindly; rows written one per transaction are runs of one. The planner must walk
    // the runs and scan the index per run: hashing the runs on xmin and scanning the table
    // would cost the table size times the runs (minutes per batch when most rows share an
    // xmin), so hash and merge joins, sequential scans and JIT (compiling for the cost those
    // settings make up) are off on this connection while it prunes.
    // By contents: ids arrive in order, and the batch's range keeps PostgreSQL to that stretch
    // of the index.
    let wal_compressed = compress_wal(conn).await?;
    let delete = if by_version {
        for setting in PRUNE_PLAN {
            sqlx::query(AssertSqlSafe(format!("set {setting} = off")))
                .execute(&mut *conn)
                .answer("setting up the prune")
                .await?;
        }
        format!(
            "delete from {t} as t using unnest($1::int8[], $2::int8[], $3::int8[]) r(lo, hi, v) \
             where t.{pk} between r.lo and r.hi and t.xmin = r.v::text::xid",
            t = shape.quoted,
            pk = quote_ident(&shape.primary_key),
        )
    } else {
        format!(
            "delete from {t} as t using unnest($1::int8[], $2::text[]) a(id, v) \
             where t.{pk} = a.id and t.{pk} between $3 and $4 \
             and (select row_to_json(x)::text from (select {row}) x) = a.v",
            t = shape.quoted,
            pk = quote_ident(&shape.primary_key),
            row = shape.row_list
        )
    };
    let progress = progress(job.json, "pruning", "rows deleted");
    let mut pacer = Pacer::new(job.pace, job.batch_size);
    let mut deleted = 0u64;
    while let Some(batch) = rx.recv().await {
        let mut from = 0;
        while from < batch.ids.len() {
            let to = batch.ids.len().min(from + pacer.rows());
            let ids = &batch.ids[from..to];
            let query = sqlx::query(AssertSqlSafe(delete.clone()));
            let query = if by_version {
                let runs = version_runs(ids, &batch.xmins[from..to]);
                query.bind(runs.lows).bind(runs.highs).bind(runs.xmins)
            } else {
                query
                    .bind(ids)
                    .bind(&batch.docs[from..to])
                    .bind(ids[0])
                    .bind(ids[ids.len() - 1])
            };
            let slice = Instant::now();
            let done = query
                .execute(&mut *conn)
                .answer("deleting archived rows")
                .await?;
            let rest = pacer.record(ids.len(), slice.elapsed());
            from = to;
            deleted += done.rows_affected();
            progress.set_position(deleted);
            crate::failpoint::hit("archive-mid-prune");
            // The safe point: every slice is its own transaction, and the next run finishes the rest.
            crate::failpoint::pause("archive-between-batches");
            crate::interrupt::check(format_args!(
                "{} is written and verified; {deleted} of its rows deleted so far. The next run deletes the rest",
                path.display()
            ))?;
            tokio::time::sleep(rest).await;
        }
    }
    progress.finish_and_clear();
    if by_version {
        for setting in PRUNE_PLAN {
            sqlx::query(AssertSqlSafe(format!("reset {setting}")))
                .execute(&mut *conn)
                .answer("ending the prune")
                .await?;
        }
    }
    if wal_compressed {
        sqlx::query("reset wal_compression")
            .execute(&mut *conn)
            .answer("ending the prune")
            .await?;
    }
    reader
        .await
        .map_err(|e| OpsError::new(Exit::Software, format!("prune reader failed: {e}")))??;
    if deleted < manifest.body.rows {
        tracing::warn!(
            "{} of the {} archived rows were not deleted: changed since the export (they stay in the table; a later run archives them) or already gone",
            manifest.body.rows - deleted,
            manifest.body.rows
        );
    }
    manifest.body.state = State::Pruned;
    manifest.body.rows_deleted = Some(deleted);
    Manifest::sign(manifest.body, &job.signing_key)?
        .write(&manifest_path(path), Replace::Allowed)?;
    Ok(Pruned {
        rows: deleted,
        transactions: pacer.slices(),
        rested: pacer.rested(),
    })
}

/// Step 7: give the freed space back to the table's free-space map and refresh statistics.
async fn vacuum(conn: &mut PgConnection, shape: &TableShape) -> Result<(), OpsError> {
    sqlx::query(AssertSqlSafe(format!("vacuum (analyze) {}", shape.quoted)))
        .execute(&mut *conn)
        .answer("vacuuming the table")
        .await?;
    Ok(())
}

/// Step 8: the report, for people or machines.
fn print_report(ctx: &Context, r: &RunReport) -> Result<(), OpsError> {
    if ctx.json {
        return print_json(r);
    }
    let dry_run = r.status == "dry_run";
    for path in &r.recovered {
        if dry_run {
            println!("would complete the interrupted archive {}", path.display());
        } else {
            println!("completed the interrupted archive {}", path.display());
        }
    }
    if dry_run {
        for path in &r.removed_temp_files {
            println!(
                "would remove {}, a temp file of an interrupted run",
                path.display()
            );
        }
    }
    match r.status {
        "nothing_to_archive" => println!("nothing to archive: no row of {} is older than {}", r.table, r.cutoff),
        "dry_run" => println!(
            "dry run: {} rows of {} older than {} would be archived ({} bytes of JSON, about {} bytes encrypted); nothing changed",
            r.rows,
            r.table,
            r.cutoff,
            r.plaintext_bytes,
            r.estimated_file_bytes.unwrap_or(0)
        ),
        _ => {
            println!(
                "archived {} rows of {} older than {} to {}",
                r.rows,
                r.table,
                r.cutoff,
                r.file.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
            );
            println!(
                "  {} bytes of JSON -> {} bytes encrypted (ratio {:.1}), verified, {} rows deleted",
                r.plaintext_bytes,
                r.file_bytes,
                r.compression_ratio.unwrap_or(0.0),
                r.rows_deleted
            );
            let p = &r.phases_ms;
            println!(
                "  export {:.0} ms, verify {:.0} ms, prune {:.0} ms ({} transactions, {:.0} ms of it resting for other writers), vacuum {:.0} ms, total {:.0} ms",
                p.export, p.verify, p.prune, r.prune_transactions, r.prune_rest_ms, p.vacuum, r.duration_ms
            );
        }
    }
    Ok(())
}

fn ratio(plain: u64, file: u64) -> Option<f64> {
    (file > 0).then(|| (plain as f64 / file as f64 * 100.0).round() / 100.0)
}

// ---------------------------------------------------------------------------------------------
// archive list / verify / cat / restore

/// Resolves FILE (an archive or its manifest) to (archive path, manifest). An archive given by
/// name is checked as it is, against the manifest beside it (`x.zst.enc` → `x.manifest.json`).
fn locate(file: &Path) -> Result<(PathBuf, Manifest), OpsError> {
    let given_manifest = file_name(file).ends_with(".manifest.json");
    let manifest_file = if given_manifest {
        file.to_path_buf()
    } else {
        manifest_path(file)
    };
    if !file.exists() {
        return Err(PathError::new(
            FileAction::Open,
            file,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
        .into());
    }
    if !manifest_file.exists() {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: its manifest {} is missing",
                file.display(),
                manifest_file.display()
            ),
        )
        .hint(
            "`ransomeye-ops decrypt FILE | zstd -d` still reads an archive without its manifest",
        ));
    }
    let manifest = Manifest::read(&manifest_file, "archive manifest")?;
    let archive = if given_manifest {
        manifest::archive_path(&manifest_file, &manifest.body)
    } else {
        file.to_path_buf()
    };
    Ok((archive, manifest))
}

/// How the operator resolves an orphan (README, `archive`).
const ORPHAN_HINT: &str = "an orphan is an archive data file without its manifest, or a manifest without its data file; \
archive runs never delete one. Put the missing half back from your copy, or move the orphan out of [archive] dir \
once you know its rows are safe (see the README, `archive`)";

/// What `archive list` shows of a manifest.
#[derive(Debug, Serialize)]
struct ListInfo {
    table: String,
    state: State,
    rows: u64,
    first_id: Option<i64>,
    last_id: Option<i64>,
    first_time: Option<String>,
    last_time: Option<String>,
    file_bytes: u64,
    created_at: String,
}

#[derive(Debug, Serialize)]
struct ListEntry {
    file: PathBuf,
    /// The manifest's facts (absent for a data file without its manifest).
    #[serde(flatten)]
    info: Option<ListInfo>,
    archive_present: bool,
    /// An interrupted run left the archive at its temp name; the next run completes it.
    interrupted: bool,
    /// Why the file is an orphan, if it is one.
    orphan: Option<&'static str>,
}

fn list(ctx: &Context) -> Result<(), OpsError> {
    let config = ctx.config()?;
    crate::dirs::check_readable(&config.archive.dir, "[archive] dir")?;
    let scan = DirScan::read(&config.archive.dir)?;
    let orphans = scan.orphans();
    let orphan_reason = |file: &Path| orphans.iter().find(|o| o.file == file).map(|o| o.reason);
    let mut entries: Vec<ListEntry> = scan
        .manifests
        .iter()
        .map(|(path, m)| {
            let archive = manifest::archive_path(path, &m.body);
            let b = m.body.clone();
            ListEntry {
                archive_present: archive.exists(),
                interrupted: !archive.exists() && scan.is_interrupted(path, m),
                orphan: orphan_reason(path),
                file: archive,
                info: Some(ListInfo {
                    table: b.table,
                    state: b.state,
                    rows: b.rows,
                    first_id: b.first_id,
                    last_id: b.last_id,
                    first_time: b.first_time,
                    last_time: b.last_time,
                    file_bytes: b.file_bytes,
                    created_at: b.created_at,
                }),
            }
        })
        .collect();
    entries.extend(
        orphans
            .iter()
            .filter(|o| o.reason == NO_MANIFEST)
            .map(|o| ListEntry {
                file: o.file.clone(),
                info: None,
                archive_present: true,
                interrupted: false,
                orphan: Some(o.reason),
            }),
    );
    // Oldest first: by when the archive was written (a data file without its manifest, by its
    // modification time), then by name.
    let written = |e: &ListEntry| match &e.info {
        Some(i) => i.created_at.clone(),
        None => std::fs::metadata(&e.file)
            .and_then(|m| m.modified())
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default(),
    };
    entries.sort_by_cached_key(|e| (written(e), e.file.clone()));
    if ctx.json {
        print_json(&entries)?;
    } else if entries.is_empty() {
        println!("no archives in {}", config.archive.dir.display());
    } else {
        let mut table = Table::new(&[
            ("FILE", Align::Left),
            ("STATE", Align::Left),
            ("ROWS", Align::Right),
            ("IDS", Align::Left),
            ("BYTES", Align::Right),
            ("WRITTEN", Align::Left),
            ("NOTE", Align::Left),
        ]);
        for e in &entries {
            let note = match (e.orphan, e.interrupted) {
                (Some(reason), _) => format!("ORPHAN: {reason}"),
                (None, true) => "interrupted: the next archive run completes it".to_string(),
                (None, false) => String::new(),
            };
            let Some(i) = &e.info else {
                table.row(vec![
                    file_name(&e.file),
                    "?".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    written(e),
                    note,
                ]);
                continue;
            };
            let id = |id: Option<i64>| id.map(|i| i.to_string()).unwrap_or_default();
            table.row(vec![
                file_name(&e.file),
                format!("{:?}", i.state).to_lowercase(),
                i.rows.to_string(),
                format!("{}..{}", id(i.first_id), id(i.last_id)),
                i.file_bytes.to_string(),
                i.created_at.clone(),
                note,
            ]);
        }
        print!("{}", table.render());
    }
    orphan_error(&config.archive.dir, &orphans)
}

/// Exit 65 naming the orphans, if there are any.
fn orphan_error(dir: &Path, orphans: &[Orphan]) -> Result<(), OpsError> {
    if orphans.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = orphans.iter().map(|o| file_name(&o.file)).collect();
    Err(OpsError::new(
        Exit::Data,
        format!(
            "{} orphan file{} in {}: {}",
            orphans.len(),
            if orphans.len() == 1 { "" } else { "s" },
            dir.display(),
            names.join(", ")
        ),
    )
    .hint(ORPHAN_HINT))
}

#[derive(Debug, Serialize)]
struct VerifyEntry {
    file: PathBuf,
    ok: bool,
    error: Option<String>,
}

fn verify(ctx: &Context, file: Option<&Path>, all: bool) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Archive)?;
    let trust = crate::trust::verifying_keys(&config)?;
    // With --all: every manifest, and every data file without one (an orphan: it fails).
    let (targets, orphans): (Vec<PathBuf>, Vec<Orphan>) = if all {
        crate::dirs::check_readable(&config.archive.dir, "[archive] dir")?;
        let scan = DirScan::read(&config.archive.dir)?;
        let orphans = scan.orphans();
        let mut targets: Vec<PathBuf> = scan.manifests.iter().map(|(p, _)| p.clone()).collect();
        targets.extend(
            orphans
                .iter()
                .filter(|o| o.reason == NO_MANIFEST)
                .map(|o| o.file.clone()),
        );
        targets.sort();
        (targets, orphans)
    } else {
        (
            file.map(Path::to_path_buf).into_iter().collect(),
            Vec::new(),
        )
    };
    let rt = runtime()?;
    let mut results = Vec::new();
    for target in &targets {
        let orphan = orphans.iter().find(|o| &o.file == target);
        let outcome = locate(target).and_then(|(archive, manifest)| {
            if !archive.exists() {
                let what = match orphan {
                    Some(o) => format!("{}: orphan: {}", target.display(), o.reason),
                    None if manifest.body.state == State::Written => format!(
                        "{}: not in place yet: an interrupted run left it at a temp name; the next archive run completes it",
                        archive.display()
                    ),
                    None => format!("{}: archive file missing", archive.display()),
                };
                return Err(OpsError::new(Exit::Data, what));
            }
            rt.block_on(verify_archive(&archive, &manifest, &key, &trust))
                .map(|()| archive)
        });
        let outcome = match (orphan, outcome) {
            (Some(o), Err(_)) if o.reason == NO_MANIFEST => Err(OpsError::new(
                Exit::Data,
                format!("{}: orphan: {}", target.display(), o.reason),
            )),
            (_, outcome) => outcome,
        };
        match outcome {
            Ok(archive) => {
                if !ctx.json {
                    println!("ok      {}", archive.display());
                }
                results.push(VerifyEntry {
                    file: archive,
                    ok: true,
                    error: None,
                });
            }
            Err(e) => {
                if !ctx.json {
                    println!("FAILED  {}", e.what);
                }
                results.push(VerifyEntry {
                    file: target.clone(),
                    ok: false,
                    error: Some(e.what),
                });
            }
        }
    }
    if ctx.json {
        print_json(&results)?;
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.file.display().to_string())
        .collect();
    if failed.is_empty() {
        if results.is_empty() && !ctx.json {
            println!("no archives to verify");
        }
        Ok(())
    } else {
        Err(OpsError::new(
            Exit::Data,
            format!(
                "{} of {} archives failed verification: {}",
                failed.len(),
                results.len(),
                failed.join(", ")
            ),
        )
        .hint(if orphans.is_empty() {
            "do not trust the failed archives; restore them from another copy"
        } else {
            ORPHAN_HINT
        }))
    }
}

fn cat(ctx: &Context, file: &Path) -> Result<(), OpsError> {
    use std::io::Write;
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Archive)?;
    let (archive, manifest) = locate(file)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let (digests, rows) = read_back(&archive, &key, |line| {
        out.write_all(line)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(stdout_error)
    })?;
    out.flush().map_err(stdout_error)?;
    compare(
        &archive.display().to_string(),
        &manifest.body,
        &digests,
        rows,
    )
}

fn restore(ctx: &Context, file: &Path) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Archive)?;
    let trust = crate::trust::verifying_keys(&config)?;
    let (archive, manifest) = locate(file)?;
    let rt = runtime()?;
    let (inserted, skipped) = rt.block_on(async {
        verify_archive(&archive, &manifest, &key, &trust).await?;
        let mut conn = db::connect(&config.database.url, "archive restore").await?;
        let shape = TableShape::load(&mut conn, &manifest.body.table, &manifest.body.time_column).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
        let (path, key) = (archive.clone(), key.clone());
        let reader = tokio::task::spawn_blocking(move || {
            let (mut batch, mut n) = (String::from("["), 0usize);
            let result = read_back(&path, &key, |line| {
                if n > 0 {
                    batch.push(',');
                }
                batch.push_str(&String::from_utf8_lossy(line));
                n += 1;
                if n == RESTORE_BATCH {
                    batch.push(']');
                    tx.blocking_send(std::mem::replace(&mut batch, String::from("[")))
                        .map_err(|_| OpsError::new(Exit::Software, "restore stopped"))?;
                    n = 0;
                }
                Ok(())
            });
            if result.is_ok() && n > 0 {
                batch.push(']');
                let _ = tx.blocking_send(batch);
            }
            result
        });
        let insert = format!(
            "insert into {t} select * from json_populate_recordset(null::{t}, $1::json) on conflict do nothing",
            t = shape.quoted
        );
        let mut inserted = 0u64;
        while let Some(batch) = rx.recv().await {
            inserted += sqlx::query(AssertSqlSafe(insert.clone()))
                .bind(batch)
                .execute(&mut conn)
                .answer("re-inserting archived rows")
                .await?
                .rows_affected();
        }
        let (_, rows) = reader
            .await
            .map_err(|e| OpsError::new(Exit::Software, format!("restore reader failed: {e}")))??;
        Ok::<_, OpsError>((inserted, rows - inserted))
    })?;
    if ctx.json {
        return print_json(&serde_json::json!({
            "file": archive, "table": manifest.body.table, "rows_inserted": inserted, "rows_skipped": skipped,
        }));
    }
    println!(
        "restored {inserted} rows from {} into {} ({skipped} skipped: their primary key already exists)",
        archive.display(),
        manifest.body.table
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_runs_join_only_consecutive_ids_of_one_transaction() {
        let runs = super::version_runs(&[1, 2, 3, 5, 6, 9], &[7, 7, 8, 8, 8, 8]);
        assert_eq!(runs.lows, [1, 3, 5, 9]);
        assert_eq!(runs.highs, [2, 3, 6, 9]);
        assert_eq!(runs.xmins, [7, 8, 8, 8]);
        assert_eq!(super::version_runs(&[], &[]), super::VersionRuns::default());
    }

    use super::*;

    #[test]
    fn line_id_reads_the_leading_primary_key() {
        assert_eq!(
            line_id(br#"{"id":12345,"created_at":"x"}"#, "id"),
            Some(12345)
        );
        assert_eq!(line_id(br#"{"id":-7}"#, "id"), Some(-7));
        assert_eq!(line_id(br#"{"created_at":"x","id":1}"#, "id"), None);
        assert_eq!(line_id(br#"{"weird\"key":5,"a":1}"#, "weird\"key"), Some(5));
    }

    #[test]
    fn bounds_keep_first_and_last_line_however_the_stream_is_cut() {
        let stream = b"{\"id\":1}\n{\"id\":22}\n\n{\"id\":333}\n{\"id\":4444}\n";
        for cut_a in 0..stream.len() {
            for cut_b in cut_a..stream.len() {
                let (mut bounds, mut partial) = (Bounds::default(), Vec::new());
                let rows: u64 = [&stream[..cut_a], &stream[cut_a..cut_b], &stream[cut_b..]]
                    .iter()
                    .map(|part| bounds.take(part, &mut partial))
                    .sum();
                assert_eq!(rows, 5, "cuts {cut_a} {cut_b}");
                assert_eq!(bounds.first.as_deref(), Some(&b"{\"id\":1}"[..]));
                assert_eq!(bounds.last, b"{\"id\":4444}");
                assert!(partial.is_empty());
            }
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("audit_logs"), "\"audit_logs\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn archive_names_never_collide() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = next_archive_name(dir.path(), "2026-11-23");
        assert_eq!(file_name(&first), "logs_2026-11-23.zst.enc");
        std::fs::write(manifest_path(&first), b"{}").expect("write");
        assert_eq!(
            file_name(&next_archive_name(dir.path(), "2026-11-23")),
            "logs_2026-11-23.2.zst.enc"
        );
    }
}
