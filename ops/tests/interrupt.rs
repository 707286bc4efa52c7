//! Interrupts: SIGINT, SIGTERM and SIGHUP, sent for real to the running binary at a point made
//! deterministic by a paused failpoint or a `[services]` command that says it is running.
//! `restore` always starts the services again, `drill` drops its scratch database (and the
//! next drill the leftovers of a killed one), `archive` and `backup` stop at their safe points.

mod common;

use std::time::Duration;

use common::{run, ClusterOptions, OwnPostgres, Running, TestDb, World, BIN};
use nix::sys::signal::Signal;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The signals that ask ransomeye-ops to stop.
const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// A world with old and new audit rows and one backup; returns the backup's name.
fn world_with_backup() -> (World, String) {
    let w = World::initialised(BIN);
    w.db().execute(
        "insert into audit_logs (created_at, actor, action, target, details) \
         select now() - g * interval '1 hour', 'user' || (g % 7), 'login', 'host-' || g, '{}' \
         from generate_series(1, 200) g",
    );
    let out = run(w.ops().args(["--json", "backup"]));
    out.expect_code(0);
    let name = out.json()["backup"].as_str().expect("name").to_string();
    (w, name)
}

/// Adds `[services]` commands to the world's configuration.
fn services(w: &World, stop: &str, start: &str) {
    services_within(w, stop, start, 600)
}

/// Adds `[services]` commands, each bounded by `timeout_secs`.
fn services_within(w: &World, stop: &str, start: &str, timeout_secs: u64) {
    w.edit_config(|text| {
        format!(
            "{text}\n[services]\nstop = [{stop:?}]\nstart = [{start:?}]\ntimeout_secs = {timeout_secs}\n"
        )
    });
}

fn tables(db: &TestDb) -> i64 {
    db.int(
        "select count(*)::int8 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p') and n.nspname = 'public'",
    )
}

#[test]
fn a_signal_during_services_stop_kills_it_starts_services_and_restores_nothing() {
    let (w, name) = world_with_backup();
    let log = w.path("services.log");
    // The stop command says it runs, then blocks (its output let go of, so that the test ends
    // quickly on code that leaves it running).
    services(
        &w,
        &format!(
            "echo stop >> {l}; echo 'stop command running' >&2; exec >/dev/null 2>&1; sleep 600",
            l = log.display()
        ),
        &format!("echo start >> {l}", l = log.display()),
    );
    for s in SIGNALS {
        let _ = std::fs::remove_file(&log);
        let target = TestDb::empty();
        let mut r =
            Running::start(
                w.ops()
                    .args(["restore", &name, "--target-database-url", &target.url]),
            );
        r.wait_for("stop command running");
        r.signal(s);
        let out = r.finish();
        out.expect_code(75)
            .stderr_has(&format!("interrupted by {s}"))
            .stderr_has("[services] start was run")
            .stderr_has("nothing was restored");
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "stop\nstart\n",
            "{s}"
        );
        assert_eq!(tables(&target), 0, "{s}: nothing was restored");
    }
}

/// The timeout is the same guard as a signal, without anyone there to send one: a stop command
/// that hangs is killed with what it started, the services are started again, nothing restored.
#[test]
fn a_services_stop_command_outliving_its_timeout_is_killed_and_services_start_again() {
    let (w, name) = world_with_backup();
    let log = w.path("services.log");
    let pidfile = w.path("stop-child.pid");
    services_within(
        &w,
        &format!(
            "echo stop >> {l}; sleep 600 & echo $! > {p}; wait",
            l = log.display(),
            p = pidfile.display()
        ),
        &format!("echo start >> {l}", l = log.display()),
        1,
    );
    let target = TestDb::empty();
    let out = common::run_within(
        w.ops()
            .args(["restore", &name, "--target-database-url", &target.url]),
        Duration::from_secs(120),
    );
    out.expect_code(69)
        .stderr_has("did not finish within 1 s and was killed")
        .stderr_has("[services] start was run")
        .stderr_has("nothing was restored");
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "stop\nstart\n");
    assert_eq!(tables(&target), 0, "nothing was restored");
    let pid = std::fs::read_to_string(&pidfile).expect("the stop command's child wrote its pid");
    // SIGKILL is delivered asynchronously: gone, or a zombie, within a bounded while.
    let gone = || {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        stat.is_empty() || stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gone() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(gone(), "the stop command's child outlived the timeout");
}

#[test]
fn a_signal_during_pg_restore_rolls_it_back_and_starts_services() {
    let (w, name) = world_with_backup();
    let log = w.path("services.log");
    services(
        &w,
        &format!("echo stop >> {l}", l = log.display()),
        &format!("echo start >> {l}", l = log.display()),
    );
    let target = TestDb::empty();
    let mut r = Running::start(
        w.ops()
            .args(["restore", &name, "--target-database-url", &target.url])
            .env("RANSOMEYE_FAILPOINT", "restore-before-commit"),
    );
    // pg_restore has all of the dump but its last bytes.
    r.wait_for("failpoint restore-before-commit: paused");
    r.signal(Signal::SIGTERM);
    r.finish()
        .expect_code(75)
        .stderr_has("interrupted by SIGTERM")
        .stderr_has("the target database is as it was")
        .stderr_has("[services] start was run");
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "stop\nstart\n");
    assert_eq!(tables(&target), 0, "pg_restore committed nothing");

    // The interruption left nothing in the way: the same restore now succeeds.
    run(w
        .ops()
        .args(["restore", &name, "--target-database-url", &target.url]))
    .expect_code(0);
    assert_eq!(
        target.int("select count(*)::int8 from audit_logs"),
        w.db().int("select count(*)::int8 from audit_logs")
    );
}

#[test]
fn an_interrupted_drill_drops_its_scratch_database() {
    let (w, _) = world_with_backup();
    for s in SIGNALS {
        let mut r = Running::start(
            w.ops()
                .arg("drill")
                .env("RANSOMEYE_FAILPOINT", "restore-before-pg-restore"),
        );
        r.wait_for("failpoint restore-before-pg-restore: paused");
        // Scratch names end with the drill's pid.
        let suffix = format!("_{}", r.pid());
        let scratch: Vec<String> = w
            .db()
            .databases("ransomeye_drill_")
            .into_iter()
            .filter(|n| n.ends_with(&suffix))
            .collect();
        assert_eq!(
            scratch.len(),
            1,
            "{s}: the scratch database exists: {scratch:?}"
        );
        r.signal(s);
        r.finish()
            .expect_code(75)
            .stderr_has(&format!("interrupted by {s}"))
            .stderr_has(&format!("its scratch database {} was dropped", scratch[0]));
        assert_eq!(w.db().databases(&scratch[0]), Vec::<String>::new(), "{s}");
    }
}

/// On a server of its own: every drill removes killed drills' leftovers server-wide, so a drill
/// of a test running beside this one would take away the leftover this test is about.
#[test]
fn the_next_drill_removes_a_killed_drills_leftover_and_nothing_else() {
    let pg = OwnPostgres::start_with(ClusterOptions {
        log_statement_all: false,
        ..ClusterOptions::default()
    });
    pg.load_platform_schema();
    let w = World::initialised(BIN);
    w.set_database_url(&pg.superuser_url());
    run(w.ops().arg("backup")).expect_code(0);
    // A drill killed by SIGKILL: nothing of it runs to clean up.
    let mut r = Running::start(
        w.ops()
            .arg("drill")
            .env("RANSOMEYE_FAILPOINT", "restore-before-pg-restore"),
    );
    r.wait_for("failpoint restore-before-pg-restore: paused");
    let pid = r.pid();
    let leftover = pg
        .databases("ransomeye_drill_")
        .into_iter()
        .find(|n| n.ends_with(&format!("_{pid}")))
        .expect("the killed drill's scratch database");
    r.signal(Signal::SIGKILL);
    assert_eq!(r.finish().code, -1);
    // Its database session ends once the server notices the closed connection.
    let app = format!("ransomeye-ops drill pid {pid}");
    for _ in 0..500 {
        let sessions = pg.text(&format!(
            "select count(*)::text from pg_stat_activity where application_name = '{app}'"
        ));
        if sessions == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pg.databases(&leftover), std::slice::from_ref(&leftover));

    // Look-alikes the drill must leave alone: one without the mark, and one whose creator (this
    // test's own session) is alive.
    let unmarked = format!("ransomeye_drill_unmarked_{}", std::process::id());
    let alive = format!("ransomeye_drill_alive_{}", std::process::id());
    let admin_url = pg.superuser_url();
    // The "alive" creator's session stays open across the drill: its own runtime, used in steps.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut creator = rt
        .block_on(PgConnection::connect(&admin_url))
        .expect("connect");
    let mut sql = |sql: String| {
        rt.block_on(sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut creator))
            .expect("sql");
    };
    sql(format!("drop database if exists {unmarked}"));
    sql(format!("drop database if exists {alive}"));
    sql(format!("create database {unmarked}"));
    sql(format!("create database {alive}"));
    sql(format!(
        "do $$ begin execute format('comment on database {alive} is %L', \
         'ransomeye-ops drill scratch database; created by session ' || pg_backend_pid() \
         || ' ' || (select (extract(epoch from backend_start) * 1000000)::int8 \
         from pg_stat_activity where pid = pg_backend_pid())); end $$"
    ));

    let out = run(w.ops().args(["--json", "drill"]));
    out.expect_code(0);
    let removed = out.json()["leftovers_removed"].clone();
    assert!(
        removed
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == leftover.as_str())),
        "{removed}"
    );
    assert_eq!(pg.databases(&leftover), Vec::<String>::new());
    assert_eq!(pg.databases(&unmarked), std::slice::from_ref(&unmarked));
    assert_eq!(pg.databases(&alive), std::slice::from_ref(&alive));
    for name in [&unmarked, &alive] {
        sql(format!("drop database {name} with (force)"));
    }
}

#[test]
fn a_signal_before_the_backup_commit_abandons_it_and_leaves_no_file() {
    let w = World::initialised(BIN);
    let mut r = Running::start(
        w.ops()
            .arg("backup")
            .env("RANSOMEYE_FAILPOINT", "backup-commit-safe-point"),
    );
    r.wait_for("failpoint backup-commit-safe-point: paused");
    r.signal(Signal::SIGTERM);
    r.finish()
        .expect_code(75)
        .stderr_has("interrupted by SIGTERM")
        .stderr_has("was not committed and its temp files were removed");
    assert!(
        w.list("backups")
            .iter()
            .all(|n| n.starts_with(".backup.lock")),
        "nothing of the interrupted run is left: {:?}",
        w.list("backups")
    );
    run(w.ops().arg("backup")).expect_code(0);
    run(w.ops().args(["verify", "--all"])).expect_code(0);
}

#[test]
fn a_signal_between_prune_batches_stops_there_and_the_next_run_finishes() {
    let w = World::initialised(BIN);
    w.db().execute(
        "insert into audit_logs (created_at, actor) \
         select now() - interval '40 days' - g * interval '1 minute', 'u' \
         from generate_series(1, 100) g",
    );
    let old = || {
        w.db().int(
            "select count(*)::int8 from audit_logs where created_at < now() - interval '30 days'",
        )
    };
    let mut r = Running::start(
        w.ops()
            .args(["archive", "--batch-size", "10", "--no-vacuum"])
            .env("RANSOMEYE_FAILPOINT", "archive-between-batches"),
    );
    r.wait_for("failpoint archive-between-batches: paused");
    r.signal(Signal::SIGTERM);
    r.finish()
        .expect_code(75)
        .stderr_has("interrupted by SIGTERM")
        .stderr_has("10 of its rows deleted so far");
    assert_eq!(old(), 90, "one batch of ten was deleted, no more");

    run(w.ops().args(["archive", "--no-vacuum"])).expect_code(0);
    assert_eq!(old(), 0);
    let archives = w.archives();
    assert_eq!(archives.len(), 1, "no row archived twice: {archives:?}");
    run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
}
