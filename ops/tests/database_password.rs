//! A password in the database URL never reaches a command line, a log, an error or JSON,
//! whatever its spelling: `user:pass@host` (percent-encoded), `?password=`, `PGPASSWORD` already
//! set, or a `.pgpass` file. `pg_dump` and `pg_restore` are wrapped by scripts that record the
//! `/proc/<pid>/cmdline` and `/proc/<pid>/environ` each child really got, then exec the real
//! program; every output stream of every command is searched too.
//!
//! The test server trusts local connections, so any password logs in; what is checked is where
//! the password travels, which does not depend on the server asking for it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, Run, TestDb, World, BIN};

/// Wrappers for `pg_dump` and `pg_restore` in `dir/bin`, logging into `dir/log`.
fn wrapped_pg_tools(dir: &Path) -> PathBuf {
    let real = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|d| d.join("pg_dump").exists())
        .unwrap_or_else(|| {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .expect("PostgreSQL client programs under /usr/lib/postgresql")
                .map(|e| e.expect("entry").path().join("bin"))
                .filter(|d| d.join("pg_dump").exists())
                .collect();
            dirs.sort();
            dirs.pop().expect("a pg_dump to wrap")
        });
    let bin = dir.join("bin");
    let log = dir.join("log");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::fs::create_dir_all(&log).expect("mkdir log");
    for tool in ["pg_dump", "pg_restore"] {
        let script = format!(
            "#!/bin/sh\n\
             tr '\\0' '\\n' < /proc/$$/cmdline > {log}/{tool}.$$.cmdline\n\
             tr '\\0' '\\n' < /proc/$$/environ > {log}/{tool}.$$.environ\n\
             exec {real} \"$@\"\n",
            log = log.display(),
            real = real.join(tool).display(),
        );
        let path = bin.join(tool);
        std::fs::write(&path, script).expect("write wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

/// Every `(file name, contents)` the wrappers logged.
fn child_logs(dir: &Path) -> Vec<(String, String)> {
    let mut logs: Vec<(String, String)> = std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).expect("read log"),
            )
        })
        .collect();
    logs.sort();
    logs
}

/// Asserts that no output of `run` holds any of `secrets`.
#[track_caller]
fn assert_clean(what: &str, out: &Run, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{what} printed the password {secret:?}\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
    }
}

/// A world whose configuration reaches its database through `spell(its plain URL)` and whose pg
/// tools are the logging wrappers.
fn world_with(spell: impl Fn(&str) -> String) -> World {
    let w = World::initialised(BIN);
    let url = spell(&w.db().url);
    w.db()
        .execute("insert into audit_logs (created_at, actor, action, target) select now() - g * interval '40 days', 'u', 'login', 'h' from generate_series(1, 50) g");
    let bin = wrapped_pg_tools(&w.path("pgtools"));
    let plain = w.db().url.clone();
    w.edit_config(|text| {
        let text = text.replace(&format!("url = {plain:?}"), &format!("url = {url:?}"));
        text.replace(
            "include = []\n",
            &format!(
                "include = []\npg_bin_dir = {:?}\n",
                bin.display().to_string()
            ),
        )
    });
    w
}

/// Runs every command that connects to the database with `-vvv` and `--json`, asserting each
/// succeeds and prints none of `secrets`.
fn every_command_stays_quiet(w: &World, target: &str, env: &[(&str, &str)], secrets: &[&str]) {
    let ops = |args: &[&str]| {
        let mut cmd = w.ops();
        cmd.args(["-vvv", "--json"])
            .args(args)
            .env("RANSOMEYE_LOG", "trace");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    let out = ops(&["archive", "--days", "30"]);
    assert_clean("archive", out.expect_code(0), secrets);
    let out = ops(&["backup"]);
    assert_clean("backup", out.expect_code(0), secrets);
    let name = w.backups().into_iter().next().expect("a backup");
    let out = ops(&["verify", "--all"]);
    assert_clean("verify", out.expect_code(0), secrets);
    let out = ops(&["drill"]);
    assert_clean("drill", out.expect_code(0), secrets);
    let out = ops(&["restore", &name, "--target-database-url", target]);
    assert_clean("restore", out.expect_code(0), secrets);
    let out = ops(&["health"]);
    assert_clean("health", &out, secrets);
}

/// The password is on no child's command line, and in a child's environment only as
/// `PGPASSWORD` (when the URL carried it; `expect_env` is then its value).
#[track_caller]
fn children_got_it_only_by_environment(w: &World, secrets: &[&str], expect_env: Option<&str>) {
    let logs = child_logs(&w.path("pgtools"));
    assert!(
        logs.iter()
            .any(|(n, _)| n.starts_with("pg_dump.") && n.ends_with(".cmdline"))
            && logs.iter().any(|(n, _)| n.starts_with("pg_restore.")),
        "the wrappers ran: {:?}",
        logs.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (name, text) in &logs {
        for secret in secrets {
            if name.ends_with(".cmdline") {
                assert!(!text.contains(secret), "{name} holds the password:\n{text}");
            } else {
                for line in text.lines().filter(|l| l.contains(secret)) {
                    assert_eq!(
                        Some(line),
                        expect_env.map(|p| format!("PGPASSWORD={p}")).as_deref(),
                        "{name} holds the password outside PGPASSWORD"
                    );
                }
            }
        }
    }
    if let Some(password) = expect_env {
        let want = format!("PGPASSWORD={password}");
        let connecting: Vec<_> = logs
            .iter()
            .filter(|(n, t)| n.ends_with(".environ") && t.contains("PGAPPNAME="))
            .collect();
        assert!(!connecting.is_empty(), "some child connected");
        for (name, text) in connecting {
            assert!(text.lines().any(|l| l == want), "{name} lacks {want}");
        }
    }
}

#[test]
fn a_password_in_the_user_info_reaches_children_only_through_their_environment() {
    let spell = |url: &str| {
        let spelled = url.replacen("://postgres@", "://postgres:S3cr%40t-userinfo%2Fx@", 1);
        assert_ne!(spelled, url, "the test URL names user postgres: {url}");
        spelled
    };
    let w = world_with(spell);
    let target = TestDb::empty();
    let target_url = spell(&target.url);
    let secrets = ["S3cr@t-userinfo/x", "S3cr%40t-userinfo%2Fx", "S3cr"];
    every_command_stays_quiet(&w, &target_url, &[], &secrets);
    children_got_it_only_by_environment(&w, &secrets, Some("S3cr@t-userinfo/x"));
}

#[test]
fn a_password_parameter_reaches_children_only_through_their_environment() {
    let w = world_with(|url| format!("{url}?sslmode=disable&password=Pw-in-query%26more"));
    let target = TestDb::empty();
    let target_url = format!("{}?password=Pw-in-query%26more", target.url);
    let secrets = ["Pw-in-query&more", "Pw-in-query%26more", "Pw-in"];
    every_command_stays_quiet(&w, &target_url, &[], &secrets);
    children_got_it_only_by_environment(&w, &secrets, Some("Pw-in-query&more"));
}

#[test]
fn pgpassword_and_pgpass_from_the_environment_are_never_printed() {
    let w = world_with(str::to_string);
    let target = TestDb::empty();
    let pgpass = w.path("pgpass");
    std::fs::write(&pgpass, "*:*:*:*:Pgpass-file-secret\n").expect("write pgpass");
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let pgpass = pgpass.display().to_string();
    let secrets = ["Env-secret-PW", "Pgpass-file-secret"];
    every_command_stays_quiet(
        &w,
        &target.url,
        &[("PGPASSWORD", "Env-secret-PW"), ("PGPASSFILE", &pgpass)],
        &secrets,
    );
    // The tool adds nothing: a PGPASSWORD the operator set is inherited as it is.
    children_got_it_only_by_environment(&w, &["Pgpass-file-secret"], None);
}

#[test]
fn errors_about_an_unreachable_or_invalid_url_never_repeat_the_password() {
    let w = World::initialised(BIN);
    for url in [
        "postgres://postgres:Unreach-PW@127.0.0.1:1/x",
        "postgres://postgres@127.0.0.1:1/x?password=Unreach-PW",
    ] {
        let out = run(w
            .ops()
            .args(["--json", "backup"])
            .env("RANSOMEYE_DATABASE_URL", url));
        out.expect_code(69);
        assert_clean("backup against a closed port", &out, &["Unreach-PW"]);
        assert!(out.stderr.contains("127.0.0.1:1"), "{}", out.stderr);
    }
    let out = run(w.ops().args([
        "restore",
        "ransomeye_20260101T000000Z",
        "--target-database-url",
        "postgres://u:Bad-url-PW@[not-an-ip/x",
    ]));
    assert_clean("restore with an invalid target URL", &out, &["Bad-url-PW"]);
    out.expect_code(64).stderr_has("--target-database-url");
}
