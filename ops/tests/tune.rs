//! `tune postgres` and `tune workers` end to end: the real server's settings beside the
//! recommendations, configuration files rewritten in place, a real gunicorn started with the
//! written configuration, and a real cgroup limit honoured.
//!
//! `tune postgres --apply` is only run with --dry-run here: the shared PostgreSQL serves every
//! other test, and its configuration must not change under them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, World, BIN};

fn setting<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["settings"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn postgres_16gib_4cpus_oltp_100_connections_against_the_real_servers_values() {
    let w = World::initialised(BIN);
    let out = run(w.ops().args([
        "--json",
        "tune",
        "postgres",
        "--memory",
        "16GiB",
        "--cpus",
        "4",
        "--connections",
        "100",
        "--workload",
        "oltp",
    ]));
    out.expect_code(0);
    let report = out.json();
    // The table of the example, worked by hand in pgtune.rs.
    for (name, value) in [
        ("max_connections", "100"),
        ("shared_buffers", "4GB"),
        ("effective_cache_size", "10066329kB"),
        ("maintenance_work_mem", "1GB"),
        ("wal_buffers", "16MB"),
        ("work_mem", "40329kB"),
        ("min_wal_size", "2GB"),
        ("max_wal_size", "8GB"),
        ("random_page_cost", "1.1"),
        ("max_parallel_workers_per_gather", "2"),
    ] {
        assert_eq!(
            setting(&report, name)["recommended"],
            value,
            "{name}: {report}"
        );
    }
    assert_eq!(report["settings"].as_array().map(Vec::len), Some(16));
    // Current values are the server's own.
    let db = w.db();
    assert_eq!(
        setting(&report, "max_connections")["current"],
        db.text("show max_connections").as_str()
    );
    let shared = db.text("show shared_buffers");
    assert_eq!(
        setting(&report, "shared_buffers")["current"],
        shared.as_str()
    );
    assert_eq!(
        setting(&report, "shared_buffers")["change"],
        shared != "4GB"
    );
    // shared_buffers needs a restart, work_mem does not.
    assert_eq!(
        setting(&report, "shared_buffers")["restart"],
        shared != "4GB"
    );
    assert_eq!(setting(&report, "work_mem")["restart"], false);
    let fragment = report["fragment"].as_str().unwrap_or("");
    assert!(
        fragment.contains("\nshared_buffers = '4GB'\t# 25 % of 16.00 GiB\n"),
        "{fragment}"
    );
    assert!(report["applied"].is_null());
}

#[test]
fn postgres_human_report_is_a_table_then_the_fragment() {
    let w = World::initialised(BIN);
    let out = run(w.ops().args([
        "tune",
        "postgres",
        "--memory",
        "2GiB",
        "--cpus",
        "2",
        "--connections",
        "50",
    ]));
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("Planning for 2.00 GiB memory (--memory), 2 CPUs (--cpus), 50 connections (--connections)."), "{}", out.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with("SETTING")
            && l.contains("CURRENT")
            && l.contains("RECOMMENDED")),
        "{}",
        out.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("shared_buffers ")
            && l.contains("512MB")
            && l.contains("25 % of 2.00 GiB")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "\nmax_worker_processes = 8\t# 2 CPUs (fewer than 4): PostgreSQL's default\n"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn postgres_connections_come_from_the_worker_configurations_plus_headroom() {
    let w = World::initialised(BIN);
    let gunicorn = w.path("gunicorn.conf.py");
    let celery = w.path("celeryconfig.py");
    std::fs::write(&gunicorn, "workers = 9\nthreads = 2\n").expect("should succeed");
    std::fs::write(&celery, "broker_url = 'nats://x'\nworker_concurrency = 4\n")
        .expect("should succeed");
    let out = run(w
        .ops()
        .args([
            "--json", "tune", "postgres", "--memory", "4GiB", "--cpus", "4",
        ])
        .arg("--gunicorn-config")
        .arg(&gunicorn)
        .arg("--celery-config")
        .arg(&celery));
    out.expect_code(0);
    let report = out.json();
    // 9 x 2 + 4 = 22 pooled connections; headroom max(ceil(22 / 4), 30) = 30.
    assert_eq!(report["inputs"]["connections"], 52, "{report}");
    assert!(
        report["sources"]["connections"]
            .as_str()
            .unwrap_or("")
            .starts_with("pools 22 + headroom 30"),
        "{report}"
    );
}

#[test]
fn postgres_output_writes_the_fragment_and_never_replaces_a_file() {
    let w = World::initialised(BIN);
    let file = w.path("tune.conf");
    let args = [
        "tune",
        "postgres",
        "--memory",
        "16GiB",
        "--cpus",
        "4",
        "--connections",
        "100",
        "-o",
    ];
    run(w.ops().args(args).arg(&file)).expect_code(0);
    let written = std::fs::read_to_string(&file).expect("should succeed");
    assert!(written.starts_with("# Written by ransomeye-ops tune postgres: 16.00 GiB memory, 4 CPUs, 100 connections, oltp workload, ssd storage.\n"), "{written}");
    assert_eq!(written.lines().filter(|l| !l.starts_with('#')).count(), 16);
    run(w.ops().args(args).arg(&file)).expect_code(73);
    assert_eq!(
        std::fs::read_to_string(&file).expect("should succeed"),
        written
    );
}

#[test]
fn postgres_apply_dry_run_names_the_conf_d_file_and_changes_nothing() {
    let w = World::initialised(BIN);
    let db = w.db();
    let config_file = PathBuf::from(db.text("show config_file"));
    let conf_dir = config_file.parent().expect("should succeed").join("conf.d");
    let before = listing(&conf_dir);
    let out = run(w.ops().args([
        "--json",
        "tune",
        "postgres",
        "--memory",
        "16GiB",
        "--cpus",
        "4",
        "--apply",
        "--dry-run",
    ]));
    let text = std::fs::read_to_string(&config_file).unwrap_or_default();
    if !text
        .lines()
        .any(|l| l.trim_start().starts_with("include_dir"))
    {
        // A server without include_dir is refused, not edited.
        out.expect_code(78).stderr_has("has no include_dir");
        return;
    }
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["applied"]["dry_run"], true);
    assert_eq!(
        report["applied"]["file"],
        conf_dir
            .join("90-ransomeye-tune.conf")
            .to_string_lossy()
            .as_ref(),
        "{report}"
    );
    assert_eq!(
        listing(&conf_dir),
        before,
        "a dry run changed {}",
        conf_dir.display()
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

const GUNICORN_CONF: &str = "# the platform's gunicorn\nimport multiprocessing\n\nbind = \"127.0.0.1:8000\"\nworkers = multiprocessing.cpu_count() * 2 + 1\ntimeout = 30\n";

#[test]
fn workers_rewrite_only_their_lines_and_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().expect("should succeed");
    let gunicorn = dir.path().join("gunicorn.conf.py");
    let celery = dir.path().join("celeryconfig.py");
    std::fs::write(&gunicorn, GUNICORN_CONF).expect("should succeed");
    std::fs::write(&celery, "broker_url = 'redis://localhost'\n").expect("should succeed");
    let tune = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "tune",
            "workers",
            "--cpus",
            "4",
            "--memory",
            "8GiB",
            "--per-worker-memory",
            "256MiB",
        ])
        .arg("--gunicorn-config")
        .arg(&gunicorn)
        .arg("--celery-config")
        .arg(&celery)
        .args(extra)
        // No configuration: max_connections is not checked, and that is only a warning.
        .env("RANSOMEYE_CONFIG", dir.path().join("none.toml"));
        run(&mut cmd)
    };
    let out = tune(&["--dry-run"]);
    out.expect_code(0).stderr_has("max_connections not checked");
    assert!(out.stdout.contains("would write `workers = 9  # ransomeye-ops tune workers: (2 x 4 CPUs) + 1 = 9; memory allows 25"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(&gunicorn).expect("should succeed"),
        GUNICORN_CONF
    );

    tune(&[]).expect_code(0);
    let text = std::fs::read_to_string(&gunicorn).expect("should succeed");
    let expected_line = "workers = 9  # ransomeye-ops tune workers: (2 x 4 CPUs) + 1 = 9; memory allows 25 (0.8 x 8.00 GiB available / 256.00 MiB per worker = 25)";
    assert_eq!(
        text,
        GUNICORN_CONF.replace(
            "workers = multiprocessing.cpu_count() * 2 + 1",
            expected_line
        )
    );
    assert_eq!(
        std::fs::read_to_string(&celery).expect("should succeed"),
        "broker_url = 'redis://localhost'\nworker_concurrency = 4  # ransomeye-ops tune workers: 4 CPUs; memory left after gunicorn allows 16\n"
    );
    // A second run finds nothing to change.
    let again = tune(&["--json"]);
    again.expect_code(0);
    assert_eq!(again.json()["files"][0]["unchanged"], true);
}

#[test]
fn workers_with_a_missing_configuration_file_exit_66_and_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(Command::new(BIN)
        .args([
            "tune",
            "workers",
            "--cpus",
            "2",
            "--memory",
            "4GiB",
            "--gunicorn-config",
        ])
        .arg(dir.path().join("gunicorn.conf.py"))
        .env("RANSOMEYE_CONFIG", dir.path().join("none.toml")));
    out.expect_code(66).stderr_has("gunicorn.conf.py");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn workers_refuse_an_assignment_over_several_lines() {
    let dir = tempfile::tempdir().expect("should succeed");
    let gunicorn = dir.path().join("gunicorn.conf.py");
    let original = "workers = max(\n    2, 4)\n";
    std::fs::write(&gunicorn, original).expect("should succeed");
    let out = run(Command::new(BIN)
        .args([
            "tune",
            "workers",
            "--cpus",
            "2",
            "--memory",
            "4GiB",
            "--gunicorn-config",
        ])
        .arg(&gunicorn)
        .env("RANSOMEYE_CONFIG", dir.path().join("none.toml")));
    out.expect_code(65)
        .stderr_has("line 1: `workers` is set by an expression over several lines");
    assert_eq!(
        std::fs::read_to_string(&gunicorn).expect("should succeed"),
        original
    );
}

#[test]
fn workers_warn_when_the_pools_exceed_max_connections() {
    let w = World::initialised(BIN);
    let max = w.db().text("show max_connections");
    // 512 CPUs, memory for all: gunicorn 1025 + Celery 512 connections.
    let out = run(w
        .ops()
        .args(["tune", "workers", "--cpus", "512", "--memory", "1TiB"]));
    out.expect_code(0).stderr_has(&format!(
        "the pools hold 1537 connections (1025 gunicorn workers x 1 threads + 512 Celery) but PostgreSQL's max_connections is {max}"
    ));
}

/// Waits until `pid` has exactly `n` child processes, or panics at the deadline.
fn wait_for_children(pid: u32, n: usize, deadline: Duration) -> usize {
    let start = Instant::now();
    loop {
        let count = children(pid).len();
        if count == n {
            return count;
        }
        assert!(
            start.elapsed() < deadline,
            "gunicorn {pid} has {count} workers after {deadline:?}, expected {n}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("should succeed")
        .flatten()
    {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces) in parentheses: state, ppid, ...
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        if rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

#[test]
fn a_real_gunicorn_started_with_the_written_config_spawns_the_computed_workers() {
    let gunicorn = which("gunicorn").expect(
        "gunicorn is not installed: scripts/test installs it (sandbox_install_deps), or apt-get install gunicorn",
    );
    let dir = tempfile::tempdir().expect("should succeed");
    std::fs::write(dir.path().join("app.py"), "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n").expect("should succeed");
    let conf = dir.path().join("gunicorn.conf.py");
    let port = common::closed_port();
    std::fs::write(&conf, format!("bind = \"127.0.0.1:{port}\"\nworkers = 1\n"))
        .expect("should succeed");
    // 2 CPUs would be 5 workers; 1 GiB at 256 MiB each leaves floor(0.8 x 4) = 3.
    let out = run(Command::new(BIN)
        .args([
            "--json",
            "tune",
            "workers",
            "--cpus",
            "2",
            "--memory",
            "1GiB",
            "--per-worker-memory",
            "256MiB",
            "--gunicorn-config",
        ])
        .arg(&conf)
        .env("RANSOMEYE_CONFIG", dir.path().join("none.toml")));
    out.expect_code(0);
    let computed = out.json()["workers"]["gunicorn"].as_u64().unwrap_or(0) as usize;
    assert_eq!(computed, 3);
    let mut master = Command::new(gunicorn)
        .args(["--config"])
        .arg(&conf)
        .args(["--chdir"])
        .arg(dir.path())
        .arg("app:application")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("should succeed");
    let pid = master.id();
    let result =
        std::panic::catch_unwind(|| wait_for_children(pid, computed, Duration::from_secs(30)));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = master.wait();
    assert_eq!(result.expect("should succeed"), 3);
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A transient cgroup made for one test and removed after it.
struct TestCgroup {
    dirs: Vec<PathBuf>,
}

impl TestCgroup {
    /// A cgroup limited to `memory` bytes and one CPU, on cgroup v1 (memory and cpu
    /// controllers) or v2.
    fn new(memory: u64) -> TestCgroup {
        // Unique per process and per cgroup (cargo test runs tests as threads of one process).
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ransomeye-test-{}-{n}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = Vec::new();
        if root.join("cgroup.controllers").exists() {
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +cpu");
            let dir = root.join(&name);
            std::fs::create_dir(&dir).expect("create a v2 cgroup (needs root)");
            std::fs::write(dir.join("memory.max"), memory.to_string()).expect("memory.max");
            std::fs::write(dir.join("cpu.max"), "100000 100000").expect("cpu.max");
            dirs.push(dir);
        } else {
            let mem = root.join("memory").join(&name);
            std::fs::create_dir(&mem).expect("create a v1 memory cgroup (needs root)");
            std::fs::write(mem.join("memory.limit_in_bytes"), memory.to_string()).expect("limit");
            dirs.push(mem);
            let cpu = root.join("cpu").join(&name);
            std::fs::create_dir(&cpu).expect("create a v1 cpu cgroup (needs root)");
            std::fs::write(cpu.join("cpu.cfs_quota_us"), "100000").expect("quota");
            std::fs::write(cpu.join("cpu.cfs_period_us"), "100000").expect("period");
            dirs.push(cpu);
        }
        TestCgroup { dirs }
    }

    /// A shell line that moves the shell into the cgroup (every hierarchy) before it execs.
    fn enter(&self) -> String {
        self.dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs && ", d.display()))
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn a_real_cgroup_memory_and_cpu_limit_lower_than_the_hosts_is_honoured() {
    let host_memory: u64 = std::fs::read_to_string("/proc/meminfo")
        .expect("should succeed")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("should succeed")
        * 1024;
    common::require_root("creates a transient cgroup under /sys/fs/cgroup");
    let limit: u64 = 1 << 30;
    assert!(
        host_memory > limit,
        "the host must have more than 1 GiB for this test"
    );
    let cgroup = TestCgroup::new(limit);
    let dir = tempfile::tempdir().expect("should succeed");
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}exec \"$0\" --json tune workers --per-worker-memory 128MiB",
            cgroup.enter()
        ))
        .arg(BIN)
        .env("RANSOMEYE_CONFIG", dir.path().join("none.toml")));
    drop(cgroup);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(
        report["resources"]["cgroup_memory"]["value"], limit,
        "{report}"
    );
    assert!(
        report["available_memory"].as_u64().unwrap_or(u64::MAX) <= limit,
        "{report}"
    );
    assert_eq!(report["cpus"], 1, "{report}");
    // One CPU: (2 x 1) + 1 = 3 gunicorn workers, whatever the host has.
    assert_eq!(report["workers"]["gunicorn"], 3, "{report}");
}

/// A throwaway PostgreSQL cluster of this test's own (initdb in a temp directory, on a free
/// port), so that `--apply` changes a configuration no other test uses. Stopped on drop.
///
/// A local stand-in: tools/testkit is getting a shared throwaway cluster, which should replace
/// this once it lands.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        common::require_root("runs initdb and pg_ctl as user postgres");
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server packages in /usr/lib/postgresql")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .max_by_key(|b| {
                b.parent()
                    .and_then(|p| p.file_name())
                    .and_then(|n| n.to_string_lossy().parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("tempdir");
        let chown = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(chown.success());
        let data = dir.path().join("data");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Cluster {
            dir,
            bin,
            port: common::closed_port(),
        };
        c.pg_ctl("start");
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "-m", "fast", action])
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn show(&self, setting: &str) -> String {
        let out = Command::new("psql")
            .arg(self.url())
            .args(["-X", "-A", "-t", "-c", &format!("show {setting}")])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

#[test]
fn postgres_apply_on_a_throwaway_cluster_writes_checks_reloads_and_rolls_back_a_rejected_fragment()
{
    let cluster = Cluster::start();
    let w = World::empty(BIN);
    w.init_with(&cluster.url(), &common::services().nats_url)
        .expect_code(0);
    let conf = cluster.data().join("postgresql.conf");
    let original = std::fs::read_to_string(&conf).expect("postgresql.conf");
    let apply = |memory: &str| {
        run(w.ops().args([
            "--json",
            "tune",
            "postgres",
            "--apply",
            "--memory",
            memory,
            "--cpus",
            "4",
            "--connections",
            "50",
        ]))
    };

    // initdb's postgresql.conf has no include_dir: refused, and left as it was.
    apply("4GiB")
        .expect_code(78)
        .stderr_has("has no include_dir: tune will not edit it");
    assert_eq!(
        std::fs::read_to_string(&conf).expect("postgresql.conf"),
        original
    );

    std::fs::write(&conf, format!("{original}include_dir = 'conf.d'\n")).expect("write");
    let conf_d = cluster.data().join("conf.d");
    std::fs::create_dir(&conf_d).expect("conf.d");
    let out = apply("4GiB");
    out.expect_code(0);
    let report = out.json();
    let fragment = conf_d.join("90-ransomeye-tune.conf");
    assert_eq!(
        std::fs::read_to_string(&fragment).expect("fragment"),
        report["fragment"].as_str().unwrap_or("")
    );
    // Reloaded: a setting that needs no restart is in effect now; shared_buffers waits.
    // 4 GiB = 4194304 kB: (4194304 - 1048576) / ((50 + 4) x 3) = 19418.0 -> 19418kB.
    assert_eq!(cluster.show("work_mem"), "19418kB");
    assert_eq!(cluster.show("random_page_cost"), "1.1");
    let pending: Vec<&str> = report["applied"]["pending_restart"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(pending.contains(&"shared_buffers"), "{report}");
    assert!(pending.contains(&"max_connections"), "{report}");
    assert_eq!(cluster.show("shared_buffers"), "128MB");

    // A second apply keeps the fragment it replaces.
    let first = std::fs::read_to_string(&fragment).expect("fragment");
    let out = apply("8GiB");
    out.expect_code(0);
    let backup = PathBuf::from(out.json()["applied"]["backup"].as_str().unwrap_or(""));
    assert_eq!(std::fs::read_to_string(&backup).expect("backup"), first);
    let second = std::fs::read_to_string(&fragment).expect("fragment");

    // A value the server rejects (effective_cache_size beyond its range): rolled back, 78.
    apply("100TiB")
        .expect_code(78)
        .stderr_has("the server rejects")
        .stderr_has("effective_cache_size");
    assert_eq!(
        std::fs::read_to_string(&fragment).expect("fragment"),
        second
    );

    // Killed (as by SIGKILL) after writing the 4 GiB fragment, before the check and the reload,
    // with the temp file of an earlier killed write beside it: the rerun finds its fragment in
    // place, removes the stale temp file, checks and reloads.
    let stale = conf_d.join(".90-ransomeye-tune.conf.tmp-0123456789abcdef");
    std::fs::write(&stale, "half a fragm").expect("stale temp");
    let aged = Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(&stale)
        .status()
        .expect("touch");
    assert!(aged.success());
    let killed = run(w
        .ops()
        .args([
            "tune",
            "postgres",
            "--apply",
            "--memory",
            "4GiB",
            "--cpus",
            "4",
            "--connections",
            "50",
        ])
        .env("RANSOMEYE_FAILPOINT", "tune-fragment-written"));
    assert_ne!(killed.code, 0, "{}", killed.stderr);
    assert_eq!(std::fs::read_to_string(&fragment).expect("fragment"), first);
    // Still the 8 GiB fragment's: (8388608 - 2097152) / ((50 + 4) x 3) = 38836.1 -> 38836kB.
    assert_eq!(cluster.show("work_mem"), "38836kB", "not reloaded yet");
    let out = apply("4GiB");
    out.expect_code(0);
    assert_eq!(out.json()["applied"]["unchanged"], true);
    assert!(!stale.exists(), "the stale temp file is still there");
    assert_eq!(cluster.show("work_mem"), "19418kB");

    // After a restart, SHOW returns the restart-only values of the fragment.
    cluster.pg_ctl("restart");
    assert_eq!(cluster.show("shared_buffers"), "1GB");
    assert_eq!(cluster.show("max_connections"), "50");
    assert_eq!(cluster.show("max_worker_processes"), "4");
}

#[test]
fn postgres_plans_for_the_servers_cgroup_not_the_hosts() {
    let limit: u64 = 1 << 30;
    // Declared first, dropped last: the cluster stops before its cgroup is removed.
    let cgroup = TestCgroup::new(limit);
    let cluster = Cluster::start();
    let postmaster =
        std::fs::read_to_string(cluster.data().join("postmaster.pid")).expect("postmaster.pid");
    let pid = postmaster.lines().next().unwrap_or("").trim().to_string();
    // The backends forked from now on (ours included) start in the postmaster's cgroup.
    for dir in &cgroup.dirs {
        std::fs::write(dir.join("cgroup.procs"), &pid).expect("move the postmaster");
    }
    let w = World::empty(BIN);
    w.init_with(&cluster.url(), &common::services().nats_url)
        .expect_code(0);
    // This process is not in the cgroup: the limit can only come from the server's.
    let out = run(w
        .ops()
        .args(["--json", "tune", "postgres", "--connections", "20"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["inputs"]["memory"], limit, "{report}");
    assert_eq!(report["inputs"]["cpus"], 1, "{report}");
    assert_eq!(
        report["sources"]["memory"], "the PostgreSQL server's cgroup on this host",
        "{report}"
    );
    // 1 GiB: shared_buffers 25 % = 256MB.
    assert_eq!(setting(&report, "shared_buffers")["recommended"], "256MB");
    drop(cluster);
    drop(cgroup);
}
