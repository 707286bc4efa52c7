//! `logs`: rotated log files archived (compressed, encrypted, verified before deleted),
//! verified, and read back.
//!
//! `logs archive` procedure, per directory of `[logs] dirs`: lock (`archive/.logs-archive.lock`)
//! → recover what a killed run left ([`recover`]) → scan for candidates ([`candidates`]) → each
//! candidate archived and verified, and only then deleted ([`archive`]) → retention: archives of
//! logs older than `--archive-retention-days` deleted once every archive that stays verified
//! ([`expire`]) → report. A kill at any moment leaves every original either in place or in a
//! committed, indexed archive that verified; the next run finishes what was left. `--dry-run`
//! takes no lock, creates no directory and changes nothing.

mod archive;
mod candidates;
mod expire;
mod recover;
mod store;
mod verify;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ransomeye_kernel::access::create_private_dir;
use ransomeye_kernel::config::Config;
use ransomeye_kernel::keys::{KeyDir, KeyPurpose};
use serde::Serialize;

use self::archive::{Keys, Outcome};
use self::candidates::Skipped;
use self::expire::Expired;
use self::recover::Recovered;
use self::store::ARCHIVE_SUBDIR;
use self::verify::{Checked, LazyKey, LOCK_NAME};
use super::{say, Context};
use crate::cli::{LogsArchiveArgs, LogsArgs, LogsCommand};
use crate::error::{Exit, OpsError};
use crate::run_lock::RunLock;
use crate::table::{Align, Table};
use crate::utils::print_json;

/// Runs `logs`.
pub fn run(ctx: &Context, args: &LogsArgs) -> Result<(), OpsError> {
    let config = ctx.config()?;
    match &args.command {
        LogsCommand::Archive(a) => archive_run(ctx, &config, a),
        LogsCommand::Verify { file } => verify_run(ctx, &config, file.as_deref()),
        LogsCommand::Cat { file } => {
            let trust = crate::trust::verifying_keys(&config)?;
            verify::cat(file, &trust, &mut LazyKey::new(&config.keys.dir))
        }
    }
}

/// What `logs archive` reports.
#[derive(Debug, Default, Serialize)]
struct Report {
    dry_run: bool,
    /// Per directory.
    dirs: Vec<DirReport>,
    /// Originals archived (or in a dry run, to archive).
    archived_files: usize,
    /// Bytes of those originals.
    archived_bytes: u64,
    /// Bytes of their archives.
    archive_bytes: u64,
    /// Archives deleted by retention (or to delete).
    expired_files: usize,
    /// Bytes those freed.
    freed_bytes: u64,
    /// Originals kept because their archive did not verify.
    mismatches: usize,
}

#[derive(Debug, Default, Serialize)]
struct DirReport {
    dir: PathBuf,
    recovered: Recovered,
    outcomes: Vec<Outcome>,
    skipped: Vec<Skipped>,
    expired: Vec<Expired>,
    /// Why retention deleted nothing although archives were due (an archive that stays failed).
    expiry_refused: Option<String>,
}

/// `logs archive`.
fn archive_run(ctx: &Context, config: &Config, args: &LogsArchiveArgs) -> Result<(), OpsError> {
    let dirs = log_dirs(config)?;
    let keys = load_keys(config)?;
    let now = SystemTime::now();
    let cutoff = now - Duration::from_secs(u64::from(args.retention_days) * 86_400);
    let expiry_cutoff = unix_secs(now) - i64::from(args.archive_retention_days) * 86_400;
    let mut report = Report {
        dry_run: args.dry_run,
        ..Report::default()
    };
    if !args.dry_run {
        // A signal stops the run between files, never inside one.
        crate::interrupt::install()?;
    }
    let mut locks = Vec::new();
    for dir in &dirs {
        crate::dirs::check_writable(dir, "[logs] dirs")?;
        let archive_dir = dir.join(ARCHIVE_SUBDIR);
        if !args.dry_run {
            create_private_dir(&archive_dir)?;
            locks.push(RunLock::acquire(&archive_dir, LOCK_NAME, "logs archive")?);
        }
    }
    crate::failpoint::hold("logs-locked");
    let open = crate::open_files::snapshot();
    for dir in &dirs {
        let archive_dir = dir.join(ARCHIVE_SUBDIR);
        let mut dir_report = DirReport {
            dir: dir.clone(),
            recovered: recover::recover(dir, &archive_dir, &keys.trust, args.dry_run)?,
            ..DirReport::default()
        };
        let scan = candidates::scan(dir, &config.logs.pattern, cutoff, now, &open)?;
        dir_report.skipped = scan.skipped;
        let outcomes = if args.dry_run {
            scan.candidates
                .iter()
                .map(|candidate| {
                    Outcome::Archived(archive::Archived {
                        path: candidate.path.clone(),
                        archive: archive_dir.join(
                            store::Layout::for_name(&candidate.name, config.logs.encrypt)
                                .archive_name(&candidate.name),
                        ),
                        bytes: candidate.size,
                        archive_bytes: 0,
                    })
                })
                .collect()
        } else {
            archive_all(&scan.candidates, &archive_dir, config.logs.encrypt, &keys)?
        };
        for outcome in outcomes {
            tally(&mut report, &outcome);
            dir_report.outcomes.push(outcome);
        }
        expire_dir(
            &archive_dir,
            expiry_cutoff,
            &keys,
            args.dry_run,
            &mut dir_report,
        )?;
        report.expired_files += dir_report.expired.len();
        report.freed_bytes += dir_report
            .expired
            .iter()
            .map(|e| e.freed_bytes)
            .sum::<u64>();
        report.dirs.push(dir_report);
    }
    drop(locks);
    print_report(ctx, &report)?;
    let refused = report.dirs.iter().find_map(|d| d.expiry_refused.clone());
    if report.mismatches > 0 {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{} log file(s) did not read back as written; their originals are kept",
                report.mismatches
            ),
        )
        .hint("check the disk holding archive/ (dmesg, SMART); then run again"));
    }
    if let Some(refused) = refused {
        return Err(OpsError::new(Exit::Data, refused)
            .hint("run `ransomeye-ops logs verify` for the list; nothing was expired"));
    }
    Ok(())
}

/// Most files archived at once: one per core (each is zstd, AES-GCM and SHA-256 bound), at most
/// four so that a busy host keeps cores for its platform.
const MAX_WORKERS: usize = 4;

/// Archives `candidates` into `archive_dir`, several files at once ([`MAX_WORKERS`]): files are
/// independent, and each goes through the whole per-file procedure on one thread. Returns the
/// outcomes in candidate order. After an error or a signal no worker starts another file; the
/// first error is returned (a file that was being archived is left as a kill would leave it).
fn archive_all(
    candidates: &[candidates::Candidate],
    archive_dir: &Path,
    encrypt: bool,
    keys: &Keys,
) -> Result<Vec<Outcome>, OpsError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, MAX_WORKERS)
        .min(candidates.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let work = || {
        let mut done = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(candidate) = candidates.get(i) else {
                break;
            };
            let result =
                crate::interrupt::check("the files not yet archived stay for the next run")
                    .and_then(|()| archive::archive_one(candidate, archive_dir, encrypt, keys));
            if result.is_err() {
                stop.store(true, Ordering::SeqCst);
            }
            done.push((i, result));
        }
        done
    };
    let mut results: Vec<(usize, Result<Outcome, OpsError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(
                handle
                    .join()
                    .map_err(|_| OpsError::new(Exit::Software, "an archiving thread panicked"))?,
            );
        }
        Ok::<_, OpsError>(all)
    })?;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Retention in one archive directory: the due archives deleted, once the others verified.
fn expire_dir(
    archive_dir: &Path,
    cutoff: i64,
    keys: &Keys,
    dry_run: bool,
    report: &mut DirReport,
) -> Result<(), OpsError> {
    let (expiring, staying) = expire::split(archive_dir, cutoff, &keys.trust)?;
    if expiring.is_empty() {
        return Ok(());
    }
    if dry_run {
        report.expired = expiring
            .iter()
            .map(|(archive, entry)| Expired {
                archive: archive.clone(),
                log_mtime: expire::mtime_text(entry.mtime),
                freed_bytes: entry.archive_bytes,
            })
            .collect();
        return Ok(());
    }
    let mut key = LazyKey::new(&keys.dir);
    let mut failed: Vec<Checked> = staying
        .iter()
        .map(|a| verify::verify_one(a, &keys.trust, &mut key))
        .filter(|c| c.error.is_some())
        .collect();
    failed.extend(
        verify::orphans(archive_dir)?
            .into_iter()
            .map(|(file, why)| Checked {
                file,
                name: None,
                bytes: 0,
                error: Some(why.to_string()),
            }),
    );
    if let Some(first) = failed.first() {
        report.expiry_refused = Some(format!(
            "{} archive(s) in {} failed verification (first: {}: {}), so none was expired",
            failed.len(),
            archive_dir.display(),
            first.file.display(),
            first.error.as_deref().unwrap_or("")
        ));
        return Ok(());
    }
    report.expired = expire::delete(archive_dir, &expiring)?;
    Ok(())
}

fn tally(report: &mut Report, outcome: &Outcome) {
    match outcome {
        Outcome::Archived(a) | Outcome::Completed(a) => {
            report.archived_files += 1;
            report.archived_bytes += a.bytes;
            report.archive_bytes += a.archive_bytes;
        }
        Outcome::Mismatch { .. } => report.mismatches += 1,
        Outcome::Skipped { .. } => {}
    }
}

fn print_report(ctx: &Context, report: &Report) -> Result<(), OpsError> {
    if ctx.json {
        return print_json(report);
    }
    let verb = if report.dry_run {
        "would archive"
    } else {
        "archived"
    };
    let mut table = Table::new(&[
        ("LOG", Align::Left),
        ("RESULT", Align::Left),
        ("BYTES", Align::Right),
        ("ARCHIVE BYTES", Align::Right),
        ("ARCHIVE / REASON", Align::Left),
    ]);
    for dir in &report.dirs {
        for outcome in &dir.outcomes {
            let row = match outcome {
                Outcome::Archived(a) => vec![
                    a.path.display().to_string(),
                    verb.to_string(),
                    a.bytes.to_string(),
                    a.archive_bytes.to_string(),
                    a.archive.display().to_string(),
                ],
                Outcome::Completed(a) => vec![
                    a.path.display().to_string(),
                    "finished (killed run)".into(),
                    a.bytes.to_string(),
                    a.archive_bytes.to_string(),
                    a.archive.display().to_string(),
                ],
                Outcome::Skipped { path, reason } => vec![
                    path.display().to_string(),
                    "skipped".into(),
                    String::new(),
                    String::new(),
                    reason.clone(),
                ],
                Outcome::Mismatch { path, detail } => vec![
                    path.display().to_string(),
                    "KEPT: MISMATCH".into(),
                    String::new(),
                    String::new(),
                    detail.clone(),
                ],
            };
            table.row(row);
        }
        for s in &dir.skipped {
            table.row(vec![
                s.path.display().to_string(),
                "skipped".into(),
                String::new(),
                String::new(),
                s.reason.clone(),
            ]);
        }
        for e in &dir.expired {
            table.row(vec![
                e.archive.display().to_string(),
                (if report.dry_run {
                    "would expire"
                } else {
                    "expired"
                })
                .into(),
                String::new(),
                e.freed_bytes.to_string(),
                format!("log of {}", e.log_mtime),
            ]);
        }
        let r = &dir.recovered;
        for (what, files) in [
            ("temp file removed", &r.temp_files),
            ("stale entry removed", &r.stale_entries),
            ("expiry finished", &r.expiries_finished),
        ] {
            for f in files {
                table.row(vec![f.display().to_string(), what.into()]);
            }
        }
    }
    if !table.is_empty() && !ctx.quiet {
        print!("{}", table.render());
    }
    say!(
        ctx,
        "{}{} log file(s), {} bytes into {} bytes; {} archive(s) expired, {} bytes freed",
        if report.dry_run { "dry run: " } else { "" },
        report.archived_files,
        report.archived_bytes,
        report.archive_bytes,
        report.expired_files,
        report.freed_bytes
    );
    Ok(())
}

/// `logs verify [FILE]`.
fn verify_run(ctx: &Context, config: &Config, file: Option<&Path>) -> Result<(), OpsError> {
    let trust = crate::trust::verifying_keys(config)?;
    let mut key = LazyKey::new(&config.keys.dir);
    let checked = match file {
        Some(file) => {
            let archive = store::archive_path(file);
            if !archive.exists() && !store::entry_path(&archive).exists() {
                return Err(OpsError::new(
                    Exit::NoInput,
                    format!("{}: no such log archive", archive.display()),
                ));
            }
            vec![verify::verify_one(&archive, &trust, &mut key)]
        }
        None => {
            let mut all = Vec::new();
            for dir in log_dirs(config)? {
                all.extend(verify::verify_dir(
                    &dir.join(ARCHIVE_SUBDIR),
                    &trust,
                    &mut key,
                )?);
            }
            all
        }
    };
    if checked.is_empty() {
        return Err(OpsError::new(Exit::NoInput, "no log archive to verify")
            .hint("nothing verified is a failure for monitoring; `logs archive` creates them"));
    }
    if ctx.json {
        print_json(&checked)?;
    } else {
        let mut table = Table::new(&[
            ("ARCHIVE", Align::Left),
            ("RESULT", Align::Left),
            ("BYTES", Align::Right),
        ]);
        for c in &checked {
            table.row(vec![
                c.file.display().to_string(),
                c.error
                    .clone()
                    .map_or("verified".into(), |e| format!("FAILED: {e}")),
                c.bytes.to_string(),
            ]);
        }
        if !ctx.quiet {
            print!("{}", table.render());
        }
    }
    let failed: Vec<&Checked> = checked.iter().filter(|c| c.error.is_some()).collect();
    if let Some(first) = failed.first() {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{} of {} log archive(s) failed verification (first: {}: {})",
                failed.len(),
                checked.len(),
                first.file.display(),
                first.error.as_deref().unwrap_or("")
            ),
        )
        .hint("do not trust a failed archive; restore it from another copy"));
    }
    if !ctx.json {
        say!(ctx, "{} log archive(s) verified", checked.len());
    }
    Ok(())
}

/// `[logs] dirs`, refused (78) when empty.
fn log_dirs(config: &Config) -> Result<Vec<PathBuf>, OpsError> {
    if config.logs.dirs.is_empty() {
        return Err(OpsError::new(
            Exit::Config,
            "[logs] dirs is empty: no log directory to work on",
        )
        .hint("add dirs = [\"/var/log/ransomeye\"] under [logs] in the configuration"));
    }
    Ok(config.logs.dirs.clone())
}

fn load_keys(config: &Config) -> Result<Keys, OpsError> {
    let dir = KeyDir::new(&config.keys.dir);
    Ok(Keys {
        archive: if config.logs.encrypt {
            Some(dir.load_symmetric(KeyPurpose::Archive)?)
        } else {
            None
        },
        signing: crate::trust::signing_key(config)?,
        trust: crate::trust::verifying_keys(config)?,
        dir: config.keys.dir.clone(),
    })
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
