//! Group `ransomeye-admin` operates a root-initialised installation: after `init` as root, a
//! member (a throwaway system user) runs every command, then root runs them all again on what
//! the member wrote, then a second member does; and a user outside the group is refused (77)
//! before anything is touched.
//!
//! These tests create users and switch to them, so they need root (CI runs as root); run
//! without root they fail saying so, they never pass silently.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    ensure_admin_group, require_root, run, services, stdout_bytes, tree, AgentSim, Member,
    PublicBinary, Run, TestDb, World, BIN, NOBODY,
};
use ransomeye_kernel::access::ADMIN_GROUP;

/// What these tests do that needs root.
const NEEDS_ROOT: &str = "creates users and runs the binary as them";

/// Who runs a command.
#[derive(Clone, Copy)]
enum Who<'a> {
    Root,
    Member(&'a Member),
}

impl Who<'_> {
    fn label(&self) -> String {
        match self {
            Who::Root => "root".into(),
            Who::Member(m) => m.name.clone(),
        }
    }
}

/// Runs the public copy of the binary against one world as root or as a member. A member runs
/// through `runuser`, which sets the user's supplementary groups from the group database, as
/// a login would.
struct Operator<'a> {
    world: &'a World,
    bin: &'a PublicBinary,
    who: Who<'a>,
}

impl Operator<'_> {
    fn command(&self) -> Command {
        let cmd = match self.who {
            Who::Root => self.bin.command(),
            Who::Member(m) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", &m.name, "--"]).arg(&self.bin.path);
                cmd
            }
        };
        let mut cmd = self.world.ops_with(cmd);
        cmd.current_dir("/");
        cmd
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Run {
        let out = run(self.command().args(args));
        assert_eq!(
            out.code,
            0,
            "`{}` as {} failed\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            self.who.label(),
            out.stdout,
            out.stderr
        );
        out
    }
}

/// Every command with a quick form, run by `who`; `round` tells the rows and dirs apart.
fn operate(w: &World, bin: &PublicBinary, who: Who<'_>, round: u32) {
    let ops = Operator { world: w, bin, who };
    let label = who.label();

    let health = run(ops.command().args(["--json", "health", "--timeout", "5"]));
    assert!(
        (0..=3).contains(&health.code),
        "health as {label}: {health:?}"
    );
    let checks = health.json()["checks"].clone();
    assert_eq!(checks.as_array().map(Vec::len), Some(4), "{checks}");

    w.db().execute(&format!(
        "insert into audit_logs (created_at, actor, action) \
         select now() - interval '40 days' - g * interval '1 minute', 'round-{round}', 'login' \
         from generate_series(1, 200) g"
    ));
    let old = "select count(*)::int8 from audit_logs where created_at < now() - interval '30 days'";
    // The dry run takes the run lock too (creating its file), and writes nothing else.
    let files = || -> Vec<String> {
        let mut names = w.list("archive");
        names.retain(|n| !n.ends_with(".lock"));
        names
    };
    let before = files();
    ops.ok(&["archive", "--dry-run"]);
    assert_eq!(files(), before, "--dry-run as {label} wrote");
    assert_eq!(w.db().int(old), 200);
    let report = ops.ok(&["--json", "archive"]).json();
    assert_eq!(report["rows_deleted"], 200, "{report}");
    let file = report["file"].as_str().expect("archive file").to_string();
    assert_eq!(w.db().int(old), 0);
    ops.ok(&["archive", "list"]);
    ops.ok(&["archive", "verify", "--all"]);

    let backup = ops.ok(&["--json", "backup"]).json();
    assert_eq!(backup["status"], "verified", "{backup}");
    let name = backup["backup"].as_str().expect("backup name").to_string();
    ops.ok(&["backup", "list"]);
    ops.ok(&["verify", "--all"]);
    ops.ok(&["drill"]);

    let target = TestDb::empty();
    let files_to = w.path(&format!("restored-{round}"));
    std::fs::create_dir(&files_to).expect("mkdir");
    if let Who::Member(m) = who {
        std::os::unix::fs::chown(&files_to, Some(m.uid), None).expect("chown");
    }
    ops.ok(&[
        "restore",
        &name,
        "--target-database-url",
        &target.url,
        "--files-to",
        &files_to.display().to_string(),
    ]);
    assert_eq!(
        target.int("select count(*)::int8 from audit_logs"),
        w.db().int("select count(*)::int8 from audit_logs"),
        "restore as {label}"
    );

    let version = w.parsed_config().trust.version;
    let rotation = ops.ok(&["--json", "rotate-keys", "--timeout", "30"]).json();
    assert_eq!(rotation["status"], "committed", "{rotation}");
    assert_eq!(w.parsed_config().trust.version, version + 1);
    ops.ok(&["rotate-keys", "status"]);

    // This round's archive, and the first round's, decrypt with the key init wrote as root.
    let first = w
        .path("archive")
        .join(w.archives().first().expect("an archive"));
    for archive in [file, first.display().to_string()] {
        let plain = stdout_bytes(ops.command().args(["decrypt", &archive]));
        assert!(!plain.is_empty(), "{archive}");
    }
}

/// What the tool made in `dir` is shared with the group: directories `2770`, lock files `0660`,
/// everything else group-readable at most, all group `ransomeye-admin`, nothing for others.
#[track_caller]
fn assert_shared(dir: &Path, admin: u32) {
    let meta = std::fs::metadata(dir).expect("dir metadata");
    assert_eq!(meta.gid(), admin, "group of {}", dir.display());
    assert_eq!(meta.mode() & 0o7777, 0o2770, "mode of {}", dir.display());
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.is_dir() {
            assert_shared(&path, admin);
            continue;
        }
        let mode = meta.mode() & 0o7777;
        assert_eq!(meta.gid(), admin, "group of {}", path.display());
        let name = path.file_name().expect("name").to_string_lossy();
        if name.ends_with(".lock") {
            assert_eq!(mode, 0o660, "mode of {}", path.display());
        } else {
            assert_eq!(mode, 0o640, "mode of {}", path.display());
        }
    }
}

fn owner(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").uid()
}

/// The lock files a round leaves.
fn lock_files(w: &World) -> [PathBuf; 3] {
    [
        w.path("archive/.archive-audit_logs.lock"),
        w.path("backups/.backup.lock"),
        w.path("keys/.rotate-keys.lock"),
    ]
}

#[test]
fn members_and_root_operate_each_others_installation() {
    require_root(NEEDS_ROOT);
    let admin = ensure_admin_group();
    let first = Member::create();
    let second = Member::create();
    let bin = PublicBinary::new(BIN);
    let w = World::initialised(BIN);
    w.open_to_others();
    // Simulated agents acking every trust update, so `rotate-keys` commits.
    let _agents = AgentSim::start(&w, 3, 1.0, 0.0);
    for dir in ["etc", "keys", "archive", "backups"] {
        assert_shared(&w.path(dir), admin);
    }

    operate(&w, &bin, Who::Member(&first), 1);
    for dir in ["etc", "keys", "archive", "backups"] {
        assert_shared(&w.path(dir), admin);
    }
    // The member's rotation made them the owner of the trust key and the configuration; root
    // and the other members must go on using both.
    assert_eq!(owner(&w.path("keys/signing.key")), first.uid);
    assert_eq!(owner(&w.config), first.uid);
    for lock in lock_files(&w) {
        assert_eq!(owner(&lock), first.uid, "{}", lock.display());
    }

    // Root creates one lock file afresh and finds the others as an older version left them
    // (root:root 0640): its run repairs them for the next member.
    std::fs::remove_file(w.path("backups/.backup.lock")).expect("remove lock");
    for lock in [
        w.path("archive/.archive-audit_logs.lock"),
        w.path("keys/.rotate-keys.lock"),
    ] {
        std::os::unix::fs::chown(&lock, Some(0), Some(0)).expect("chown");
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }
    operate(&w, &bin, Who::Root, 2);
    for dir in ["etc", "keys", "archive", "backups"] {
        assert_shared(&w.path(dir), admin);
    }
    assert_eq!(owner(&w.path("keys/signing.key")), 0);

    operate(&w, &bin, Who::Member(&second), 3);
    for dir in ["etc", "keys", "archive", "backups"] {
        assert_shared(&w.path(dir), admin);
    }
    assert_eq!(owner(&w.path("keys/signing.key")), second.uid);
    // Root rolls back to the key the second member's rotation retired, owned by that member.
    let rollback = run(Operator {
        world: &w,
        bin: &bin,
        who: Who::Root,
    }
    .command()
    .args([
        "--json",
        "rotate-keys",
        "--rollback",
        "--yes",
        "--timeout",
        "30",
    ]));
    rollback.expect_code(0);
    assert_eq!(rollback.json()["status"], "committed");
}

/// What `snapshot` compares of a file: size, mode, owner and modification time.
type Seen = (u64, u32, u32, (i64, i64));

/// Every file under `dir`: path, size, mode, owner and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Seen> {
    tree(dir)
        .into_iter()
        .map(|(path, e)| (path, (e.len, e.mode, e.uid, e.mtime)))
        .collect()
}

#[test]
fn a_user_outside_the_group_is_refused_every_command_and_nothing_changes() {
    require_root(NEEDS_ROOT);
    ensure_admin_group();
    let bin = PublicBinary::new(BIN);
    let w = World::initialised(BIN);
    w.open_to_others();
    w.db().execute(
        "insert into audit_logs (created_at, actor) \
         select now() - interval '40 days' - g * interval '1 minute', 'old' \
         from generate_series(1, 50) g",
    );
    let rows = "select count(*)::int8 from audit_logs";
    let before = (snapshot(w.dir.path()), w.db().int(rows));
    let target = TestDb::empty();
    let some_file = w.path("keys/signing.key").display().to_string();
    for args in [
        &["health"][..],
        &["archive", "--dry-run"],
        &["archive"],
        &["archive", "list"],
        &["archive", "verify", "--all"],
        &["backup"],
        &["backup", "list"],
        &["verify", "--all"],
        &["drill"],
        &[
            "restore",
            "ransomeye_20261123T020000Z",
            "--target-database-url",
            &target.url,
        ],
        &["rotate-keys"],
        &["rotate-keys", "status"],
        &["decrypt", &some_file],
    ] {
        let out = run(w.ops_with(bin.command()).args(args).uid(NOBODY).gid(NOBODY));
        assert_eq!(out.code, 77, "{args:?} as nobody: {out:?}");
        out.stderr_has("Permission Denied").stderr_has(ADMIN_GROUP);
    }
    assert_eq!((snapshot(w.dir.path()), w.db().int(rows)), before);
}

#[test]
fn a_member_facing_root_only_permissions_is_told_the_fix_and_nothing_changes() {
    require_root(NEEDS_ROOT);
    ensure_admin_group();
    let member = Member::create();
    let bin = PublicBinary::new(BIN);
    // A backup directory that already exists root-only (as /var/backups does on Debian): init
    // leaves it as it is and says how to open it to the members.
    let mut w = World::empty(BIN);
    w.open_to_others();
    std::fs::create_dir(w.path("backups")).expect("mkdir");
    std::fs::set_permissions(w.path("backups"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let db = TestDb::new();
    w.init_with(&db.url, &services().nats_url)
        .expect_code(0)
        .stderr_has("[backup] dir")
        .stderr_has("chmod 2770");
    w.db = Some(db);
    let mode = std::fs::metadata(w.path("backups")).expect("meta").mode() & 0o7777;
    assert_eq!(mode, 0o755, "init changed an existing directory");

    let ops = Operator {
        world: &w,
        bin: &bin,
        who: Who::Member(&member),
    };
    let out = run(ops.command().arg("backup"));
    out.expect_code(73)
        .stderr_has("not writable")
        .stderr_has("chgrp ransomeye-admin")
        .stderr_has("chmod 2770");
    assert!(w.list("backups").is_empty(), "{:?}", w.list("backups"));

    // A lock file as an older version left it (root:root 0640): 77, how to share it, no archive.
    w.db().execute(
        "insert into audit_logs (created_at, actor) \
         select now() - interval '40 days' - g * interval '1 minute', 'old' \
         from generate_series(1, 20) g",
    );
    let lock = w.path("archive/.archive-audit_logs.lock");
    std::fs::write(&lock, b"").expect("write lock");
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = run(ops.command().arg("archive"));
    out.expect_code(77)
        .stderr_has(".archive-audit_logs.lock")
        .stderr_has("chmod 0660");
    assert!(w.archives().is_empty(), "{:?}", w.archives());
    assert_eq!(w.db().int("select count(*)::int8 from audit_logs"), 20);
}
