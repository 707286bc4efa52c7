//! `health`: deep checks of database, bus, disk and host, reported for people, machines
//! (`--json`), monitoring (Nagios exit codes) and Prometheus (`--prometheus FILE`).
//!
//! Procedure: load config → run the four checks concurrently, each under the timeout (the
//! blocking ones on threads of their own, so a stuck syscall cannot outlast it) → overall
//! status = worst check → report → write the textfile metrics → exit with the Nagios code.
//!
//! Here: the procedure, the statuses and the report; the checks are in `services` (database,
//! bus) and `host` (disk, load, memory, I/O), the textfile metrics in `prometheus`.

mod host;
mod prometheus;
mod services;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ransomeye_kernel::config::Config;
use serde::Serialize;

use super::{say, Context};
use crate::cli::HealthArgs;
use crate::error::{Exit, OpsError};
use crate::utils::{elapsed_ms, print_json, runtime};

/// A check's or the overall status; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All good.
    Ok,
    /// Degraded; act soon.
    Warning,
    /// Broken or about to break; act now.
    Critical,
    /// The check could not determine a state.
    Unknown,
}

impl Status {
    /// The Nagios plugin exit code.
    pub fn nagios_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// Severity for combining: unknown ranks between warning and critical, as in Nagios.
    fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    fn worst(a: Status, b: Status) -> Status {
        if b.severity() > a.severity() {
            b
        } else {
            a
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `database`, `bus`, `disk` or `host`.
    pub name: &'static str,
    /// Its status.
    pub status: Status,
    /// How long the check took.
    pub latency_ms: f64,
    /// One line for people.
    pub detail: String,
    /// Measured values, for machines and Prometheus.
    pub metrics: BTreeMap<String, f64>,
}

impl Check {
    fn new(name: &'static str) -> Self {
        Check {
            name,
            status: Status::Ok,
            latency_ms: 0.0,
            detail: String::new(),
            metrics: BTreeMap::new(),
        }
    }

    fn degrade(&mut self, status: Status, why: impl Into<String>) {
        self.status = Status::worst(self.status, status);
        let why = why.into();
        if self.detail.is_empty() {
            self.detail = why;
        } else {
            self.detail = format!("{}; {why}", self.detail);
        }
    }

    fn note(&mut self, what: impl AsRef<str>) {
        if self.detail.is_empty() {
            self.detail = what.as_ref().to_string();
        } else {
            self.detail = format!("{}; {}", self.detail, what.as_ref());
        }
    }
}

/// The whole report, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The worst status of all checks.
    pub status: Status,
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
    /// Wall time of the whole health run.
    pub duration_ms: f64,
}

/// Runs `health` and returns the Nagios exit code.
pub fn run(ctx: &Context, args: &HealthArgs) -> Result<u8, OpsError> {
    let timeout = parse_timeout(args.timeout)?;
    let config = ctx.config()?;
    let started = Instant::now();
    let rt = runtime()?;
    let checks = rt.block_on(run_checks(&config, timeout));
    // A peer that never answers must not keep us waiting for its abandoned tasks.
    rt.shutdown_background();
    let status = checks
        .iter()
        .fold(Status::Ok, |acc, c| Status::worst(acc, c.status));
    let report = Report {
        status,
        checks,
        duration_ms: elapsed_ms(started),
    };
    if ctx.json {
        print_json(&report)?;
    } else {
        print_human(ctx, &report);
    }
    if let Some(path) = &args.prometheus {
        prometheus::write(path, &report)?;
    }
    Ok(report.status.nagios_code())
}

fn parse_timeout(secs: f64) -> Result<Duration, OpsError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(OpsError::new(
            Exit::Usage,
            format!("--timeout {secs}: must be between 0 and 3600 seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

async fn run_checks(config: &Config, timeout: Duration) -> Vec<Check> {
    let dirs = host::directories(config);
    let backup_dir = config.backup.dir.clone();
    let (database, bus, disk, host) = tokio::join!(
        bounded(
            "database",
            timeout,
            services::check_database(&config.database.url, timeout)
        ),
        bounded("bus", timeout, services::check_bus(&config.bus, timeout)),
        bounded(
            "disk",
            timeout,
            on_own_thread("disk", move || {
                let mut disk = host::check_disk(&dirs);
                // Data files whose backup manifest was lost: kept, and worth a look.
                if let Ok(orphans) = crate::backup_set::manifest::orphans(&backup_dir) {
                    disk.metrics
                        .insert("backup_orphans".into(), orphans.len() as f64);
                    if !orphans.is_empty() {
                        disk.degrade(
                            Status::Warning,
                            format!(
                                "backup dir: data files without a manifest (orphans, kept): {}",
                                orphans.join(", ")
                            ),
                        );
                    }
                }
                disk
            })
        ),
        bounded("host", timeout, on_own_thread("host", host::check_host)),
    );
    vec![database, bus, disk, host]
}

/// Runs a check under the timeout; a check that does not finish in time is critical.
async fn bounded(
    name: &'static str,
    timeout: Duration,
    check: impl std::future::Future<Output = Check>,
) -> Check {
    let started = Instant::now();
    let mut result = match tokio::time::timeout(timeout, check).await {
        Ok(check) => check,
        Err(_) => {
            let mut c = Check::new(name);
            c.degrade(
                Status::Critical,
                format!("no answer in {} s", timeout.as_secs_f64()),
            );
            c
        }
    };
    result.latency_ms = elapsed_ms(started);
    result
}

/// Runs a check made of blocking calls (`statvfs`, reading /proc) on a plain thread of its
/// own, so that the timeout applies to it: `statvfs` on a dead network mount blocks in the
/// kernel, and on the runtime's threads (or tokio's blocking pool, which the runtime waits for
/// when it shuts down) it would hold up the whole run. The thread is detached: `health` reports
/// and exits while it is still stuck.
async fn on_own_thread(
    name: &'static str,
    check: impl FnOnce() -> Check + Send + 'static,
) -> Check {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("health-{name}"))
        .spawn(move || {
            let _ = tx.send(check());
        });
    let failed = |why: String| {
        let mut c = Check::new(name);
        c.degrade(Status::Unknown, why);
        c
    };
    match spawned {
        Ok(_) => rx
            .await
            .unwrap_or_else(|_| failed("the check stopped without a result".into())),
        Err(e) => failed(format!("cannot start the check: {e}")),
    }
}

fn print_human(ctx: &Context, report: &Report) {
    say!(
        ctx,
        "RANSOMEYE {} - {} checks in {:.0} ms",
        report.status.label(),
        report.checks.len(),
        report.duration_ms
    );
    for c in &report.checks {
        say!(
            ctx,
            "  {:<8} {:<8} {:>7.1} ms  {}",
            c.name,
            c.status.label(),
            c.latency_ms,
            c.detail
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_wins_and_unknown_ranks_below_critical() {
        assert_eq!(Status::worst(Status::Ok, Status::Warning), Status::Warning);
        assert_eq!(
            Status::worst(Status::Unknown, Status::Critical),
            Status::Critical
        );
        assert_eq!(
            Status::worst(Status::Warning, Status::Unknown),
            Status::Unknown
        );
        assert_eq!(Status::Critical.nagios_code(), 2);
    }
}
