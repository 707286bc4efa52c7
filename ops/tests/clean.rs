//! `clean`: removes old temp files, old symlinks (as links), orphaned chunks and empty
//! directories, and nothing else, whatever a hostile tree holds.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{run, World, BIN};

const HOUR: u64 = 3_600;

/// A world with `[clean] temp_dirs = [<world>/tmp]`, `buffer_dirs = [<world>/buffer]`.
fn world() -> World {
    let w = World::initialised(BIN);
    for d in ["tmp", "buffer"] {
        std::fs::create_dir(w.path(d)).expect("mkdir");
    }
    let (tmp, buffer) = (w.path("tmp"), w.path("buffer"));
    w.edit_config(|t| {
        format!(
            "{t}\n[clean]\ntemp_dirs = [{:?}]\nbuffer_dirs = [{:?}]\n",
            tmp.display().to_string(),
            buffer.display().to_string()
        )
    });
    w
}

/// Sets the mtime of `path` (not following a symlink) to `secs` ago.
fn age(path: &Path, secs: u64) {
    let when = SystemTime::now() - Duration::from_secs(secs);
    let since = when.duration_since(SystemTime::UNIX_EPOCH).expect("epoch");
    let ts = nix::sys::time::TimeSpec::from_duration(since);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
}

fn file(path: &Path, bytes: &[u8], secs_old: u64) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
    age(path, secs_old);
    path.to_path_buf()
}

fn symlink(target: &Path, link: &Path, secs_old: u64) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
    age(link, secs_old);
}

/// Every entry under `dir` (not following symlinks, reading nothing): path → (mode, size, mtime).
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, i64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            if meta.is_dir() {
                todo.push(path.clone());
            }
            out.insert(
                path.strip_prefix(dir).expect("inside").to_path_buf(),
                (meta.mode(), meta.len(), meta.mtime()),
            );
        }
    }
    out
}

fn skipped(report: &serde_json::Value) -> Vec<(String, String)> {
    report["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            (
                s["path"].as_str().expect("path").to_string(),
                s["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect()
}

fn reason_for(report: &serde_json::Value, path: &Path) -> String {
    skipped(report)
        .into_iter()
        .find(|(p, _)| Path::new(p) == path)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("{} not skipped: {report}", path.display()))
}

#[test]
fn old_files_and_links_go_young_ones_stay_and_emptied_directories_go_but_never_a_root() {
    let w = world();
    let tmp = w.path("tmp");
    let canary = file(&w.path("canary/keep.txt"), b"canary", 100 * HOUR);
    let old = file(&tmp.join("a/b/old.bin"), &[7u8; 10_000], 48 * HOUR);
    let young = file(&tmp.join("a/young.bin"), b"young", HOUR);
    symlink(&canary, &tmp.join("old-link"), 48 * HOUR);
    symlink(&canary, &tmp.join("young-link"), HOUR);
    symlink(&w.path("canary"), &tmp.join("dir-link"), 48 * HOUR);
    std::fs::create_dir_all(tmp.join("empty-old")).expect("mkdir");
    age(&tmp.join("empty-old"), 48 * HOUR);
    std::fs::create_dir_all(tmp.join("empty-new")).expect("mkdir");

    let before = listing(w.dir.path());
    let dry = run(w.ops().args(["--json", "clean", "--dry-run"]));
    dry.expect_code(0);
    assert_eq!(
        listing(w.dir.path()),
        before,
        "the dry run changed something"
    );

    let out = run(w.ops().args(["--json", "clean"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(
        report["removed"],
        dry.json()["removed"],
        "the dry run said otherwise"
    );
    assert_eq!(report["removed"]["file"]["count"], 1, "{report}");
    assert_eq!(report["removed"]["symlink"]["count"], 2, "{report}");
    // a/b (emptied by this run) and empty-old; a keeps young.bin; empty-new is young.
    assert_eq!(report["removed"]["directory"]["count"], 2, "{report}");
    assert!(report["removed"]["file"]["bytes"].as_u64().expect("bytes") >= 10_000);
    assert!(!old.exists() && !tmp.join("a/b").exists() && !tmp.join("empty-old").exists());
    assert!(young.exists() && tmp.join("empty-new").is_dir() && tmp.is_dir());
    assert!(tmp.join("young-link").symlink_metadata().is_ok());
    assert!(tmp.join("old-link").symlink_metadata().is_err());
    assert!(tmp.join("dir-link").symlink_metadata().is_err());
    assert_eq!(
        std::fs::read(&canary).expect("canary"),
        b"canary",
        "a link's target is never touched"
    );
}

#[test]
fn sockets_fifos_open_files_and_mount_points_are_skipped_with_their_reason() {
    common::require_root("mounts a tmpfs inside a root");
    let w = world();
    let tmp = w.path("tmp");
    let socket_path = tmp.join("live.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket_path).expect("bind");
    age(&socket_path, 48 * HOUR);
    nix::unistd::mkfifo(&tmp.join("pipe"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    age(&tmp.join("pipe"), 48 * HOUR);
    let held = file(&tmp.join("held.bin"), b"held open", 48 * HOUR);
    let _open = std::fs::File::open(&held).expect("open");
    let mnt = tmp.join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let _mount = common::Mount::tmpfs(&mnt, "1m");
    let inside = file(&mnt.join("old-inside-mount.bin"), b"other fs", 48 * HOUR);
    age(&mnt, 48 * HOUR);

    let out = run(w.ops().args(["--json", "clean"]));
    out.expect_code(0);
    let report = out.json();
    assert!(
        reason_for(&report, &socket_path).starts_with("socket"),
        "{report}"
    );
    assert!(
        reason_for(&report, &tmp.join("pipe")).starts_with("FIFO"),
        "{report}"
    );
    assert_eq!(reason_for(&report, &held), "open in a process");
    assert!(
        reason_for(&report, &mnt).starts_with("another filesystem"),
        "{report}"
    );
    assert!(socket_path.exists() && tmp.join("pipe").exists() && held.exists());
    assert!(inside.exists(), "clean entered another filesystem");
    assert_eq!(
        std::fs::metadata(&mnt).expect("mnt").dev(),
        std::fs::metadata(&inside).expect("inside").dev()
    );
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_run_never_redirects_it() {
    let w = world();
    let tmp = w.path("tmp");
    let canary_dir = w.path("canary");
    let canary = file(&canary_dir.join("victim.bin"), b"must survive", 48 * HOUR);
    let old = file(&tmp.join("sub/old.bin"), b"old", 48 * HOUR);
    let hold = tempfile::tempdir().expect("hold dir");

    // Swapped after clean entered sub/: it keeps cleaning the real directory, by descriptor.
    let mut first = common::Running::start(
        w.ops()
            .args(["--json", "clean"])
            .env("RANSOMEYE_HOLD", "clean-entered")
            .env("RANSOMEYE_HOLD_DIR", hold.path()),
    );
    first.wait_for("hold point clean-entered");
    std::fs::rename(tmp.join("sub"), tmp.join("moved")).expect("rename");
    std::os::unix::fs::symlink(&canary_dir, tmp.join("sub")).expect("symlink");
    std::fs::write(hold.path().join("clean-entered.go"), b"").expect("go");
    first.finish().expect_code(0);
    assert_eq!(std::fs::read(&canary).expect("canary"), b"must survive");
    assert!(
        !tmp.join("moved/old.bin").exists(),
        "the entered directory was cleaned"
    );
    assert!(!old.exists());
    assert!(tmp
        .join("sub")
        .symlink_metadata()
        .expect("link")
        .file_type()
        .is_symlink());

    // Swapped before clean opens it: the open refuses the symlink.
    std::fs::remove_file(tmp.join("sub")).expect("rm link");
    std::fs::remove_dir_all(tmp.join("moved")).expect("rm moved");
    file(&tmp.join("sub2/old.bin"), b"old", 48 * HOUR);
    let hold = tempfile::tempdir().expect("hold dir");
    let mut second = common::Running::start(
        w.ops()
            .args(["--json", "clean"])
            .env("RANSOMEYE_HOLD", "clean-before-enter")
            .env("RANSOMEYE_HOLD_DIR", hold.path()),
    );
    second.wait_for("hold point clean-before-enter");
    std::fs::rename(tmp.join("sub2"), w.path("sub2-elsewhere")).expect("rename");
    std::os::unix::fs::symlink(&canary_dir, tmp.join("sub2")).expect("symlink");
    std::fs::write(hold.path().join("clean-before-enter.go"), b"").expect("go");
    let out = second.finish();
    out.expect_code(0);
    assert!(
        reason_for(&out.json(), &tmp.join("sub2")).contains("not followed"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read(&canary).expect("canary"), b"must survive");
}

#[test]
fn orphaned_chunks_go_and_chunks_of_a_live_or_recent_session_stay() {
    let w = world();
    let buffer = w.path("buffer");
    // Dead session (no lock holder), old chunks: removed with its lock and directory.
    let dead = buffer.join("s-dead");
    file(&dead.join("chunk-0001"), &[1u8; 5000], 8 * HOUR);
    file(&dead.join("chunk-0002"), &[2u8; 5000], 8 * HOUR);
    file(&dead.join("session.lock"), b"", 8 * HOUR);
    // Live session: its lock is held by this test.
    let live = buffer.join("s-live");
    file(&live.join("chunk-0001"), b"live", 8 * HOUR);
    file(&live.join("session.lock"), b"", 8 * HOUR);
    let _held = common::hold_flock(&live.join("session.lock"));
    // Dead but recent: younger than --orphan-age.
    let recent = file(&buffer.join("s-recent/chunk-0001"), b"recent", HOUR);
    // A file at the buffer's top level is no chunk.
    let stray = file(&buffer.join("stray.bin"), b"stray", 48 * HOUR);

    let out = run(w.ops().args(["--json", "clean", "--orphan-age", "6h"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["removed"]["chunk"]["count"], 2, "{report}");
    assert!(!dead.exists(), "{report}");
    assert!(live.join("chunk-0001").exists());
    assert!(reason_for(&report, &live).contains("in progress"));
    assert!(recent.exists() && stray.exists());
}

#[test]
fn roots_overlapping_keys_archive_backup_or_system_directories_are_refused_even_in_a_dry_run() {
    let w = world();
    let keys = w.path("keys");
    for (setting, root) in [
        ("temp_dirs", keys.display().to_string()),
        ("temp_dirs", w.dir.path().display().to_string()), // contains [keys] dir
        ("temp_dirs", w.path("archive/sub").display().to_string()),
        ("buffer_dirs", w.path("backups").display().to_string()),
        ("temp_dirs", "/".to_string()),
        ("temp_dirs", "/etc".to_string()),
        ("temp_dirs", "/var/lib".to_string()),
    ] {
        let config = w.config_copy(
            "refused.toml",
            &format!(
                "{setting} = [{:?}]",
                w.path(if setting == "temp_dirs" {
                    "tmp"
                } else {
                    "buffer"
                })
                .display()
                .to_string()
            ),
            &format!("{setting} = [{root:?}]"),
        );
        let before = listing(&keys);
        for args in [&["clean", "--dry-run"][..], &["clean"][..]] {
            run(w.ops_with_config(&config).args(args))
                .expect_code(78)
                .stderr_has("refusing to clean it");
        }
        assert_eq!(listing(&keys), before);
    }
    // A root that is a symlink.
    std::os::unix::fs::symlink(w.path("tmp"), w.path("tmp-link")).expect("symlink");
    let config = w.config_copy(
        "link.toml",
        &format!("temp_dirs = [{:?}]", w.path("tmp").display().to_string()),
        &format!(
            "temp_dirs = [{:?}]",
            w.path("tmp-link").display().to_string()
        ),
    );
    run(w.ops_with_config(&config).args(["clean", "--dry-run"]))
        .expect_code(78)
        .stderr_has("symlink");
}

#[test]
fn without_roots_clean_exits_78() {
    let w = World::initialised(BIN);
    run(w.ops().arg("clean"))
        .expect_code(78)
        .stderr_has("[clean]");
}

/// The same tree cleaned by `clean` and by `systemd-tmpfiles --clean` with the equivalent rule
/// (`e <root> - - - m:24h`: mtime only, as `clean`) leaves the same files and links.
#[test]
fn the_same_tree_cleaned_by_systemd_tmpfiles_leaves_the_same_files_and_links() {
    let tmpfiles = Path::new("/usr/bin/systemd-tmpfiles");
    assert!(
        tmpfiles.exists(),
        "systemd-tmpfiles is not installed (scripts/test installs the systemd package)"
    );
    let w = world();
    let ours = w.path("tmp");
    let theirs = w.path("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    let target = file(&w.path("target.txt"), b"t", 100 * HOUR);
    for root in [&ours, &theirs] {
        for (i, hours) in [1u64, 23, 25, 48, 1000].iter().enumerate() {
            file(
                &root.join(format!("f{i}.bin")),
                &vec![i as u8; 100 * i],
                hours * HOUR,
            );
            file(&root.join(format!("d/e/f{i}.bin")), b"x", hours * HOUR);
            symlink(&target, &root.join(format!("l{i}")), hours * HOUR);
            symlink(
                Path::new("/nonexistent"),
                &root.join(format!("d/dangling{i}")),
                hours * HOUR,
            );
        }
        age(&root.join("d/e"), 48 * HOUR);
        age(&root.join("d"), 48 * HOUR);
    }
    run(w.ops().args(["clean", "--older-than", "24h"])).expect_code(0);
    let conf = w.path("tmpfiles.conf");
    std::fs::write(&conf, format!("e {} - - - m:24h\n", theirs.display())).expect("conf");
    let status = std::process::Command::new(tmpfiles)
        .arg("--clean")
        .arg(&conf)
        .status()
        .expect("run systemd-tmpfiles");
    assert!(status.success());
    let survivors = |root: &Path| -> Vec<PathBuf> {
        listing(root)
            .into_iter()
            .filter(|(_, (mode, _, _))| mode & 0o170000 != 0o040000)
            .map(|(p, _)| p)
            .filter(|p| !p.to_string_lossy().starts_with(".clean.lock"))
            .collect()
    };
    assert_eq!(survivors(&ours), survivors(&theirs));
    assert!(!survivors(&ours).is_empty() && survivors(&ours).len() < 20);
}
