//! `tune postgres`: the procedure and its report.
//!
//! Procedure: connect → where the server runs (its backend's pid, configuration file and data
//! directory; on this host when the pid is a local postgres process and the data directory
//! exists here) → resources (the flags, else the server's cgroup, else this process's) → the
//! connections to plan for → the recommended settings → current values from pg_settings →
//! report → --output → --apply.

use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};
use serde::Serialize;
use sqlx::PgConnection;

use super::pgtune::{self, Inputs, Setting, Value};
use super::{apply, host_resources, pools, pyconf};
use crate::cli::TunePostgresArgs;
use crate::commands::{say, Context};
use crate::db::Answer;
use crate::error::{Exit, OpsError};
use crate::resources::{Process, Resources};
use crate::table::{Align, Table};
use crate::utils::{print_json, runtime};

/// Where the server keeps its files, and whether that is this host.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Server {
    /// The backend serving our connection.
    pub backend_pid: u32,
    /// `SHOW config_file`, if the role may see it.
    pub config_file: Option<PathBuf>,
    /// `SHOW data_directory`, if the role may see it.
    pub data_directory: Option<PathBuf>,
    /// The backend is a postgres process on this host and the data directory is here.
    pub local: bool,
}

/// One row of the report.
#[derive(Debug, Serialize)]
struct Row {
    name: &'static str,
    current: Option<String>,
    recommended: String,
    /// The recommendation differs from the running value.
    change: bool,
    /// A change takes effect only after a restart (context postmaster).
    restart: bool,
    reason: String,
}

/// The `--json` report.
#[derive(Debug, Serialize)]
struct Report<'a> {
    inputs: Inputs,
    /// Where memory, CPUs and connections came from.
    sources: Sources,
    resources: Option<&'a Resources>,
    settings: Vec<Row>,
    fragment: String,
    output: Option<PathBuf>,
    applied: Option<apply::Applied>,
}

#[derive(Debug, Serialize)]
struct Sources {
    memory: String,
    cpus: String,
    connections: String,
}

/// Runs `tune postgres`.
pub fn run(ctx: &Context, args: &TunePostgresArgs) -> Result<(), OpsError> {
    if args.dry_run && !args.apply {
        tracing::info!("--dry-run without --apply: tune postgres changes nothing either way");
    }
    let config = ctx.config()?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut conn = crate::db::connect(&config.database.url, "tune postgres").await?;
        let server = locate_server(&mut conn).await?;
        let resources = resources_for(args, &server)?;
        let (memory, cpus, mut sources) = planned(args, resources.as_ref(), &server);
        let (connections, why) = connections(args, resources.as_ref())?;
        sources.connections = why;
        let inputs = Inputs {
            memory,
            cpus,
            connections,
            workload: args.workload,
            storage: args.storage,
            effective_cache_percent: args.effective_cache,
        };
        let settings = pgtune::recommend(&inputs);
        let rows = compare(&mut conn, &settings).await?;
        let fragment = pgtune::fragment(&inputs, &settings);
        if let Some(path) = &args.output {
            write_atomic(
                path,
                fragment.as_bytes(),
                Ownership {
                    mode: 0o644,
                    gid: None,
                    uid: None,
                },
                Replace::Never,
            )?;
        }
        let applied = if args.apply {
            Some(apply::apply(&mut conn, &server, &fragment, args.dry_run).await?)
        } else {
            None
        };
        let report = Report {
            inputs,
            sources,
            resources: resources.as_ref(),
            settings: rows,
            fragment,
            output: args.output.clone(),
            applied,
        };
        if ctx.json {
            print_json(&report)
        } else {
            print_human(ctx, &report);
            Ok(())
        }
    })
}

/// The server's backend pid and files, and whether they are on this host.
async fn locate_server(conn: &mut PgConnection) -> Result<Server, OpsError> {
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *conn)
        .answer("reading the backend's pid")
        .await?;
    // Both need superuser or pg_read_all_settings; without them the report still works.
    let files: Option<(String, String)> = crate::db::bounded(
        sqlx::query_as("select current_setting('config_file'), current_setting('data_directory')")
            .fetch_optional(&mut *conn),
        "reading config_file and data_directory",
    )
    .await?
    .ok()
    .flatten();
    let backend_pid = u32::try_from(pid).unwrap_or(0);
    let (config_file, data_directory) = match files {
        Some((c, d)) => (Some(PathBuf::from(c)), Some(PathBuf::from(d))),
        None => (None, None),
    };
    // A pid alone could be any process here when the server is elsewhere: it must be a postgres
    // process, and the data directory must exist on this host.
    let comm = std::fs::read_to_string(format!("/proc/{backend_pid}/comm")).unwrap_or_default();
    let local =
        comm.trim().starts_with("postgres") && data_directory.as_deref().is_some_and(Path::is_dir);
    Ok(Server {
        backend_pid,
        config_file,
        data_directory,
        local,
    })
}

/// The resources of the server's cgroup (or this process's when the server is elsewhere);
/// none when --memory and --cpus make them unnecessary.
fn resources_for(args: &TunePostgresArgs, server: &Server) -> Result<Option<Resources>, OpsError> {
    if args.memory.is_some() && args.cpus.is_some() {
        return Ok(None);
    }
    let process = if server.local {
        Process::Pid(server.backend_pid)
    } else {
        Process::Current
    };
    host_resources(process).map(Some)
}

fn planned(
    args: &TunePostgresArgs,
    res: Option<&Resources>,
    server: &Server,
) -> (u64, u32, Sources) {
    let whose = if server.local {
        "the PostgreSQL server's cgroup on this host"
    } else {
        "this host (the server is not on it: pass --memory and --cpus)"
    };
    let (memory, memory_src) = match (args.memory, res) {
        (Some(m), _) => (m, "--memory".to_string()),
        (None, Some(r)) => (r.memory(), whose.to_string()),
        (None, None) => (0, String::new()),
    };
    let (cpus, cpus_src) = match (args.cpus, res) {
        (Some(c), _) => (c, "--cpus".to_string()),
        (None, Some(r)) => (r.cpus(), whose.to_string()),
        (None, None) => (1, String::new()),
    };
    (
        memory,
        cpus,
        Sources {
            memory: memory_src,
            cpus: cpus_src,
            connections: String::new(),
        },
    )
}

/// max_connections to plan for: --connections, else the pools (from the configuration files
/// given, else as `tune workers` would size them on this host) plus headroom.
fn connections(
    args: &TunePostgresArgs,
    res: Option<&Resources>,
) -> Result<(u32, String), OpsError> {
    if let Some(n) = args.connections {
        return Ok((n, "--connections".into()));
    }
    let read = |path: &Path| -> Result<String, OpsError> {
        std::fs::read_to_string(path).map_err(|e| {
            OpsError::from(ransomeye_kernel::PathError::new(
                ransomeye_kernel::FileAction::Open,
                path,
                e,
            ))
        })
    };
    let (gunicorn, threads, celery, whence) = if args.gunicorn_config.is_some()
        || args.celery_config.is_some()
    {
        let (g, t) = match &args.gunicorn_config {
            Some(p) => {
                let text = read(p)?;
                let workers = pyconf::int_value(&text, "workers").ok_or_else(|| {
                    OpsError::new(
                        Exit::Data,
                        format!("{}: no `workers = N` line with a number", p.display()),
                    )
                    .hint("run `ransomeye-ops tune workers --gunicorn-config` first, or pass --connections")
                })?;
                (workers, pyconf::int_value(&text, "threads").unwrap_or(1))
            }
            None => (0, 1),
        };
        let c = match &args.celery_config {
            Some(p) => {
                let text = read(p)?;
                pyconf::int_value(&text, "worker_concurrency")
                    .or_else(|| pyconf::int_value(&text, "CELERYD_CONCURRENCY"))
                    .ok_or_else(|| {
                        OpsError::new(
                            Exit::Data,
                            format!("{}: no `worker_concurrency = N` line with a number", p.display()),
                        )
                        .hint("run `ransomeye-ops tune workers --celery-config` first, or pass --connections")
                    })?
            }
            None => 0,
        };
        (g, t, c, "the configuration files")
    } else {
        let own;
        let r = match res {
            Some(r) => r,
            None => {
                own = host_resources(Process::Current)?;
                &own
            }
        };
        let w = pools::workers(r.cpus(), r.available(), 256 << 20);
        (w.gunicorn, 1, w.celery, "`tune workers` on this host")
    };
    let pools = pools::pool_connections(gunicorn, threads, celery);
    let (total, why) = pools::max_connections(pools);
    Ok((
        total,
        format!("{why}; pools = {gunicorn} gunicorn workers x {threads} threads + {celery} Celery, from {whence}"),
    ))
}

/// Current values from pg_settings beside the recommendations.
async fn compare(conn: &mut PgConnection, settings: &[Setting]) -> Result<Vec<Row>, OpsError> {
    let names: Vec<String> = settings.iter().map(|s| s.name.to_string()).collect();
    let current: Vec<(String, String, Option<String>, String, String)> = sqlx::query_as(
        "select name, setting, unit, current_setting(name), context from pg_settings where name = any($1)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .answer("reading pg_settings")
    .await?;
    let mut rows = Vec::new();
    for s in settings {
        let found = current.iter().find(|c| c.0 == s.name);
        let (shown, change, restart) = match found {
            Some((_, setting, unit, shown, context)) => {
                let same = same_value(&s.value, setting, unit.as_deref()).ok_or_else(|| {
                    OpsError::new(
                        Exit::Data,
                        format!(
                            "pg_settings: {} = '{setting}' (unit {unit:?}) is not a number",
                            s.name
                        ),
                    )
                })?;
                (Some(shown.clone()), !same, context == "postmaster")
            }
            None => (None, true, false),
        };
        rows.push(Row {
            name: s.name,
            current: shown,
            recommended: s.value.render(),
            change,
            restart: change && restart,
            reason: s.reason.clone(),
        });
    }
    Ok(rows)
}

/// Whether pg_settings' `setting` (in `unit`) is the recommended value, to within the unit (a
/// size in 8 kB pages cannot hold every kB).
pub(super) fn same_value(value: &Value, setting: &str, unit: Option<&str>) -> Option<bool> {
    let n: f64 = setting.parse().ok()?;
    Some(match value {
        Value::Kb(kb) => {
            let unit_kb = match unit {
                Some("8kB") => 8.0,
                Some("kB") => 1.0,
                Some("MB") => 1024.0,
                Some("GB") => 1024.0 * 1024.0,
                _ => return None,
            };
            (n * unit_kb - *kb as f64).abs() < unit_kb
        }
        Value::Int(i) => n == *i as f64,
        Value::Real(x) => (n - x).abs() < 1e-9,
    })
}

fn print_human(ctx: &Context, report: &Report<'_>) {
    let i = &report.inputs;
    say!(
        ctx,
        "Planning for {} memory ({}), {} CPUs ({}), {} connections ({}).",
        crate::size::human(i.memory),
        report.sources.memory,
        i.cpus,
        report.sources.cpus,
        i.connections,
        report.sources.connections
    );
    if let Some(r) = report.resources {
        say!(ctx, "Resources: {}.", r.describe());
    }
    let mut table = Table::new(&[
        ("SETTING", Align::Left),
        ("CURRENT", Align::Right),
        ("RECOMMENDED", Align::Right),
        ("", Align::Left),
        ("WHY", Align::Left),
    ]);
    for r in &report.settings {
        let mark = match (r.change, r.restart) {
            (false, _) => "",
            (true, false) => "change",
            (true, true) => "change, restart",
        };
        table.row(vec![
            r.name.to_string(),
            r.current.clone().unwrap_or_else(|| "-".into()),
            r.recommended.clone(),
            mark.to_string(),
            r.reason.clone(),
        ]);
    }
    say!(ctx, "{}", table.render().trim_end());
    match (&report.applied, &report.output) {
        (Some(applied), _) => apply::print_human(ctx, applied),
        (None, Some(path)) => say!(ctx, "Fragment written to {}.", path.display()),
        (None, None) => {
            say!(
                ctx,
                "\npostgresql.conf fragment (install with --apply, or -o FILE):\n"
            );
            say!(ctx, "{}", report.fragment.trim_end());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_values_compare_within_their_unit() {
        // shared_buffers 4GB is 524288 pages of 8 kB.
        assert_eq!(
            same_value(&Value::Kb(4 << 20), "524288", Some("8kB")),
            Some(true)
        );
        // effective_cache_size 10066329kB lands as 1258291 pages (10066328 kB): the same.
        assert_eq!(
            same_value(&Value::Kb(10066329), "1258291", Some("8kB")),
            Some(true)
        );
        assert_eq!(
            same_value(&Value::Kb(4 << 20), "16384", Some("8kB")),
            Some(false)
        );
        assert_eq!(
            same_value(&Value::Kb(2 << 20), "2048", Some("MB")),
            Some(true)
        );
        assert_eq!(same_value(&Value::Int(100), "100", None), Some(true));
        assert_eq!(same_value(&Value::Real(1.1), "4", None), Some(false));
        assert_eq!(same_value(&Value::Kb(1), "on", None), None);
    }
}
