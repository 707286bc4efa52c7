//! `health`: real database and bus up, down, and hanging.

mod common;

use std::time::{Duration, Instant};

use common::{closed_port, run, run_within, SilentServer, World, BIN};

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn everything_up_reports_ok_checks_in_json() {
    let w = World::initialised(BIN);
    let out = run(w.ops().args(["--json", "health"]));
    let report = out.json();
    // Disk and host report this machine's real state (a loaded CI box may warn); the services
    // the test brought up must be OK.
    for name in ["disk", "host"] {
        let status = check(&report, name)["status"].as_str().unwrap_or("");
        assert!(
            matches!(status, "ok" | "warning" | "critical"),
            "{name}: {report}"
        );
    }
    assert_eq!(check(&report, "database")["status"], "ok", "{report}");
    assert_eq!(check(&report, "bus")["status"], "ok", "{report}");
    assert_eq!(
        check(&report, "bus")["metrics"]["jetstream"],
        1.0,
        "{report}"
    );
    assert!(check(&report, "database")["detail"]
        .as_str()
        .unwrap_or("")
        .contains("PostgreSQL"));
    let status = report["status"].as_str().unwrap_or("");
    let expected = match status {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        other => panic!("unexpected overall status {other}: {report}"),
    };
    out.expect_code(expected);
}

#[test]
fn bus_down_is_critical_with_exit_2() {
    let w = World::initialised(BIN);
    let port = closed_port();
    let out = run(w
        .ops()
        .args(["--json", "health", "--timeout", "3"])
        .env("RANSOMEYE_NATS_URL", format!("nats://127.0.0.1:{port}")));
    out.expect_code(2);
    let report = out.json();
    assert_eq!(report["status"], "critical");
    assert_eq!(check(&report, "bus")["status"], "critical");
    assert_eq!(check(&report, "database")["status"], "ok");
}

#[test]
fn database_down_is_critical_with_exit_2() {
    let w = World::initialised(BIN);
    let port = closed_port();
    let out = run(w.ops().args(["--json", "health", "--timeout", "3"]).env(
        "RANSOMEYE_DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:{port}/x"),
    ));
    out.expect_code(2);
    let report = out.json();
    assert_eq!(check(&report, "database")["status"], "critical");
    assert_eq!(check(&report, "bus")["status"], "ok");
}

#[test]
fn hanging_peers_are_critical_within_timeout_plus_half_a_second() {
    let w = World::initialised(BIN);
    // Accepts TCP connections and never answers.
    let hang = SilentServer::start();
    let port = hang.port;
    let started = Instant::now();
    let out = run(w
        .ops()
        .args(["--json", "health", "--timeout", "1"])
        .env(
            "RANSOMEYE_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/x"),
        )
        .env("RANSOMEYE_NATS_URL", format!("nats://127.0.0.1:{port}")));
    let elapsed = started.elapsed();
    out.expect_code(2);
    let report = out.json();
    assert_eq!(check(&report, "database")["status"], "critical");
    assert_eq!(check(&report, "bus")["status"], "critical");
    assert!(
        elapsed < Duration::from_millis(1500),
        "health took {elapsed:?} with a 1 s timeout"
    );
}

#[test]
fn a_disk_check_stuck_in_a_syscall_is_critical_and_health_exits_on_time() {
    let w = World::initialised(BIN);
    let started = Instant::now();
    // The failpoint blocks the disk check's thread for good, as statvfs on a dead NFS mount does.
    let out = run_within(
        w.ops()
            .args(["--json", "health", "--timeout", "1"])
            .env("RANSOMEYE_FAILPOINT", "health-disk-hang"),
        Duration::from_secs(20),
    );
    let elapsed = started.elapsed();
    out.stderr_has("failpoint health-disk-hang: paused");
    out.expect_code(2);
    let report = out.json();
    let disk = check(&report, "disk");
    assert_eq!(disk["status"], "critical", "{report}");
    assert_eq!(disk["detail"], "no answer in 1 s", "{report}");
    // The other checks were not held up by the stuck one.
    assert_eq!(check(&report, "database")["status"], "ok", "{report}");
    assert_eq!(check(&report, "bus")["status"], "ok", "{report}");
    assert!(
        elapsed < Duration::from_millis(1500),
        "health took {elapsed:?} with a 1 s timeout"
    );
}

#[test]
fn missing_archive_dir_is_a_critical_disk_check() {
    let w = World::initialised(BIN);
    std::fs::remove_dir(w.path("archive")).expect("rmdir");
    let out = run(w.ops().args(["--json", "health"]));
    out.expect_code(2);
    let disk = check(&out.json(), "disk").clone();
    assert_eq!(disk["status"], "critical");
    assert!(
        disk["detail"].as_str().unwrap_or("").contains("archive"),
        "{disk}"
    );
}

#[test]
fn prometheus_textfile_is_written_atomically() {
    let w = World::initialised(BIN);
    let prom = w.path("metrics/ransomeye.prom");
    std::fs::create_dir(w.path("metrics")).expect("mkdir");
    let out = run(w.ops().args(["health", "--prometheus"]).arg(&prom));
    assert!((0..=3).contains(&out.code), "{out:?}");
    let text = std::fs::read_to_string(&prom).expect("prom file");
    assert!(
        text.contains("# TYPE ransomeye_health_status gauge"),
        "{text}"
    );
    assert!(
        text.contains("ransomeye_health_check_status{check=\"database\"} 0"),
        "{text}"
    );
    assert_eq!(w.list("metrics"), vec!["ransomeye.prom".to_string()]);
    // Rewriting replaces it in place.
    run(w.ops().args(["health", "--prometheus"]).arg(&prom));
    assert_eq!(w.list("metrics"), vec!["ransomeye.prom".to_string()]);
}

#[test]
fn human_output_names_each_check() {
    let w = World::initialised(BIN);
    let out = run(w.ops().arg("health"));
    for name in ["database", "bus", "disk", "host"] {
        assert!(out.stdout.contains(name), "{}", out.stdout);
    }
    assert!(out.stdout.starts_with("RANSOMEYE "), "{}", out.stdout);
}
