//! `health`: deep checks of database, bus, disk and host, reported for people, machines
//! (`--json`), monitoring (Nagios exit codes) and Prometheus (`--prometheus FILE`).
//!
//! Procedure: load config → run the four checks concurrently, each under the timeout (the
//! blocking ones on threads of their own, so a stuck syscall cannot outlast it) → overall
//! status = worst check → report → write the textfile metrics → exit with the Nagios code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::HumanBytes;
use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};
use ransomeye_kernel::config::Config;
use serde::Serialize;
use sqlx::Connection;

use super::Context;
use crate::cli::HealthArgs;
use crate::db::first_line;
use crate::error::{Exit, OpsError};
use crate::utils::redact_url;
use crate::utils::{elapsed_ms, print_json, runtime};

/// Free space below this fraction is critical (the seed's rule: more than 10 % must be free).
const DISK_CRITICAL: f64 = 0.10;
/// Free space below this fraction is a warning.
const DISK_WARNING: f64 = 0.20;
/// Connections in use above these fractions of `max_connections`.
const CONNECTIONS_WARNING: f64 = 0.80;
const CONNECTIONS_CRITICAL: f64 = 0.95;
/// Load average per core above these values.
const LOAD_WARNING: f64 = 2.0;
const LOAD_CRITICAL: f64 = 4.0;
/// Available memory below these fractions of total.
const MEMORY_WARNING: f64 = 0.10;
const MEMORY_CRITICAL: f64 = 0.05;
/// Disk busy time above this fraction during the sample is a warning.
const IO_BUSY_WARNING: f64 = 0.90;
/// How long the host check samples /proc/diskstats for I/O utilisation.
const IO_SAMPLE: Duration = Duration::from_millis(100);

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
        print_human(&report);
    }
    if let Some(path) = &args.prometheus {
        write_prometheus(path, &report)?;
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
    let dirs = directories(config);
    let backup_dir = config.backup.dir.clone();
    let (database, bus, disk, host) = tokio::join!(
        bounded(
            "database",
            timeout,
            check_database(&config.database.url, timeout)
        ),
        bounded("bus", timeout, check_bus(&config.bus.url, timeout)),
        bounded(
            "disk",
            timeout,
            on_own_thread("disk", move || {
                let mut disk = check_disk(&dirs);
                // Data files whose backup manifest was lost: kept, and worth a look.
                if let Ok(orphans) = super::backup::manifest::orphans(&backup_dir) {
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
        bounded("host", timeout, on_own_thread("host", check_host)),
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

async fn check_database(url: &str, timeout: Duration) -> Check {
    let mut check = Check::new("database");
    let connect = Instant::now();
    let mut conn = match sqlx::postgres::PgConnection::connect(url).await {
        Ok(c) => c,
        Err(e) => {
            check.degrade(
                Status::Critical,
                format!(
                    "cannot connect to {}: {}",
                    redact_url(url),
                    first_line(&e.to_string())
                ),
            );
            return check;
        }
    };
    check
        .metrics
        .insert("connect_ms".into(), elapsed_ms(connect));
    let ping = Instant::now();
    if let Err(e) = sqlx::query("select 1").execute(&mut conn).await {
        check.degrade(
            Status::Critical,
            format!("select 1 failed: {}", first_line(&e.to_string())),
        );
        return check;
    }
    let select_ms = elapsed_ms(ping);
    check.metrics.insert("select_1_ms".into(), select_ms);
    let stats: Result<(String, i64, i64), sqlx::Error> = sqlx::query_as(
        "select current_setting('server_version'), \
                (select count(*) from pg_stat_activity)::int8, \
                current_setting('max_connections')::int8",
    )
    .fetch_one(&mut conn)
    .await;
    match stats {
        Ok((version, used, max)) => {
            let ratio = if max > 0 {
                used as f64 / max as f64
            } else {
                0.0
            };
            check.metrics.insert("connections_used".into(), used as f64);
            check.metrics.insert("connections_max".into(), max as f64);
            check.note(format!(
                "PostgreSQL {version}, select 1 in {select_ms:.1} ms, {used}/{max} connections"
            ));
            if ratio >= CONNECTIONS_CRITICAL {
                check.degrade(
                    Status::Critical,
                    format!("{:.0} % of max_connections in use", ratio * 100.0),
                );
            } else if ratio >= CONNECTIONS_WARNING {
                check.degrade(
                    Status::Warning,
                    format!("{:.0} % of max_connections in use", ratio * 100.0),
                );
            }
        }
        Err(e) => check.degrade(
            Status::Unknown,
            format!(
                "cannot read server statistics: {}",
                first_line(&e.to_string())
            ),
        ),
    }
    // Closing politely must not extend the check past its deadline.
    let _ = tokio::time::timeout(timeout / 10, conn.close()).await;
    check
}

async fn check_bus(url: &str, timeout: Duration) -> Check {
    let mut check = Check::new("bus");
    let connect = Instant::now();
    let client = match async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .max_reconnects(0)
        .connect(url)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            check.degrade(
                Status::Critical,
                format!("cannot connect to {}: {e}", redact_url(url)),
            );
            return check;
        }
    };
    check
        .metrics
        .insert("connect_ms".into(), elapsed_ms(connect));
    let rtt = Instant::now();
    if let Err(e) = client.flush().await {
        check.degrade(Status::Critical, format!("no round trip: {e}"));
        return check;
    }
    let rtt_ms = elapsed_ms(rtt);
    check.metrics.insert("rtt_ms".into(), rtt_ms);
    let info = client.server_info();
    check.note(format!(
        "nats-server {}, round trip {rtt_ms:.2} ms",
        info.version
    ));
    // A plain request: async-nats' typed account-info call cannot parse nats-server 2.9's reply.
    match client.request("$JS.API.INFO", "".into()).await {
        Ok(reply) => match serde_json::from_slice::<serde_json::Value>(&reply.payload) {
            Ok(v) if v.get("error").is_none() => {
                check.metrics.insert("jetstream".into(), 1.0);
                check.note("JetStream available");
            }
            Ok(v) => {
                check.metrics.insert("jetstream".into(), 0.0);
                check.degrade(
                    Status::Warning,
                    format!("JetStream unavailable: {}", v["error"]),
                );
            }
            Err(_) => check.degrade(Status::Warning, "JetStream reply unreadable"),
        },
        Err(e) => {
            check.metrics.insert("jetstream".into(), 0.0);
            check.degrade(
                Status::Warning,
                format!("JetStream unavailable (no reply to $JS.API.INFO: {e})"),
            );
        }
    }
    check
}

fn directories(config: &Config) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("keys", config.keys.dir.clone()),
        ("archive", config.archive.dir.clone()),
        ("backup", config.backup.dir.clone()),
    ]
}

fn check_disk(dirs: &[(&'static str, PathBuf)]) -> Check {
    let mut check = Check::new("disk");
    // A stand-in for statvfs stuck on a dead network mount.
    crate::failpoint::pause("health-disk-hang");
    for (role, dir) in dirs {
        let stat = match nix::sys::statvfs::statvfs(dir.as_path()) {
            Ok(s) => s,
            Err(e) => {
                check.degrade(
                    Status::Critical,
                    format!("{role} dir {}: {e}", dir.display()),
                );
                continue;
            }
        };
        let blocks = stat.blocks() as f64;
        let space = if blocks > 0.0 {
            stat.blocks_available() as f64 / blocks
        } else {
            1.0
        };
        let files = stat.files() as f64;
        // Some file systems (btrfs, tmpfs with nr_inodes=0) report no inode limit.
        let inodes = if files > 0.0 {
            stat.files_available() as f64 / files
        } else {
            1.0
        };
        let free_bytes = stat.blocks_available() as f64 * stat.fragment_size() as f64;
        check.metrics.insert(format!("{role}_free_ratio"), space);
        check
            .metrics
            .insert(format!("{role}_free_bytes"), free_bytes);
        check
            .metrics
            .insert(format!("{role}_inodes_free_ratio"), inodes);
        let worst = space.min(inodes);
        let what = format!(
            "{role} {}: {:.0} % free ({}), {:.0} % inodes free",
            dir.display(),
            space * 100.0,
            HumanBytes(free_bytes as u64),
            inodes * 100.0
        );
        if worst < DISK_CRITICAL {
            check.degrade(Status::Critical, what);
        } else if worst < DISK_WARNING {
            check.degrade(Status::Warning, what);
        } else {
            check.note(what);
        }
    }
    check
}

fn check_host() -> Check {
    let mut check = Check::new("host");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    match std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| parse_loadavg(&s))
    {
        Some(load1) => {
            let per_core = load1 / cores;
            check.metrics.insert("load1_per_core".into(), per_core);
            let what = format!("load {load1:.2} on {cores} cores");
            if per_core >= LOAD_CRITICAL {
                check.degrade(Status::Critical, what);
            } else if per_core >= LOAD_WARNING {
                check.degrade(Status::Warning, what);
            } else {
                check.note(what);
            }
        }
        None => check.degrade(Status::Unknown, "cannot read /proc/loadavg"),
    }
    match std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_meminfo(&s))
    {
        Some((total, available)) => {
            let ratio = available / total;
            check.metrics.insert("memory_available_ratio".into(), ratio);
            check
                .metrics
                .insert("memory_available_bytes".into(), available);
            let what = format!(
                "{} of {} memory available",
                HumanBytes(available as u64),
                HumanBytes(total as u64)
            );
            if ratio < MEMORY_CRITICAL {
                check.degrade(Status::Critical, what);
            } else if ratio < MEMORY_WARNING {
                check.degrade(Status::Warning, what);
            } else {
                check.note(what);
            }
        }
        None => check.degrade(Status::Unknown, "cannot read /proc/meminfo"),
    }
    // Disk I/O is optional ("if readable"): utilisation over a short sample.
    if let Some(before) = read_diskstats() {
        let start = Instant::now();
        std::thread::sleep(IO_SAMPLE);
        if let Some(after) = read_diskstats() {
            let window_ms = start.elapsed().as_secs_f64() * 1000.0;
            let busiest = before
                .iter()
                .filter_map(|(dev, busy)| Some((dev, after.get(dev)?.saturating_sub(*busy))))
                .max_by_key(|(_, delta)| *delta);
            if let Some((dev, delta)) = busiest {
                let util = (delta as f64 / window_ms).min(1.0);
                check.metrics.insert("io_busiest_utilisation".into(), util);
                let what = format!("busiest disk {dev} {:.0} % busy", util * 100.0);
                if util >= IO_BUSY_WARNING {
                    check.degrade(Status::Warning, what);
                } else {
                    check.note(what);
                }
            }
        }
    }
    check
}

fn parse_loadavg(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

/// (MemTotal, MemAvailable) in bytes.
fn parse_meminfo(s: &str) -> Option<(f64, f64)> {
    let field = |name: &str| -> Option<f64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024.0)
    };
    let total = field("MemTotal:")?;
    (total > 0.0).then_some(())?;
    Some((total, field("MemAvailable:")?))
}

/// Milliseconds spent doing I/O per whole block device (partitions and virtual devices skipped).
fn read_diskstats() -> Option<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string("/proc/diskstats").ok()?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        let dev = f[2];
        if dev.starts_with("loop") || dev.starts_with("ram") || dev.starts_with("dm-") {
            continue;
        }
        if !Path::new("/sys/block").join(dev).exists() {
            continue;
        }
        if let Ok(ms) = f[12].parse::<u64>() {
            out.insert(dev.to_string(), ms);
        }
    }
    (!out.is_empty()).then_some(out)
}

fn print_human(report: &Report) {
    println!(
        "RANSOMEYE {} - {} checks in {:.0} ms",
        report.status.label(),
        report.checks.len(),
        report.duration_ms
    );
    for c in &report.checks {
        println!(
            "  {:<8} {:<8} {:>7.1} ms  {}",
            c.name,
            c.status.label(),
            c.latency_ms,
            c.detail
        );
    }
}

fn write_prometheus(path: &Path, report: &Report) -> Result<(), OpsError> {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    gauge(
        &mut out,
        "ransomeye_health_status",
        "Overall health: 0 ok, 1 warning, 2 critical, 3 unknown.",
    );
    let _ = writeln!(
        out,
        "ransomeye_health_status {}",
        report.status.nagios_code()
    );
    gauge(
        &mut out,
        "ransomeye_health_check_status",
        "Per-check health: 0 ok, 1 warning, 2 critical, 3 unknown.",
    );
    for c in &report.checks {
        let _ = writeln!(
            out,
            "ransomeye_health_check_status{{check=\"{}\"}} {}",
            c.name,
            c.status.nagios_code()
        );
    }
    gauge(
        &mut out,
        "ransomeye_health_check_duration_seconds",
        "Time each check took.",
    );
    for c in &report.checks {
        let _ = writeln!(
            out,
            "ransomeye_health_check_duration_seconds{{check=\"{}\"}} {}",
            c.name,
            c.latency_ms / 1000.0
        );
    }
    gauge(
        &mut out,
        "ransomeye_health_metric",
        "Values measured by the checks (see `ransomeye-ops --json health`).",
    );
    for c in &report.checks {
        for (metric, value) in &c.metrics {
            let _ = writeln!(
                out,
                "ransomeye_health_metric{{check=\"{}\",metric=\"{metric}\"}} {value}",
                c.name
            );
        }
    }
    gauge(
        &mut out,
        "ransomeye_health_duration_seconds",
        "Wall time of the whole health run.",
    );
    let _ = writeln!(
        out,
        "ransomeye_health_duration_seconds {}",
        report.duration_ms / 1000.0
    );
    // Metrics are not secret: node_exporter runs as its own user and must read them.
    let ownership = Ownership {
        mode: 0o644,
        gid: None,
        uid: None,
    };
    write_atomic(path, out.as_bytes(), ownership, Replace::Allowed)?;
    Ok(())
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

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn proc_files_parse() {
        assert_eq!(parse_loadavg("0.52 0.40 0.30 1/123 456\n"), Some(0.52));
        let mem = "MemTotal:       16000 kB\nMemFree: 1 kB\nMemAvailable:    8000 kB\n";
        assert_eq!(
            parse_meminfo(mem),
            Some((16000.0 * 1024.0, 8000.0 * 1024.0))
        );
        assert_eq!(parse_meminfo("garbage"), None);
    }

    #[test]
    fn disk_check_is_critical_for_a_missing_directory() {
        let c = check_disk(&[("archive", PathBuf::from("/nonexistent/ransomeye/archive"))]);
        assert_eq!(c.status, Status::Critical);
        assert!(
            c.detail.contains("/nonexistent/ransomeye/archive"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn disk_check_reports_free_space_of_an_existing_directory() {
        let c = check_disk(&[("backup", std::env::temp_dir())]);
        let free = c.metrics["backup_free_ratio"];
        assert!((0.0..=1.0).contains(&free), "{free}");
        assert!(c.detail.contains("% free"), "{}", c.detail);
    }
}
