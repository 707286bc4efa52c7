//! `logs archive`, `logs verify`, `logs cat`: every original either in place or in a verified
//! archive, whatever happens; the exact bytes back; each candidate rule.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{run, stdout_bytes, World, BIN};

const DAY: u64 = 86_400;

/// A world whose configuration has `[logs] dirs = [<world>/logs]` (plus `extra` lines).
fn world_with(extra: &str) -> World {
    let w = World::initialised(BIN);
    std::fs::create_dir(w.path("logs")).expect("mkdir logs");
    let dir = w.path("logs");
    w.edit_config(|t| {
        format!(
            "{t}\n[logs]\ndirs = [{:?}]\n{extra}\n",
            dir.display().to_string()
        )
    });
    w
}

/// Writes `logs/<name>` with `bytes` and an mtime `days_old` days ago.
fn log(w: &World, name: &str, bytes: &[u8], days_old: u64) -> PathBuf {
    let path = w.path(&format!("logs/{name}"));
    std::fs::write(&path, bytes).expect("write log");
    age(&path, days_old * DAY);
    path
}

fn age(path: &Path, secs: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .expect("set mtime");
}

/// Log-like text, different for each seed.
fn text(seed: u32, lines: u32) -> Vec<u8> {
    (0..lines)
        .flat_map(|i| {
            format!(
                "2026-11-{:02}T10:00:{:02}Z core[{}]: event {} seed {seed} value {}\n",
                i % 28 + 1,
                i % 60,
                1000 + i % 7,
                i,
                i.wrapping_mul(2_654_435_761) ^ seed
            )
            .into_bytes()
        })
        .collect()
}

/// Incompressible bytes (a `.gz` is stored as it is).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn cat(w: &World, archive: &str) -> Vec<u8> {
    stdout_bytes(
        w.ops()
            .args(["logs", "cat"])
            .arg(w.path(&format!("logs/archive/{archive}"))),
    )
}

/// Non-temp names in logs/archive.
fn archive_listing(w: &World) -> Vec<String> {
    w.list("logs/archive")
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn temp_files(w: &World) -> Vec<String> {
    w.list("logs/archive")
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[test]
fn archive_stores_each_rotation_verified_deletes_it_and_cat_gives_the_exact_bytes() {
    let w = world_with("");
    let live = log(&w, "core.log", &text(0, 100), 90);
    let one = text(1, 20_000);
    let gz = noise(300_000);
    log(&w, "core.log.1", &one, 40);
    log(&w, "core.log.2.gz", &gz, 50);
    let recent = log(&w, "core.log-20261130", &text(3, 10), 2);
    let empty = log(&w, "empty.log.9", b"", 45);

    let out = run(w.ops().args(["--json", "logs", "archive"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["archived_files"], 3, "{report}");
    assert_eq!(
        report["archived_bytes"],
        (one.len() + gz.len()) as u64,
        "{report}"
    );
    assert_eq!(
        archive_listing(&w),
        [
            "core.log.1.zst.enc",
            "core.log.1.zst.enc.entry.json",
            "core.log.2.gz.enc",
            "core.log.2.gz.enc.entry.json",
            "empty.log.9.zst.enc",
            "empty.log.9.zst.enc.entry.json",
        ]
    );
    assert!(live.exists(), "the live log is never touched");
    assert!(recent.exists(), "a log younger than the retention stays");
    assert!(!empty.exists() && !w.path("logs/core.log.1").exists());
    assert!(!w.path("logs/core.log.2.gz").exists());
    // Compressed: the text shrank.
    let archived = std::fs::metadata(w.path("logs/archive/core.log.1.zst.enc"))
        .expect("archive")
        .len();
    assert!(archived < one.len() as u64 / 4, "{archived} bytes");

    assert!(cat(&w, "core.log.1.zst.enc") == one);
    assert!(
        cat(&w, "core.log.2.gz.enc") == gz,
        "the .gz bytes, not recompressed"
    );
    assert!(cat(&w, "empty.log.9.zst.enc").is_empty());
    // The entry names the archive too.
    assert!(cat(&w, "core.log.1.zst.enc.entry.json") == one);
    let out = run(w.ops().args(["--json", "logs", "verify"]));
    out.expect_code(0);
    assert_eq!(out.json().as_array().expect("list").len(), 3);
    // A second run finds nothing to do.
    let out = run(w.ops().args(["--json", "logs", "archive"]));
    out.expect_code(0);
    assert_eq!(out.json()["archived_files"], 0);
}

#[test]
fn unencrypted_archives_are_plain_zstd_that_zstd_itself_decodes() {
    let w = world_with("encrypt = false");
    let one = text(7, 5_000);
    log(&w, "api.log.1", &one, 31);
    run(w.ops().args(["logs", "archive"])).expect_code(0);
    assert_eq!(
        archive_listing(&w),
        ["api.log.1.zst", "api.log.1.zst.entry.json"]
    );
    let out = std::process::Command::new("zstd")
        .args(["-d", "-c"])
        .arg(w.path("logs/archive/api.log.1.zst"))
        .output()
        .expect("zstd is installed (scripts/test installs it)");
    assert!(out.status.success());
    assert!(out.stdout == one);
    assert!(cat(&w, "api.log.1.zst") == one);
    run(w.ops().args(["logs", "verify"])).expect_code(0);
}

#[test]
fn symlinks_open_files_recent_files_and_fifos_are_skipped_with_their_reason() {
    let w = world_with("");
    // A canary outside the log directory, old, behind a symlink that matches the pattern.
    let canary = w.path("canary.log.1");
    std::fs::write(&canary, b"do not archive me").expect("canary");
    age(&canary, 90 * DAY);
    let link = w.path("logs/link.log.1");
    std::os::unix::fs::symlink(&canary, &link).expect("symlink");
    // Held open by this test process.
    let held = log(&w, "held.log.1", &text(1, 100), 40);
    let _open = std::fs::File::open(&held).expect("hold open");
    // Modified seconds ago (retention 0 makes it old enough otherwise).
    let fresh = w.path("logs/fresh.log.1");
    std::fs::write(&fresh, b"just written").expect("fresh");
    nix::unistd::mkfifo(&w.path("logs/pipe.log.1"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let due = log(&w, "due.log.1", &text(2, 100), 40);

    let out = run(w
        .ops()
        .args(["--json", "logs", "archive", "--retention-days", "0"]));
    out.expect_code(0);
    let report = out.json();
    let skipped: BTreeMap<String, String> = report["dirs"][0]["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            (
                Path::new(s["path"].as_str().expect("path"))
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                s["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    assert_eq!(
        skipped["link.log.1"], "symlink (never followed)",
        "{report}"
    );
    assert_eq!(skipped["held.log.1"], "open in a process", "{report}");
    assert_eq!(
        skipped["fresh.log.1"], "modified within the last minute",
        "{report}"
    );
    assert_eq!(skipped["pipe.log.1"], "not a regular file", "{report}");
    assert_eq!(report["archived_files"], 1, "{report}");
    assert!(!due.exists());
    assert!(held.exists() && fresh.exists());
    assert!(link
        .symlink_metadata()
        .expect("link")
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read(&canary).expect("canary"),
        b"do not archive me"
    );
    assert_eq!(
        archive_listing(&w),
        ["due.log.1.zst.enc", "due.log.1.zst.enc.entry.json"]
    );
}

#[test]
fn an_archive_that_reads_back_differently_keeps_its_original_and_exits_65() {
    let w = world_with("");
    let one = text(1, 3_000);
    let path = log(&w, "core.log.1", &one, 40);
    let out = run(w
        .ops()
        .args(["logs", "archive"])
        .env("RANSOMEYE_FAILPOINT", "logs-damage-temp"));
    out.expect_code(65)
        .stderr_has("did not read back as written; their originals are kept");
    assert_eq!(std::fs::read(&path).expect("original kept"), one);
    assert!(
        w.list("logs/archive")
            .iter()
            .all(|n| n.starts_with(".logs-archive.lock")),
        "nothing but the lock: {:?}",
        w.list("logs/archive")
    );
    run(w.ops().args(["logs", "archive"])).expect_code(0);
    assert!(!path.exists());
    assert!(cat(&w, "core.log.1.zst.enc") == one);
}

#[test]
fn a_damaged_archive_or_entry_fails_verify_and_cat_with_65_naming_it() {
    let w = world_with("");
    log(&w, "a.log.1", &text(1, 5_000), 40);
    log(&w, "b.log.1", &text(2, 5_000), 40);
    log(&w, "c.log.1", &text(3, 5_000), 40);
    run(w.ops().args(["logs", "archive"])).expect_code(0);
    run(w.ops().args(["logs", "verify"])).expect_code(0);

    // A flipped byte in an archive.
    let a = w.path("logs/archive/a.log.1.zst.enc");
    let mut bytes = std::fs::read(&a).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&a, &bytes).expect("write");
    run(w.ops().args(["logs", "verify"]))
        .expect_code(65)
        .stderr_has("a.log.1.zst.enc");
    run(w.ops().args(["logs", "verify"]).arg(&a)).expect_code(65);
    run(w.ops().args(["logs", "cat"]).arg(&a)).expect_code(65);
    run(w
        .ops()
        .args(["logs", "verify"])
        .arg(w.path("logs/archive/b.log.1.zst.enc")))
    .expect_code(0);

    // An entry whose recorded size was edited: its signature fails.
    let entry = w.path("logs/archive/b.log.1.zst.enc.entry.json");
    let text = std::fs::read_to_string(&entry).expect("entry");
    std::fs::write(&entry, text.replacen("\"size\": ", "\"size\": 1", 1)).expect("write");
    run(w
        .ops()
        .args(["logs", "verify"])
        .arg(w.path("logs/archive/b.log.1.zst.enc")))
    .expect_code(65)
    .stderr_has("signature");

    // An archive without its entry is an orphan, never taken for an archive.
    std::fs::remove_file(w.path("logs/archive/c.log.1.zst.enc.entry.json")).expect("rm");
    let out = run(w.ops().args(["--json", "logs", "verify"]));
    out.expect_code(65);
    assert!(
        out.stdout.contains("archive without an index entry"),
        "{}",
        out.stdout
    );
    run(w
        .ops()
        .args(["logs", "verify"])
        .arg(w.path("logs/archive/nope.zst.enc")))
    .expect_code(66);
}

#[test]
fn archive_retention_expires_only_after_every_remaining_archive_verified() {
    let w = world_with("");
    let mid = text(2, 2_000);
    log(&w, "old.log.1", &text(1, 2_000), 400);
    log(&w, "mid.log.1", &mid, 40);
    let out = run(w.ops().args(["--json", "logs", "archive"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["archived_files"], 2, "{report}");
    assert_eq!(report["expired_files"], 1, "{report}");
    assert!(
        report["freed_bytes"].as_u64().expect("freed") > 0,
        "{report}"
    );
    assert_eq!(
        archive_listing(&w),
        ["mid.log.1.zst.enc", "mid.log.1.zst.enc.entry.json"]
    );

    // Another old log while the archive that stays is damaged: nothing expires.
    log(&w, "older.log.1", &text(3, 2_000), 500);
    let staying = w.path("logs/archive/mid.log.1.zst.enc");
    let mut bytes = std::fs::read(&staying).expect("read");
    let n = bytes.len();
    bytes[n - 5] ^= 1;
    std::fs::write(&staying, &bytes).expect("write");
    run(w.ops().args(["logs", "archive"]))
        .expect_code(65)
        .stderr_has("none was expired");
    assert!(w.path("logs/archive/older.log.1.zst.enc").exists());
    assert!(
        !w.path("logs/older.log.1").exists(),
        "archiving itself went on"
    );
}

#[test]
fn dry_run_changes_nothing_and_says_what_it_would_do() {
    let w = world_with("");
    log(&w, "a.log.1", &text(1, 1_000), 40);
    log(&w, "b.log.1", &text(2, 1_000), 400);
    let before = common::tree(&w.path("logs"));
    let out = run(w.ops().args(["--json", "logs", "archive", "--dry-run"]));
    out.expect_code(0);
    assert_eq!(out.json()["archived_files"], 2);
    assert_eq!(
        common::tree(&w.path("logs")),
        before,
        "no lock, no archive dir"
    );
    let out = run(w.ops().args(["logs", "archive", "--dry-run"]));
    out.expect_code(0);
    assert!(out.stdout.contains("would archive"), "{}", out.stdout);
}

#[test]
fn a_second_run_while_one_holds_the_lock_exits_75() {
    let w = world_with("");
    log(&w, "a.log.1", &text(1, 1_000), 40);
    let hold = tempfile::tempdir().expect("hold dir");
    let mut first = common::Running::start(
        w.ops()
            .args(["logs", "archive"])
            .env("RANSOMEYE_HOLD", "logs-locked")
            .env("RANSOMEYE_HOLD_DIR", hold.path()),
    );
    first.wait_for("hold point logs-locked");
    run(w.ops().args(["logs", "archive"]))
        .expect_code(75)
        .stderr_has("another logs archive is running");
    std::fs::write(hold.path().join("logs-locked.go"), b"").expect("go");
    first.finish().expect_code(0);
    assert!(!w.path("logs/a.log.1").exists());
}

#[test]
fn without_log_dirs_the_commands_exit_78() {
    let w = World::initialised(BIN);
    run(w.ops().args(["logs", "archive"]))
        .expect_code(78)
        .stderr_has("[logs] dirs");
    run(w.ops().args(["logs", "verify"])).expect_code(78);
}

/// The originals of the crash tests: name → bytes.
fn crash_originals() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a.log.1", text(1, 4_000)),
        ("b.log.2.gz", noise(50_000)),
        ("c.log-20261001", text(3, 4_000)),
    ]
}

/// Every original either in place with its bytes, or in a committed, indexed archive that
/// verifies and decodes to its bytes; temp files are not archives.
fn assert_nothing_lost(w: &World, originals: &[(&str, Vec<u8>)], during: &str) {
    for (name, bytes) in originals {
        let path = w.path(&format!("logs/{name}"));
        if path.exists() {
            assert!(
                std::fs::read(&path).expect("read") == *bytes,
                "{during}: {name} changed"
            );
            continue;
        }
        let archive = archive_listing(w)
            .into_iter()
            .find(|a| a.starts_with(name) && !a.ends_with(".entry.json"))
            .unwrap_or_else(|| panic!("{during}: {name} is neither in place nor archived"));
        assert!(
            archive_listing(w).contains(&format!("{archive}.entry.json")),
            "{during}: {archive} has no entry"
        );
        run(w
            .ops()
            .args(["logs", "verify"])
            .arg(w.path(&format!("logs/archive/{archive}"))))
        .expect_code(0);
        assert!(
            cat(w, &archive) == *bytes,
            "{during}: {archive} decodes differently"
        );
    }
}

#[test]
fn a_kill_at_every_step_loses_nothing_and_the_next_run_completes() {
    for failpoint in [
        "logs-temp-synced",
        "logs-read-back",
        "logs-entry-written",
        "logs-archive-committed",
        "logs-original-removed",
    ] {
        let w = world_with("");
        let originals = crash_originals();
        for (name, bytes) in &originals {
            log(&w, name, bytes, 40);
        }
        let out = run(w
            .ops()
            .args(["logs", "archive"])
            .env("RANSOMEYE_FAILPOINT", failpoint));
        assert_eq!(
            out.code, -1,
            "{failpoint} must kill the run: {}",
            out.stderr
        );
        assert_nothing_lost(&w, &originals, failpoint);

        let out = run(w.ops().args(["--json", "logs", "archive"]));
        out.expect_code(0);
        for (name, _) in &originals {
            assert!(
                !w.path(&format!("logs/{name}")).exists(),
                "{failpoint}: {name} left"
            );
        }
        assert_nothing_lost(&w, &originals, failpoint);
        assert_eq!(temp_files(&w), Vec::<String>::new(), "{failpoint}");
        run(w.ops().args(["logs", "verify"])).expect_code(0);
    }
}

#[test]
fn a_kill_during_expiry_is_finished_by_the_next_run() {
    for failpoint in ["logs-expire-entry-moved", "logs-expire-archive-removed"] {
        let w = world_with("");
        let keep = text(2, 1_000);
        log(&w, "old.log.1", &text(1, 1_000), 400);
        log(&w, "keep.log.1", &keep, 40);
        let out = run(w
            .ops()
            .args(["logs", "archive"])
            .env("RANSOMEYE_FAILPOINT", failpoint));
        assert_eq!(out.code, -1, "{failpoint}: {}", out.stderr);
        let out = run(w.ops().args(["--json", "logs", "archive"]));
        out.expect_code(0);
        assert_eq!(
            archive_listing(&w),
            ["keep.log.1.zst.enc", "keep.log.1.zst.enc.entry.json"],
            "{failpoint}"
        );
        assert_eq!(temp_files(&w), Vec::<String>::new(), "{failpoint}");
        run(w.ops().args(["logs", "verify"])).expect_code(0);
        assert!(cat(&w, "keep.log.1.zst.enc") == keep);
    }
}

#[test]
fn quiet_prints_nothing_on_success() {
    let w = world_with("");
    log(&w, "a.log.1", &text(1, 100), 40);
    let out = run(w.ops().args(["-q", "logs", "archive"]));
    out.expect_code(0);
    assert_eq!(out.stdout, "", "-q printed something");
    let out = run(w.ops().args(["-q", "logs", "verify"]));
    out.expect_code(0);
    assert_eq!(out.stdout, "");
}
