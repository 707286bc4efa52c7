//! `health --prometheus FILE`: the report as node_exporter textfile metrics, written atomically.

use std::fmt::Write as _;
use std::path::Path;

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};

use super::Report;
use crate::error::OpsError;

/// Writes `report` to `path` in the Prometheus text format.
pub(super) fn write(path: &Path, report: &Report) -> Result<(), OpsError> {
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
