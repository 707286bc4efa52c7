//! A database that accepts connections but never answers, or that stops answering mid-run,
//! gives exit 69 naming what was waited for, within the configured bound; it never hangs.
//!
//! Two silent servers: a listener of the test's own that accepts and never writes a byte, and a
//! real PostgreSQL backend stopped with SIGSTOP once the command has connected (the hold point
//! `db-connected` tells the test when; only that one backend is stopped, so other tests sharing
//! the server are untouched).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{backends_of, finish, run, spawn, Run, SilentServer, World, BIN};

/// Seconds the commands may wait for the database in these tests.
const LIMIT_SECS: u64 = 2;
/// How much longer than the limit a command may take to give up and exit (start-up, the
/// connection's own set-up, pg tools probing their versions, a loaded CI machine).
const SLACK: Duration = Duration::from_secs(20);

/// The world's configuration with short database timeouts.
fn with_short_timeouts(w: &World) {
    w.edit_config(|text| {
        text.replacen(
            "[database]\n",
            &format!(
                "[database]\nconnect_timeout_secs = {LIMIT_SECS}\nanswer_timeout_secs = {LIMIT_SECS}\n"
            ),
            1,
        )
    });
}

/// Asserts a run gave up with 69 on time and said what it waited for.
#[track_caller]
fn gave_up(what: &str, out: &Run, took: Duration, waited_for: &str) {
    out.expect_code(69);
    out.stderr_has(&format!("did not answer within {LIMIT_SECS} s while"))
        .stderr_has(waited_for);
    assert!(
        took < Duration::from_secs(LIMIT_SECS) + SLACK,
        "{what} took {took:?} to give up"
    );
}

#[test]
fn every_command_gives_up_on_a_listener_that_never_answers() {
    let w = World::initialised(BIN);
    with_short_timeouts(&w);
    let silent = SilentServer::start();
    // drill needs a backup to start from; make it while the database still answers.
    run(w.ops().arg("backup")).expect_code(0);
    for args in [
        &["archive"][..],
        &["archive", "--dry-run"],
        &["backup"],
        &["drill"],
        &["rotate-keys", "--dry-run"],
        &["rotate-keys"],
    ] {
        let start = Instant::now();
        let out = run(w
            .ops()
            .args(args)
            .env("RANSOMEYE_DATABASE_URL", silent.url()));
        gave_up(&args.join(" "), &out, start.elapsed(), "connecting");
    }
    // restore: the target is the silent one.
    let name = w.backups().into_iter().next().expect("a backup");
    let start = Instant::now();
    let out = run(w
        .ops()
        .args(["restore", &name, "--target-database-url", &silent.url()]));
    gave_up("restore", &out, start.elapsed(), "connecting");
}

/// Runs `args` until it has connected, stops its database backend with SIGSTOP, lets it go on,
/// and returns how it ended and how long it took after the stop.
fn stop_backend_after_connect(w: &World, args: &[&str]) -> (Run, Duration) {
    let pause = tempfile::tempdir().expect("tempdir");
    let child = spawn(
        w.ops()
            .args(args)
            .env("RANSOMEYE_HOLD", "db-connected")
            .env("RANSOMEYE_HOLD_DIR", pause.path()),
    );
    let reached = pause.path().join("db-connected.reached");
    wait_for(&reached, Duration::from_secs(60));
    let backends = backends_of(w.db(), child.id());
    assert!(
        !backends.is_empty(),
        "the command's backend is in pg_stat_activity"
    );
    let _stopped: Vec<Stopped> = backends.into_iter().map(Stopped::new).collect();
    std::fs::write(pause.path().join("db-connected.go"), b"").expect("release");
    let start = Instant::now();
    let out = finish(child);
    (out, start.elapsed())
}

/// Waits until `path` exists: the run announces its pause point there.
fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a process with kill(1).
fn signal(pid: i32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

/// A PostgreSQL backend stopped with SIGSTOP, continued when the guard is dropped.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        assert!(signal(pid, "STOP"), "SIGSTOP the backend {pid}");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

#[test]
fn archive_gives_up_when_its_backend_stops_answering() {
    let w = World::initialised(BIN);
    with_short_timeouts(&w);
    w.db().execute(
        "insert into audit_logs (created_at, actor, action, target) \
         select now() - interval '40 days', 'u', 'login', 'h' from generate_series(1, 20)",
    );
    let (out, took) = stop_backend_after_connect(&w, &["archive"]);
    gave_up("archive", &out, took, "while");
    assert_eq!(
        w.db().int("select count(*)::int8 from audit_logs"),
        20,
        "nothing deleted"
    );
}

#[test]
fn backup_gives_up_when_its_backend_stops_answering() {
    let w = World::initialised(BIN);
    with_short_timeouts(&w);
    let (out, took) = stop_backend_after_connect(&w, &["backup"]);
    gave_up("backup", &out, took, "while");
    assert!(
        !w.list("backups")
            .iter()
            .any(|n| n.ends_with(".manifest.json")),
        "no backup was committed: {:?}",
        w.list("backups")
    );
}

#[test]
fn drill_gives_up_when_its_backend_stops_answering() {
    let w = World::initialised(BIN);
    run(w.ops().arg("backup")).expect_code(0);
    with_short_timeouts(&w);
    let (out, took) = stop_backend_after_connect(&w, &["drill"]);
    gave_up("drill", &out, took, "while");
}

#[test]
fn rotate_keys_gives_up_when_its_backend_stops_answering() {
    let w = World::initialised(BIN);
    with_short_timeouts(&w);
    let signing = std::fs::read(w.path("keys/signing.key")).expect("signing key");
    let (out, took) = stop_backend_after_connect(&w, &["rotate-keys"]);
    gave_up("rotate-keys", &out, took, "while");
    assert_eq!(
        std::fs::read(w.path("keys/signing.key")).expect("signing key"),
        signing,
        "the signing key is unchanged"
    );
}

#[test]
fn a_zero_timeout_is_a_configuration_error() {
    let w = World::initialised(BIN);
    w.edit_config(|text| text.replacen("[database]\n", "[database]\nanswer_timeout_secs = 0\n", 1));
    run(w.ops().arg("archive"))
        .expect_code(78)
        .stderr_has("answer_timeout_secs");
}
