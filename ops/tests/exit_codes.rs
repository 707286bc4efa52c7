//! The exit codes each command's `--help` lists, checked against what the commands do.
//!
//! [`DOCUMENTED`] is the table of every command's "Exit codes:" section: a change to a help text
//! that adds or drops a code fails here until the table (and so the review) agrees. The other
//! tests provoke real failures — a usage error and a missing configuration for every command,
//! and the database failures (a refused connection, a database that does not exist, one without
//! the RansomEye schema, a role without privileges or without CREATEDB, a lock held) against the
//! real PostgreSQL — and assert both the exit code and that the command's help lists it.

mod common;

use std::process::Command;

use common::{hold_table_lock, run, services, with_database, Run, TestDb, World, BIN};

/// Every command (as its argument path) and the exit codes its `--help` lists.
const DOCUMENTED: &[(&[&str], &[i32])] = &[
    (&["init"], &[0, 64, 73, 74, 77]),
    (&["decrypt"], &[0, 64, 65, 66, 73, 74, 77, 78]),
    (&["archive"], &[0, 64, 65, 69, 73, 74, 75, 77, 78]),
    (&["archive", "list"], &[0, 64, 65, 73, 77, 78]),
    (&["archive", "verify"], &[0, 64, 65, 66, 73, 77, 78]),
    (&["archive", "cat"], &[0, 64, 65, 66, 74, 77, 78]),
    (
        &["archive", "restore"],
        &[0, 64, 65, 66, 69, 74, 75, 77, 78],
    ),
    (&["backup"], &[0, 64, 65, 69, 73, 74, 75, 77, 78]),
    (&["backup", "list"], &[0, 64, 65, 73, 77, 78]),
    (&["backup", "cat"], &[0, 64, 65, 66, 74, 77, 78]),
    (&["verify"], &[0, 64, 65, 66, 69, 73, 77, 78]),
    (&["restore"], &[0, 64, 65, 66, 69, 73, 74, 75, 77, 78]),
    (&["drill"], &[0, 64, 65, 66, 69, 73, 74, 75, 77, 78]),
    (&["rotate-keys"], &[0, 64, 65, 66, 69, 73, 74, 75, 77, 78]),
    (&["rotate-keys", "status"], &[0, 64, 65, 75, 77, 78]),
    (&["rotate-db-creds"], &[0, 64, 65, 69, 73, 75, 77, 78]),
    (&["rotate-db-creds", "status"], &[0, 64, 65, 75, 77, 78]),
    (&["health"], &[0, 1, 2, 3, 64, 74, 77, 78]),
    (&["logs"], &[64]),
    (&["logs", "archive"], &[0, 64, 65, 73, 74, 75, 77, 78]),
    (&["logs", "verify"], &[0, 64, 65, 66, 77, 78]),
    (&["logs", "cat"], &[0, 64, 65, 66, 74, 77, 78]),
    (&["clean"], &[0, 64, 74, 75, 77, 78]),
    (&["alerts"], &[0, 64, 69, 77, 78]),
    (&["alerts", "send"], &[0, 64, 69, 77, 78]),
    (&["alerts", "forward"], &[0, 64, 69, 77, 78]),
    (&["completions"], &[0, 64]),
    (&["man"], &[0, 64, 74]),
    (&["tune"], &[0, 64]),
    (
        &["tune", "postgres"],
        &[0, 64, 65, 66, 69, 73, 74, 75, 77, 78],
    ),
    (&["tune", "workers"], &[0, 64, 65, 66, 73, 74, 75, 77]),
];

/// The arguments a command needs to get past parsing (to reach the configuration).
fn required_args(path: &[&str]) -> &'static [&'static str] {
    match path {
        ["decrypt"] | ["archive", "verify"] | ["archive", "cat"] | ["archive", "restore"] => {
            &["/nonexistent/logs_2026-11-23.zst.enc"]
        }
        ["backup", "cat"] | ["verify"] => &["ransomeye_20261123T020000Z"],
        ["restore"] => &[
            "ransomeye_20261123T020000Z",
            "--target-database-url",
            "postgres://postgres@127.0.0.1/x",
        ],
        ["completions"] => &["bash"],
        ["logs", "cat"] => &["/nonexistent/archive/core.log.1.zst.enc"],
        ["alerts", "send"] => &["--severity", "high", "--title", "t"],
        _ => &[],
    }
}

/// The codes listed under "Exit codes:" in `path`'s `--help`.
fn listed_codes(path: &[&str]) -> Vec<i32> {
    let out = run(Command::new(BIN)
        .args(path)
        .arg("--help")
        .env("COLUMNS", "100"));
    out.expect_code(0);
    let section = out
        .stdout
        .split("\nExit codes:\n")
        .nth(1)
        .unwrap_or_else(|| {
            panic!(
                "{path:?} --help has no \"Exit codes:\" section:\n{}",
                out.stdout
            )
        });
    section
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The documented codes of `path` (from the table, which [`help_lists_the_documented_codes`]
/// holds to the help).
fn documented(path: &[&str]) -> &'static [i32] {
    DOCUMENTED
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, codes)| *codes)
        .unwrap_or_else(|| panic!("{path:?} is not in DOCUMENTED"))
}

/// Asserts that `out` exited with `code` and that `path`'s help lists that code.
#[track_caller]
fn expect_documented(path: &[&str], out: &Run, code: i32) {
    out.expect_code(code);
    assert!(
        documented(path).contains(&code),
        "{path:?} exited {code}, which its --help does not list"
    );
}

#[test]
fn help_lists_the_documented_codes() {
    for (path, codes) in DOCUMENTED {
        assert_eq!(
            &listed_codes(path),
            codes,
            "{path:?} --help lists other exit codes than DOCUMENTED"
        );
    }
}

#[test]
fn every_command_is_in_the_table() {
    let cmd = ransomeye_ops::cli::command();
    let mut paths: Vec<Vec<String>> = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        paths.push(vec![sub.get_name().to_string()]);
        for subsub in sub.get_subcommands().filter(|s| s.get_name() != "help") {
            paths.push(vec![
                sub.get_name().to_string(),
                subsub.get_name().to_string(),
            ]);
        }
    }
    for path in &paths {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        documented(&path);
    }
    assert_eq!(
        paths.len(),
        DOCUMENTED.len(),
        "DOCUMENTED lists a command that does not exist"
    );
}

#[test]
fn a_usage_error_is_64_for_every_command() {
    for (path, _) in DOCUMENTED {
        let out = run(Command::new(BIN).args(*path).arg("--no-such-flag"));
        expect_documented(path, &out, 64);
    }
}

#[test]
fn a_missing_configuration_is_78_for_every_command_that_reads_one() {
    for (path, _) in DOCUMENTED {
        // `tune`, `logs` and `alerts` are only groups; `tune workers` reads a configuration
        // only to compare the pools with max_connections, and without one says so and carries on.
        if matches!(
            path,
            ["init"]
                | ["completions"]
                | ["man"]
                | ["tune"]
                | ["tune", "workers"]
                | ["logs"]
                | ["alerts"]
        ) {
            continue;
        }
        let out = run(Command::new(BIN)
            .args(["--config", "/nonexistent/kernel.toml"])
            .args(*path)
            .args(required_args(path))
            .env_remove("RANSOMEYE_CONFIG"));
        expect_documented(path, &out, 78);
    }
}

/// A world whose `[database] url` is `url` instead of its own database.
fn with_url(w: &World, url: &str) {
    let own = w.db().url.clone();
    w.edit_config(|t| {
        assert!(t.contains(&own), "the configuration holds the database URL");
        t.replace(&own, url)
    });
}

#[test]
fn a_refused_connection_is_69() {
    let w = World::initialised(BIN);
    // Port 1 on the loopback: nothing listens, the kernel refuses at once.
    with_url(&w, "postgres://postgres@127.0.0.1:1/ransomeye");
    for path in [&["backup"][..], &["archive"]] {
        let out = run(w.ops().args(path));
        expect_documented(path, &out, 69);
        out.stderr_has("cannot connect to the database")
            .stderr_has("check that PostgreSQL is running");
    }
}

#[test]
fn a_database_that_does_not_exist_is_78() {
    let w = World::initialised(BIN);
    let missing = with_database(&services().database_url, "ransomeye_no_such_database");
    with_url(&w, &missing);
    for path in [&["backup"][..], &["archive"]] {
        let out = run(w.ops().args(path));
        expect_documented(path, &out, 78);
        out.stderr_has("does not exist")
            .stderr_has("fix the database name");
    }
}

#[test]
fn a_backup_of_a_database_without_the_ransomeye_schema_is_78() {
    let w = World::initialised(BIN);
    let empty = TestDb::empty();
    with_url(&w, &empty.url);
    let out = run(w.ops().arg("backup"));
    expect_documented(&["backup"], &out, 78);
    out.stderr_has("does not exist")
        .stderr_has("points at the RansomEye database")
        .stderr_has("older backups are untouched");
    assert!(
        !out.stderr.contains("at line"),
        "the message quotes the server's source position:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("verified archive"),
        "archive's hint in backup:\n{}",
        out.stderr
    );
    assert!(
        w.list("backups").iter().all(|n| n.starts_with('.')),
        "{:?}",
        w.list("backups")
    );
}

/// A login role of this test's own with no privileges beyond PUBLIC's, dropped afterwards.
struct Role {
    name: String,
    admin: TestDb,
}

impl Role {
    /// Creates the role with `attributes` (e.g. `login`).
    fn create(attributes: &str) -> Role {
        // A database of its own to run the statements in; roles are cluster-wide.
        let admin = TestDb::empty();
        let name = format!(
            "ransomeye_role_{}",
            admin.name.trim_start_matches("ransomeye_test_")
        );
        admin.execute(&format!("create role {name} {attributes}"));
        Role { name, admin }
    }

    /// `url` (the test runner's `postgres://USER@…` form) with this role as the user; trust
    /// authentication, so no password.
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
        let (_, host) = rest.split_once('@').expect("DATABASE_URL names its user");
        format!("{scheme}://{}@{host}", self.name)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.admin.execute(&format!(
            "select pg_terminate_backend(pid) from pg_stat_activity where usename = '{0}'; \
             drop role if exists {0}",
            self.name
        ));
    }
}

#[test]
fn a_role_without_privileges_on_the_tables_is_77() {
    let w = World::initialised(BIN);
    let role = Role::create("login");
    with_url(&w, &role.url(&w.db().url));
    let out = run(w.ops().args(["archive", "--days", "30"]));
    expect_documented(&["archive"], &out, 77);
    out.stderr_has("permission denied")
        .stderr_has("lacks a privilege")
        .stderr_has("nothing was deleted that is not in a verified archive");
}

#[test]
fn a_drill_by_a_role_without_createdb_is_77() {
    let w = World::initialised(BIN);
    run(w.ops().arg("backup")).expect_code(0);
    // A drill reads files and the catalog before it creates the scratch database.
    let role = Role::create("login nocreatedb");
    with_url(&w, &role.url(&w.db().url));
    let out = run(w.ops().arg("drill"));
    expect_documented(&["drill"], &out, 77);
    out.stderr_has("permission denied to create database")
        .stderr_has("needs CREATEDB")
        .stderr_has("production was not touched");
}

/// Without an administrator's lock_timeout, a lock held longer than the answer timeout is
/// still a held lock (75, retry later), not a dead server (69).
#[test]
fn a_table_lock_held_past_the_answer_timeout_is_75_not_69() {
    let w = World::initialised(BIN);
    let db = w.db();
    db.execute(
        "insert into audit_logs (created_at, actor, action) \
                select now() - interval '60 days', 'a', 'b' from generate_series(1, 10)",
    );
    w.edit_config(|text| text.replacen("[database]\n", "[database]\nanswer_timeout_secs = 2\n", 1));
    common::block_on(async {
        let mut holder = hold_table_lock(&db.url, "access exclusive").await;
        let out = run(w.ops().args(["archive", "--days", "30"]));
        expect_documented(&["archive"], &out, 75);
        out.stderr_has("lock").stderr_has("rerun later");
        assert!(!out.stderr.contains("did not answer"), "{}", out.stderr);
        sqlx::raw_sql("rollback")
            .execute(&mut holder)
            .await
            .expect("rollback");
    });
    // An administrator's shorter lock_timeout is kept, not lengthened (the test below).
}

#[test]
fn a_table_lock_held_past_the_lock_timeout_is_75() {
    let w = World::initialised(BIN);
    let db = w.db();
    db.execute(
        "insert into audit_logs (created_at, actor, action) \
                select now() - interval '60 days', 'a', 'b' from generate_series(1, 10)",
    );
    // An administrator's lock_timeout: a statement waiting longer for a lock fails (55P03).
    db.execute(&format!(
        "alter database {} set lock_timeout = '300ms'",
        db.name
    ));
    common::block_on(async {
        let mut holder = hold_table_lock(&db.url, "access exclusive").await;
        let out = run(w.ops().args(["archive", "--days", "30"]));
        expect_documented(&["archive"], &out, 75);
        out.stderr_has("lock")
            .stderr_has("rerun later")
            .stderr_has("nothing was deleted that is not in a verified archive");
        sqlx::raw_sql("rollback")
            .execute(&mut holder)
            .await
            .expect("rollback");
    });
}
