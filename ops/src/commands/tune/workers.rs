//! `tune workers`: the procedure and its report.
//!
//! Procedure: resources (the flags, else this host as this process's cgroup limits it) →
//! gunicorn workers and Celery concurrency (`pools`) → for each configuration file given: lock,
//! read, set the one assignment (`pyconf`), write atomically with the file's owner and mode →
//! the pools' connections against PostgreSQL's max_connections (when a configuration names the
//! database; a warning, never a failure) → report.

use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use super::{host_resources, pools, pyconf, remove_stale_temps};
use crate::cli::TuneWorkersArgs;
use crate::commands::{say, Context};
use crate::db::Answer;
use crate::error::{Exit, OpsError};
use crate::resources::{Process, Resources};
use crate::run_lock::RunLock;
use crate::table::{Align, Table};
use crate::utils::{print_json, runtime};

/// A configuration file's change.
#[derive(Debug, Serialize)]
struct FileChange {
    path: PathBuf,
    /// The line written (or, with --dry-run, that would be).
    line: String,
    /// The lines it replaces; empty when added.
    replaced: Vec<String>,
    /// The file already said this.
    unchanged: bool,
    written: bool,
}

/// The `--json` report.
#[derive(Debug, Serialize)]
struct Report {
    cpus: u32,
    available_memory: u64,
    per_worker_memory: u64,
    resources: Option<Resources>,
    workers: pools::Workers,
    gunicorn_threads: u32,
    /// Database connections the pools hold.
    pool_connections: u32,
    /// PostgreSQL's max_connections, when it could be read.
    max_connections: Option<u32>,
    files: Vec<FileChange>,
    warnings: Vec<String>,
    dry_run: bool,
}

/// Runs `tune workers`.
pub fn run(ctx: &Context, args: &TuneWorkersArgs) -> Result<(), OpsError> {
    let resources = if args.memory.is_some() && args.cpus.is_some() {
        None
    } else {
        Some(host_resources(Process::Current)?)
    };
    let cpus = args
        .cpus
        .or(resources.as_ref().map(Resources::cpus))
        .unwrap_or(1);
    let available = args
        .memory
        .or(resources.as_ref().map(Resources::available))
        .unwrap_or(0);
    let workers = pools::workers(cpus, available, args.per_worker_memory);
    let mut files = Vec::new();
    let mut threads = 1;
    if let Some(path) = &args.gunicorn_config {
        let (change, text) = set_in_file(
            path,
            &["workers"],
            workers.gunicorn,
            &format!("ransomeye-ops tune workers: {}", workers.gunicorn_reason),
            args.dry_run,
        )?;
        threads = pyconf::int_value(&text, "threads").unwrap_or(1);
        files.push(change);
    }
    if let Some(path) = &args.celery_config {
        let (change, _) = set_in_file(
            path,
            &["worker_concurrency", "CELERYD_CONCURRENCY"],
            workers.celery,
            &format!("ransomeye-ops tune workers: {}", workers.celery_reason),
            args.dry_run,
        )?;
        files.push(change);
    }
    let pool_connections = pools::pool_connections(workers.gunicorn, threads, workers.celery);
    let mut warnings = Vec::new();
    let max_connections = match max_connections(ctx) {
        Ok(n) => {
            if pool_connections > n {
                warnings.push(format!(
                    "the pools hold {pool_connections} connections ({} gunicorn workers x {threads} threads + {} Celery) but PostgreSQL's max_connections is {n}: run `ransomeye-ops tune postgres --connections {}` (pools plus headroom) or lower --per-worker-memory's share",
                    workers.gunicorn,
                    workers.celery,
                    pools::max_connections(pool_connections).0
                ));
            }
            Some(n)
        }
        Err(why) => {
            warnings.push(format!("max_connections not checked: {why}"));
            None
        }
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let report = Report {
        cpus,
        available_memory: available,
        per_worker_memory: args.per_worker_memory,
        resources,
        workers,
        gunicorn_threads: threads,
        pool_connections,
        max_connections,
        files,
        warnings,
        dry_run: args.dry_run,
    };
    if ctx.json {
        print_json(&report)
    } else {
        print_human(ctx, &report);
        Ok(())
    }
}

/// Sets the first of `names` the file assigns (else the first name) to `value`; returns the
/// change and the file's new text.
fn set_in_file(
    path: &Path,
    names: &[&str],
    value: u32,
    comment: &str,
    dry_run: bool,
) -> Result<(FileChange, String), OpsError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A missing file is 66 before anything is created beside it (the lock file).
    std::fs::metadata(path)
        .map_err(|e| OpsError::from(PathError::new(FileAction::Open, path, e)))?;
    // Two runs rewriting one file at once would lose one's change: one at a time.
    let started = std::time::SystemTime::now();
    let _lock = if dry_run {
        None
    } else {
        let name = format!(
            "ransomeye-tune-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        Some(RunLock::acquire(
            dir,
            &name,
            &format!("tune workers of {}", path.display()),
        )?)
    };
    if !dry_run {
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        remove_stale_temps(dir, |target| Some(target) == file_name.as_deref(), started);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| OpsError::from(PathError::new(FileAction::Open, path, e)))?;
    let name = names
        .iter()
        .find(|n| pyconf::int_value(&text, n).is_some() || text.lines().any(|l| l.starts_with(*n)))
        .unwrap_or(&names[0]);
    let rewrite = pyconf::set(&text, name, value, comment).map_err(|why| {
        OpsError::new(Exit::Data, format!("{}: {why}", path.display()))
            .hint(format!("set `{name} = {value}` there by hand"))
    })?;
    let unchanged = pyconf::int_value(&text, name) == Some(value) && rewrite.text == text;
    let written = !dry_run && !unchanged;
    if written {
        let meta = std::fs::metadata(path)
            .map_err(|e| OpsError::from(PathError::new(FileAction::Read, path, e)))?;
        write_atomic(
            path,
            rewrite.text.as_bytes(),
            Ownership::of(&meta),
            Replace::Allowed,
        )?;
    }
    Ok((
        FileChange {
            path: path.to_path_buf(),
            line: rewrite.line,
            replaced: rewrite.replaced,
            unchanged,
            written,
        },
        rewrite.text,
    ))
}

/// PostgreSQL's max_connections from the configuration's database; Err says why not.
fn max_connections(ctx: &Context) -> Result<u32, String> {
    let config = ctx.config().map_err(|e| e.what)?;
    let rt = runtime().map_err(|e| e.what)?;
    rt.block_on(async {
        let mut conn = crate::db::connect(&config.database.url, "tune workers")
            .await
            .map_err(|e| e.what)?;
        let n: String = sqlx::query_scalar("select current_setting('max_connections')")
            .fetch_one(&mut conn)
            .answer("reading max_connections")
            .await
            .map_err(|e| e.what)?;
        n.parse().map_err(|_| format!("max_connections is '{n}'"))
    })
}

fn print_human(ctx: &Context, r: &Report) {
    say!(
        ctx,
        "Planning for {} CPUs and {} available memory ({} per worker){}.",
        r.cpus,
        crate::size::human(r.available_memory),
        crate::size::human(r.per_worker_memory),
        r.resources
            .as_ref()
            .map(|res| format!("; {}", res.describe()))
            .unwrap_or_default()
    );
    let mut table = Table::new(&[
        ("SETTING", Align::Left),
        ("VALUE", Align::Right),
        ("WHY", Align::Left),
    ]);
    table.row(vec![
        "gunicorn workers".into(),
        r.workers.gunicorn.to_string(),
        r.workers.gunicorn_reason.clone(),
    ]);
    table.row(vec![
        "celery worker_concurrency".into(),
        r.workers.celery.to_string(),
        r.workers.celery_reason.clone(),
    ]);
    table.row(vec![
        "database connections".into(),
        r.pool_connections.to_string(),
        format!(
            "{} x {} threads + {}; max_connections {}",
            r.workers.gunicorn,
            r.gunicorn_threads,
            r.workers.celery,
            r.max_connections
                .map(|n| n.to_string())
                .unwrap_or_else(|| "unknown".into())
        ),
    ]);
    say!(ctx, "{}", table.render().trim_end());
    for f in &r.files {
        let path = f.path.display();
        if f.unchanged {
            say!(ctx, "{path}: already `{}`", f.line);
        } else if r.dry_run {
            say!(
                ctx,
                "{path}: would write `{}`{}",
                f.line,
                replaced(&f.replaced)
            );
        } else {
            say!(ctx, "{path}: wrote `{}`{}", f.line, replaced(&f.replaced));
        }
    }
    if r.dry_run {
        say!(ctx, "Dry run: nothing changed.");
    } else if r.files.iter().any(|f| f.written) {
        say!(ctx, "Restart the services to use the new numbers.");
    }
}

fn replaced(lines: &[String]) -> String {
    if lines.is_empty() {
        " (added)".into()
    } else {
        format!(" (was `{}`)", lines.join("`, `"))
    }
}
