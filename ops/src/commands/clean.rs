//! `clean`: old temp files and symlinks, orphaned upload chunks and empty directories removed
//! from the configured roots, and nothing else.
//!
//! Procedure: roots checked (refused, exit 78, when they are or overlap what must never be
//! cleaned; also in a dry run) → lock (one run at a time; a `.clean.lock` in each root) →
//! snapshot of the files open in any process → each root walked through directory descriptors
//! ([`walk`]) → report by kind, bytes freed, what was skipped and why. A kill at any moment
//! leaves only fewer old files; the next run carries on.

mod roots;
mod walk;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;

use self::walk::{Count, RootKind, Rules, Skipped, Tally, Walk};
use super::{say, Context};
use crate::cli::CleanArgs;
use crate::error::{Exit, OpsError};
use crate::run_lock::RunLock;
use crate::table::{Align, Table};
use crate::utils::print_json;

/// The run lock's name in each root (`.clean.lock`).
const LOCK_NAME: &str = "clean";

/// Runs `clean`.
pub fn run(ctx: &Context, args: &CleanArgs) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let roots: Vec<(&'static str, PathBuf, RootKind)> = config
        .clean
        .temp_dirs
        .iter()
        .map(|d| ("[clean] temp_dirs", d.clone(), RootKind::Temp))
        .chain(
            config
                .clean
                .buffer_dirs
                .iter()
                .map(|d| ("[clean] buffer_dirs", d.clone(), RootKind::Buffer)),
        )
        .collect();
    if roots.is_empty() {
        return Err(OpsError::new(
            Exit::Config,
            "[clean] temp_dirs and buffer_dirs are empty: nothing to clean",
        )
        .hint("add temp_dirs = [\"/var/lib/ransomeye/tmp\"] under [clean] in the configuration"));
    }
    let mut protected = vec![
        ("[keys] dir".to_string(), config.keys.dir.clone()),
        ("[archive] dir".to_string(), config.archive.dir.clone()),
        ("[backup] dir".to_string(), config.backup.dir.clone()),
    ];
    for dir in &config.logs.dirs {
        protected.push((
            "a [logs] archive directory".to_string(),
            dir.join("archive"),
        ));
    }
    let named: Vec<(&'static str, PathBuf)> =
        roots.iter().map(|(s, d, _)| (*s, d.clone())).collect();
    roots::check(&named, &protected)?;

    let mut locks = Vec::new();
    if !args.dry_run {
        for (_, root, _) in &roots {
            if root.is_dir() {
                locks.push(RunLock::acquire(root, LOCK_NAME, "clean")?);
            }
        }
    }
    let now = unix_secs(SystemTime::now());
    let rules = Rules {
        cutoff: now - args.older_than.as_secs() as i64,
        orphan_cutoff: now - args.orphan_age.as_secs() as i64,
        open: crate::open_files::snapshot(),
        dry_run: args.dry_run,
        own: vec![OsString::from(format!(".{LOCK_NAME}.lock"))],
    };
    let mut report = Report {
        dry_run: args.dry_run,
        ..Report::default()
    };
    for (_, root, kind) in &roots {
        if !root.is_dir() {
            report.skipped.push(Skipped {
                path: root.clone(),
                reason: "missing: nothing to clean".into(),
            });
            continue;
        }
        let tally: Tally = Walk::root(root, *kind, &rules)?;
        for (kind, count) in tally.removed {
            let total = report.removed.entry(kind).or_default();
            total.count += count.count;
            total.bytes += count.bytes;
            report.freed_bytes += count.bytes;
        }
        report.skipped.extend(tally.skipped);
    }
    drop(locks);
    print_report(ctx, &report)
}

/// What `clean` reports.
#[derive(Debug, Default, Serialize)]
struct Report {
    dry_run: bool,
    /// Removed (or in a dry run, to remove), by kind.
    removed: std::collections::BTreeMap<&'static str, Count>,
    /// Allocated bytes freed.
    freed_bytes: u64,
    /// Left alone, and why.
    skipped: Vec<Skipped>,
}

fn print_report(ctx: &Context, report: &Report) -> Result<(), OpsError> {
    if ctx.json {
        return print_json(report);
    }
    let mut table = Table::new(&[
        ("KIND", Align::Left),
        ("REMOVED", Align::Right),
        ("BYTES FREED", Align::Right),
    ]);
    for (kind, count) in &report.removed {
        table.row(vec![
            kind.to_string(),
            count.count.to_string(),
            count.bytes.to_string(),
        ]);
    }
    if !table.is_empty() && !ctx.quiet {
        print!("{}", table.render());
    }
    let mut skipped = Table::new(&[("SKIPPED", Align::Left), ("WHY", Align::Left)]);
    for s in &report.skipped {
        skipped.row(vec![s.path.display().to_string(), s.reason.clone()]);
    }
    if !skipped.is_empty() && !ctx.quiet {
        print!("{}", skipped.render());
    }
    say!(
        ctx,
        "{}{} entr{} removed, {} bytes freed, {} skipped",
        if report.dry_run {
            "dry run: would have "
        } else {
            ""
        },
        report.removed.values().map(|c| c.count).sum::<u64>(),
        if report.removed.values().map(|c| c.count).sum::<u64>() == 1 {
            "y"
        } else {
            "ies"
        },
        report.freed_bytes,
        report.skipped.len()
    );
    Ok(())
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
