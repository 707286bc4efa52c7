//! Snapshots of what the CLI prints: the `--help` of every command and subcommand, and the
//! errors of common failures that need no service. A change in wording or in an exit code is a
//! diff of a transcript under `tests/snapshots/` to review; after an intended change, rewrite
//! them with `SNAPSHOTS=overwrite cargo nextest run --workspace -E 'binary(cli_snapshots)'`.
//!
//! Each transcript is the command, its exit code, and what it printed on stdout and stderr.
//! Error cases run in a directory of their own under `tests/snapshots/worlds/`, so the paths in
//! their messages are relative and the same on every machine; `[..]` in a transcript matches
//! what legitimately differs between machines. The terminal width is fixed, so help is wrapped
//! the same everywhere. Backslashes are compared as they are: they are what makes an example
//! copy-pasteable (trycmd would turn them into slashes).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_ransomeye-ops");

/// One failure that needs no service: transcript name, world directory (under `worlds/`; the
/// directory itself when `None`), environment, arguments.
type ErrorCase = (
    &'static str,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// Failures that need no service.
const ERRORS: &[ErrorCase] = &[
    ("usage-unknown-flag", None, &[], &["backup", "--keep-all"]),
    ("usage-bad-value", None, &[], &["backup", "--keep", "0"]),
    ("usage-unknown-command", None, &[], &["frobnicate"]),
    (
        "usage-missing-argument",
        None,
        &[],
        &["restore", "ransomeye_20261123T020000Z"],
    ),
    (
        "missing-config",
        None,
        &[],
        &["--config", "missing/kernel.toml", "backup", "list"],
    ),
    (
        "missing-config-from-env",
        None,
        &[("RANSOMEYE_CONFIG", "missing/from-env.toml")],
        &["archive", "list"],
    ),
    (
        "config-typo",
        Some("config-typo"),
        &[],
        &["--config", "kernel.toml", "health"],
    ),
    (
        "key-permissions",
        Some("key-permissions"),
        &[],
        &["--config", "kernel.toml", "archive", "verify", "--all"],
    ),
];

fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Runs the binary with `args` in `dir` and returns its transcript.
fn transcript(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1");
    for var in [
        "RANSOMEYE_CONFIG",
        "RANSOMEYE_DATABASE_URL",
        "RANSOMEYE_NATS_URL",
        "RANSOMEYE_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run ransomeye-ops");
    let shown_env: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let mut t = format!(
        "$ {shown_env}ransomeye-ops {}\n? {}\n",
        args.join(" "),
        out.status.code().unwrap_or(-1)
    );
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if !bytes.is_empty() {
            t.push_str(&format!("--- {name}\n{}", String::from_utf8_lossy(bytes)));
        }
    }
    t
}

/// Compares `actual` with the transcript `name` (rewritten with `SNAPSHOTS=overwrite`).
fn check(name: &str, actual: String) {
    let path = snapshots().join(format!("{name}.txt"));
    snapbox::Assert::new()
        .action_env("SNAPSHOTS")
        .normalize_paths(false)
        .eq(actual, snapbox::Data::read_from(&path, None));
}

/// Every command's argument path, from the command-line definition itself: a new command or
/// subcommand gets a snapshot (and fails until its transcript is written and reviewed).
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = vec![Vec::new()];
    walk(&ransomeye_ops::cli::command(), &[], &mut out);
    out
}

#[test]
fn help_of_every_command() {
    for path in command_paths() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let name = std::iter::once("help")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-");
        check(
            &format!("help/{name}"),
            transcript(&snapshots(), &[], &args),
        );
    }
}

#[test]
fn errors_that_need_no_service() {
    ransomeye_testkit::require_root("passes the privilege gate as root for its error cases");
    // Git keeps no file mode but the executable bit: give the key its loose mode here, whatever
    // the checkout's umask made it.
    std::fs::set_permissions(
        snapshots().join("worlds/key-permissions/keys/archive.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod the test key");
    for (name, world, env, args) in ERRORS {
        let dir = match world {
            Some(w) => snapshots().join("worlds").join(w),
            None => snapshots().join("worlds"),
        };
        check(&format!("errors/{name}"), transcript(&dir, env, args));
    }
}
