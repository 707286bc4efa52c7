//! Monitoring conventions (issue 13, item 13): a report that shows a problem exits non-zero,
//! `-q` prints nothing on success, no ANSI colour off a terminal or with `NO_COLOR`, lists are
//! aligned tables. Each test runs the built binary against the real services.

mod common;

use std::process::{Command, Stdio};

use common::{run, TestDb, World, BIN};

/// Takes a backup and returns its name.
fn backup(w: &World) -> String {
    let out = run(w.ops().args(["--json", "backup"]));
    out.expect_code(0);
    out.json()["backup"].as_str().expect("name").to_string()
}

/// The column at which `header` starts in the first line of `table`.
fn column(table: &str, header: &str) -> usize {
    table
        .lines()
        .next()
        .and_then(|l| l.find(header))
        .unwrap_or_else(|| panic!("no {header} column:\n{table}"))
}

#[test]
fn backup_list_is_an_aligned_table_oldest_first_and_a_damaged_backup_exits_65() {
    let w = World::initialised(BIN);
    // Three backups, some within the same second (`…Z-2`), whose names differ in length.
    let names: Vec<String> = (0..3).map(|_| backup(&w)).collect();
    let out = run(w.ops().args(["backup", "list"]));
    out.expect_code(0);
    let table = out.stdout.clone();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows:\n{table}");
    let (snapshot, state) = (column(&table, "SNAPSHOT"), column(&table, "STATE"));
    for (line, name) in lines[1..].iter().zip(&names) {
        assert!(line.starts_with(name.as_str()), "oldest first:\n{table}");
        assert!(
            line[snapshot..].starts_with("20") && line[snapshot - 2..snapshot] == *"  ",
            "SNAPSHOT column aligned:\n{table}"
        );
        assert_eq!(&line[state..], "ok", "STATE column aligned:\n{table}");
    }

    // The middle one loses a byte of its files bundle: shown as damaged, and the list fails.
    let files = w.path("backups").join(format!("{}.files.enc", names[1]));
    let mut bytes = std::fs::read(&files).expect("read");
    bytes.pop();
    std::fs::write(&files, bytes).expect("write");
    let out = run(w.ops().args(["backup", "list"]));
    out.expect_code(65)
        .stderr_has("failed the quick check")
        .stderr_has(&names[1]);
    let damaged = out.stdout.lines().nth(2).expect("second row");
    assert!(
        damaged.starts_with(names[1].as_str()) && damaged[state..].starts_with("damaged"),
        "{}",
        out.stdout
    );
    let json = run(w.ops().args(["--json", "backup", "list"]));
    json.expect_code(65);
    let rows = serde_json::Deserializer::from_str(&json.stdout)
        .into_iter::<serde_json::Value>()
        .next()
        .expect("rows")
        .expect("json");
    assert!(
        rows[1]["state"]
            .as_str()
            .expect("state")
            .starts_with("damaged"),
        "{rows}"
    );
}

#[test]
fn verify_all_with_no_backup_to_verify_exits_66() {
    let w = World::initialised(BIN);
    run(w.ops().args(["verify", "--all"]))
        .expect_code(66)
        .stderr_has("nothing to verify");
    backup(&w);
    run(w.ops().args(["verify", "--all"])).expect_code(0);
}

#[test]
fn rotate_keys_status_exits_with_the_problem_it_shows() {
    let w = World::initialised(BIN);
    run(w.ops().args(["rotate-keys", "status"])).expect_code(0);
    std::fs::remove_file(w.path("keys/signing.key")).expect("lose the signing key");
    let out = run(w.ops().args(["rotate-keys", "status"]));
    out.expect_code(77).stderr_has("error: active key file");
    assert!(out.stdout.contains("PROBLEM"), "{}", out.stdout);
    let json = run(w.ops().args(["--json", "rotate-keys", "status"]));
    json.expect_code(77);
    assert!(
        json.json()["active_key_error"].is_string(),
        "{}",
        json.stdout
    );
}

#[test]
fn quiet_prints_nothing_on_success_but_errors_and_json_still() {
    let w = World::initialised(BIN);
    w.db().execute(
        "insert into audit_logs (created_at, actor, action, target, details) \
         select now() - interval '40 days', 'u', 'login', 'h', '{}'::jsonb from generate_series(1, 50)",
    );
    for args in [
        &["-q", "backup"][..],
        &["-q", "backup", "list"],
        &["-q", "verify", "--all"],
        &["-q", "rotate-keys", "status"],
        &["-q", "archive", "--days", "30"],
        &["-q", "archive", "list"],
        &["-q", "archive", "verify", "--all"],
    ] {
        let out = run(w.ops().args(args));
        out.expect_code(0);
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("", ""),
            "{args:?}"
        );
    }
    // Without -q the same commands report.
    assert!(!run(w.ops().args(["backup", "list"])).stdout.is_empty());
    // What was asked for explicitly is still printed.
    let json = run(w.ops().args(["-q", "--json", "backup", "list"]));
    json.expect_code(0);
    assert_eq!(json.json().as_array().expect("rows").len(), 1);
    // Failures are never quiet.
    run(w.ops().args(["-q", "verify", "ransomeye_20000101T000000Z"]))
        .expect_code(66)
        .stderr_has("error:");
}

/// `cmd`'s stderr as written to a file (not a terminal).
fn stderr_in_a_file(w: &World, cmd: &mut Command) -> String {
    let path = w.path("stderr.log");
    let file = std::fs::File::create(&path).expect("create");
    let status = cmd
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .expect("run");
    assert!(status.success(), "{cmd:?}");
    std::fs::read_to_string(&path).expect("read")
}

/// `cmd` run on a pseudo-terminal by script(1), with stdout and stderr both on it.
fn on_a_terminal(w: &World, args: &str, no_color: bool) -> String {
    let line = format!("{BIN} --config {} {args}", w.config.display());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    cmd.env_remove("NO_COLOR").env("RANSOMEYE_LOG", "debug");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = run(&mut cmd);
    out.expect_code(0);
    out.stdout
}

/// Whether `text` holds an ANSI colour (SGR) sequence, `ESC [ digits;… m`. Cursor movement of a
/// progress spinner on a terminal is not colour.
fn has_colour(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|rest| {
        let params = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
        params.starts_with('m')
    })
}

#[test]
fn log_lines_carry_colour_only_on_a_terminal_without_no_color() {
    let w = World::initialised(BIN);
    let logged = stderr_in_a_file(
        &w,
        w.ops()
            .env_remove("NO_COLOR")
            .env("RANSOMEYE_LOG", "debug")
            .arg("backup"),
    );
    assert!(logged.contains("DEBUG"), "debug log lines:\n{logged}");
    assert!(
        !logged.contains('\x1b'),
        "escape codes in a file:\n{logged}"
    );
    assert!(has_colour("\x1b[2mx\x1b[0m") && !has_colour("\r\x1b[2Kx"));

    // The same on a terminal: coloured, unless NO_COLOR is set.
    let coloured = on_a_terminal(&w, "backup", false);
    assert!(has_colour(&coloured), "colour on a terminal:\n{coloured}");
    let plain = on_a_terminal(&w, "backup", true);
    assert!(plain.contains("DEBUG"), "{plain}");
    assert!(!has_colour(&plain), "NO_COLOR honoured:\n{plain}");
}

#[test]
fn restore_and_drill_show_progress_with_the_total_only_on_a_terminal() {
    let w = World::initialised(BIN);
    let name = backup(&w);
    let restore = |target: &TestDb| format!("restore {name} --target-database-url {}", target.url);
    // On a terminal: a bar with the dump's total (bytes done / total).
    let target = TestDb::empty();
    let shown = on_a_terminal(&w, &restore(&target), false);
    assert!(
        shown.contains("restoring") && shown.contains("B/"),
        "progress with a total:\n{shown}"
    );
    let shown = on_a_terminal(&w, "drill", false);
    assert!(
        shown.contains("restoring into the scratch database") && shown.contains("B/"),
        "{shown}"
    );
    // Not with --json, even on a terminal.
    let target = TestDb::empty();
    let json = on_a_terminal(&w, &format!("--json {}", restore(&target)), false);
    assert!(!json.contains("restoring"), "{json}");
    // Not when stderr is not a terminal.
    let target = TestDb::empty();
    let piped = run(w
        .ops()
        .args(["restore", &name, "--target-database-url", &target.url]));
    piped.expect_code(0);
    assert!(!piped.stderr.contains("restoring"), "{}", piped.stderr);
    let piped = run(w.ops().arg("drill"));
    piped.expect_code(0);
    assert!(!piped.stderr.contains("restoring"), "{}", piped.stderr);
}
