//! The CLI shell: help for everyone, the privilege gate, usage and configuration errors.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::{admin_gid, require_root, run, PublicBinary, World, BIN, NOBODY};

/// What the privilege tests do that needs root.
const NEEDS_ROOT: &str = "switches users";

#[test]
fn help_lists_every_working_command_with_exit_codes() {
    let out = run(Command::new(BIN).arg("--help"));
    out.expect_code(0);
    for cmd in ["init", "decrypt", "health", "completions", "man"] {
        assert!(
            out.stdout.contains(cmd),
            "--help lacks {cmd}:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("Exit codes"), "{}", out.stdout);
    for cmd in ["init", "decrypt", "health", "completions", "man"] {
        let sub = run(Command::new(BIN).args([cmd, "--help"]));
        sub.expect_code(0);
        assert!(
            sub.stdout.contains("Example"),
            "{cmd} --help lacks an example"
        );
        assert!(
            sub.stdout.contains("Exit codes"),
            "{cmd} --help lacks its exit codes"
        );
        assert!(
            sub.stdout.contains("Touches"),
            "{cmd} --help does not say what it touches"
        );
    }
}

#[test]
fn help_version_completions_and_man_work_for_an_unprivileged_user() {
    require_root(NEEDS_ROOT);
    let bin = PublicBinary::new(BIN);
    for args in [
        &["--help"][..],
        &["--version"],
        &["completions", "bash"],
        &["man"],
    ] {
        let out = run(bin.command().args(args).uid(NOBODY).gid(NOBODY));
        out.expect_code(0);
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    }
}

#[test]
fn unprivileged_user_is_denied_before_anything_is_touched() {
    require_root(NEEDS_ROOT);
    let bin = PublicBinary::new(BIN);
    let w = World::empty(BIN);
    w.open_to_others();
    let out = run(w
        .init_command(
            w.ops_with(bin.command()),
            "postgres://x@127.0.0.1/x",
            "nats://127.0.0.1:1",
        )
        .uid(NOBODY)
        .gid(NOBODY));
    out.expect_code(77)
        .stderr_has("Permission Denied")
        .stderr_has("ransomeye-admin");
    assert!(w.list("").is_empty(), "denied run created {:?}", w.list(""));

    // Denied before reading the configuration: a missing config would otherwise be exit 78.
    let out = run(bin
        .command()
        .args(["--config", "/nonexistent/kernel.toml", "health"])
        .uid(NOBODY)
        .gid(NOBODY));
    out.expect_code(77).stderr_has("Permission Denied");
}

#[test]
fn member_of_ransomeye_admin_is_allowed() {
    require_root(NEEDS_ROOT);
    let bin = PublicBinary::new(BIN);
    let w = World::initialised(BIN);
    w.open_to_others();
    // init made the config 0640 and the directories 2770, group ransomeye-admin.
    let out = run(w
        .ops_with(bin.command())
        .args(["--json", "health", "--timeout", "5"])
        .uid(NOBODY)
        .gid(admin_gid()));
    // Any Nagios status (0-3) means the gate let the member through; 77 would mean it did not.
    assert!(
        (0..=3).contains(&out.code),
        "admin member should run health: {out:?}"
    );
    assert_eq!(out.json()["checks"].as_array().map(Vec::len), Some(4));
}

#[test]
fn usage_errors_exit_64() {
    run(Command::new(BIN).arg("no-such-command")).expect_code(64);
    run(Command::new(BIN).args(["health", "--timeout", "soon"])).expect_code(64);
    run(&mut Command::new(BIN)).expect_code(64);
}

#[test]
fn missing_config_exits_78_naming_the_path_and_how_it_was_chosen() {
    let out = run(Command::new(BIN)
        .args(["health"])
        .env("RANSOMEYE_CONFIG", "/nonexistent/from-env.toml"));
    out.expect_code(78)
        .stderr_has("/nonexistent/from-env.toml")
        .stderr_has("RANSOMEYE_CONFIG")
        .stderr_has("hint:");
}

#[test]
fn config_typo_exits_78_naming_file_line_and_key() {
    let w = World::initialised(BIN);
    w.edit_config(|t| t.replace("retention_days = 30", "retention_dayz = 30"));
    let line = std::fs::read_to_string(&w.config)
        .expect("config")
        .lines()
        .position(|l| l.contains("retention_dayz"))
        .expect("typo line")
        + 1;
    let out = run(w.ops().arg("health"));
    out.expect_code(78)
        .stderr_has(&format!("{}:{line}:", w.config.display()))
        .stderr_has("retention_dayz");
}

#[test]
fn mistyped_value_exits_78() {
    let w = World::initialised(BIN);
    w.edit_config(|t| t.replace("retention_days = 30", "retention_days = \"thirty\""));
    run(w.ops().arg("health"))
        .expect_code(78)
        .stderr_has("retention_days");
}

#[test]
fn json_errors_are_machine_readable_too() {
    let out = run(Command::new(BIN).args(["--json", "--config", "/nonexistent/k.toml", "health"]));
    out.expect_code(78);
    let v = out.json();
    assert_eq!(v["status"], "error");
    assert_eq!(v["exit_code"], 78);
}

#[test]
fn a_stdout_closed_by_its_reader_ends_the_command_quietly_with_its_own_exit_code() {
    // A world without services: relative paths, no signing key (status reports that).
    let world = common::repo_root().join("ops/tests/snapshots/worlds/key-permissions");
    for args in [
        // Written in one piece at the top level.
        &["completions", "bash"][..],
        // Written line by line (`Context::say`).
        &["--config", "kernel.toml", "rotate-keys", "status"],
        // Written as JSON.
        &["--config", "kernel.toml", "--json", "rotate-keys", "status"],
    ] {
        let open = run(Command::new(BIN).args(args).current_dir(&world));
        // A pipe whose reader is gone before the first write: every write fails with EPIPE.
        let (reader, writer) = nix::unistd::pipe().expect("pipe");
        drop(reader);
        let closed = run(Command::new(BIN)
            .args(args)
            .current_dir(&world)
            .stdout(std::process::Stdio::from(writer)));
        assert!(!open.stdout.is_empty(), "{args:?} printed nothing");
        // The reader stopped reading: a quiet 0 (whatever the report would have said, e.g.
        // `rotate-keys status` here shows a key problem and exits 77 when read to the end).
        assert_eq!(closed.code, 0, "{args:?}: {closed:?}");
        assert_eq!(
            closed.stderr, "",
            "{args:?} complained about the closed stdout"
        );
    }
}
