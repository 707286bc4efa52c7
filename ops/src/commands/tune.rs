//! `tune`: size PostgreSQL and the platform's worker pools from what this host really offers.
//!
//! `tune postgres`: resources (the server's cgroup when it runs here) → the planned connections →
//! PGTune's formulas → current values from pg_settings → report and fragment → with --apply, the
//! fragment written as a conf.d include, checked, reloaded (`apply`). `tune workers`: resources
//! (this process's cgroup) → gunicorn workers and Celery concurrency → their configuration files
//! rewritten → the pools compared with max_connections.
//!
//! Here: the dispatch and what both share (the resources, with the flags' overrides). The
//! formulas are pure (`pgtune`, `pools`), as is the Python configuration rewriting (`pyconf`).
//! A crash leaves every file either as it was or complete (atomic writes), and a rerun
//! recomputes the same numbers.

mod apply;
mod pgtune;
mod pools;
mod postgres;
mod pyconf;
mod workers;

use std::path::Path;

use super::Context;
use crate::cli::{TuneArgs, TuneCommand};
use crate::error::{Exit, OpsError};
use crate::resources::{self, Process, Resources};

/// Runs `tune postgres` or `tune workers`.
pub fn run(ctx: &Context, args: &TuneArgs) -> Result<(), OpsError> {
    match &args.command {
        TuneCommand::Postgres(a) => postgres::run(ctx, a),
        TuneCommand::Workers(a) => workers::run(ctx, a),
    }
}

/// The host's resources as `process`'s cgroup limits them (read below `/`).
fn host_resources(process: Process) -> Result<Resources, OpsError> {
    resources::read(Path::new("/"), process).map_err(|e| {
        OpsError::new(Exit::Io, format!("cannot read this host's memory: {e}"))
            .hint("pass --memory and --cpus")
    })
}

/// Removes the temp files a killed run left in `dir` (older than `started`) for the files this
/// run owns (`ours(final name)`); the run that now holds the lock writes them anew.
fn remove_stale_temps(dir: &Path, ours: impl Fn(&str) -> bool, started: std::time::SystemTime) {
    for file in ransomeye_kernel::atomic_file::remove_stale_temps(dir, ours, started) {
        tracing::info!(file = %file.display(), "removed a temp file left by a killed run");
    }
}

/// A UTC time as `YYYYMMDDTHHMMSSZ`, for backup names.
fn utc_stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}
