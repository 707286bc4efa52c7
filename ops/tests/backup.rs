//! `backup`, `verify`, `restore`, `drill`: encrypted backups that provably restore.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{hold_flock, kill_after, run, stdout_bytes, Mount, TestDb, World, BIN};

/// A world with audit rows, an intel graph, an artifacts directory and an extra config file.
fn world() -> World {
    let w = World::initialised(BIN);
    w.db().execute(
        "insert into audit_logs (created_at, actor, action, target, details) \
         select now() - g * interval '1 hour', 'user' || (g % 7), 'login', 'host-' || g, \
                jsonb_build_object('n', g, 'note', 'ünïcode ✓') \
         from generate_series(1, 500) g; \
         insert into agents (id, hostname, public_key, status) \
         select gen_random_uuid(), 'agent-' || g, '\\x00'::bytea, 'active' from generate_series(1, 5) g",
    );
    seed_intel(&w.db().url, 200, 600);
    std::fs::create_dir_all(w.path("artifacts/case-1")).expect("mkdir");
    std::fs::write(w.path("artifacts/case-1/memdump.bin"), vec![7u8; 1_000_000]).expect("write");
    std::fs::write(w.path("artifacts/case-1/notes.txt"), b"first look\n").expect("write");
    std::fs::write(w.path("etc/extra.conf"), b"extra = 1\n").expect("write");
    let artifacts = w.path("artifacts");
    let extra = w.path("etc/extra.conf");
    w.edit_config(|text| {
        assert!(text.contains("include = []\n"), "{text}");
        text.replace(
            "include = []\n",
            &format!(
                "include = [{:?}]\nartifacts_dir = {:?}\n",
                extra.display().to_string(),
                artifacts.display().to_string()
            ),
        )
    });
    w
}

fn seed_intel(url: &str, nodes: u32, edges: u32) {
    let status = Command::new("psql")
        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1"])
        .arg("-v")
        .arg(format!("nodes={nodes}"))
        .arg("-v")
        .arg(format!("edges={edges}"))
        .arg("-f")
        .arg(common::repo_root().join("scripts/sql/seed-intel.sql"))
        .arg(url)
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "seeding the intel graph failed");
}

/// Digest of every row of the tables a backup covers, in key order.
fn data_digest(db: &TestDb) -> String {
    db.text(
        "select md5(\
           (select coalesce(string_agg(row_to_json(a)::text, E'\\n' order by id), '') from audit_logs a) || \
           (select coalesce(string_agg(row_to_json(n)::text, E'\\n' order by id), '') from intel_nodes n) || \
           (select coalesce(string_agg(row_to_json(e)::text, E'\\n' order by id), '') from intel_edges e) || \
           (select coalesce(string_agg(hostname, ',' order by hostname), '') from agents))",
    )
}

fn backup(w: &World) -> serde_json::Value {
    let out = run(w.ops().args(["--json", "backup"]));
    out.expect_code(0);
    out.json()
}

fn file(w: &World, name: &str) -> PathBuf {
    w.path("backups").join(name)
}

#[test]
fn backup_verifies_and_restores_to_identical_data_files_and_graph() {
    let w = world();
    let report = backup(&w);
    assert_eq!(report["status"], "verified");
    let name = report["backup"].as_str().expect("name").to_string();
    assert!(
        name.starts_with("ransomeye_") && name.ends_with('Z'),
        "{name}"
    );
    assert_eq!(report["intel_nodes"], 200);
    assert_eq!(report["intel_edges"], 600);
    assert_eq!(
        w.list("backups")
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect::<Vec<_>>(),
        [
            format!("{name}.enc"),
            format!("{name}.files.enc"),
            format!("{name}.manifest.json")
        ]
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(file(&w, &format!("{name}.manifest.json"))).expect("read"),
    )
    .expect("json");
    assert_eq!(manifest["body"]["tables"]["public.audit_logs"], 500);
    assert_eq!(manifest["body"]["tables"]["public.agents"], 5);
    run(w.ops().args(["verify", &name])).expect_code(0);

    let target = TestDb::empty();
    let files_to = w.path("restored");
    let out = run(w
        .ops()
        .args([
            "--json",
            "restore",
            &name,
            "--target-database-url",
            &target.url,
            "--files-to",
        ])
        .arg(&files_to));
    out.expect_code(0);
    let restored = out.json();
    assert_eq!(restored["status"], "restored");
    assert_eq!(restored["outcome"]["intel_digest_matches"], true);
    assert_eq!(data_digest(&target), data_digest(w.db()));
    let memdump = files_to.join(
        w.path("artifacts/case-1/memdump.bin")
            .strip_prefix("/")
            .expect("abs"),
    );
    assert_eq!(
        std::fs::read(memdump).expect("restored artifact"),
        vec![7u8; 1_000_000]
    );
    let config = files_to.join(w.config.strip_prefix("/").expect("abs"));
    assert_eq!(
        std::fs::read(config).expect("restored config"),
        std::fs::read(&w.config).expect("config")
    );
}

#[test]
fn the_dump_is_plain_custom_format_for_pg_restore_by_hand() {
    let w = world();
    let name = backup(&w)["backup"].as_str().expect("name").to_string();
    // backup cat: the custom-format dump, which pg_restore reads.
    let dump = stdout_bytes(w.ops().args(["backup", "cat", &name]));
    assert_eq!(&dump[..5], b"PGDMP", "custom-format magic");
    let dump_file = w.path("by-hand.pgc");
    std::fs::write(&dump_file, &dump).expect("write");
    let out = Command::new("pg_restore")
        .arg("--list")
        .arg(&dump_file)
        .output()
        .expect("pg_restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit_logs"));
    // decrypt gives the zstd stream of the same dump.
    let zst = stdout_bytes(w.ops().arg("decrypt").arg(file(&w, &format!("{name}.enc"))));
    assert_eq!(zstd::decode_all(&zst[..]).expect("zstd"), dump);
}

#[test]
fn unchanged_artifacts_are_referenced_and_restored_through_the_chain() {
    let w = world();
    let first = backup(&w)["backup"].as_str().expect("name").to_string();
    std::fs::write(
        w.path("artifacts/case-1/notes.txt"),
        b"second look, longer\n",
    )
    .expect("write");
    let report = backup(&w);
    let second = report["backup"].as_str().expect("name").to_string();
    assert_ne!(first, second);
    assert_eq!(report["entries_unchanged"], 1, "memdump.bin is unchanged");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(file(&w, &format!("{second}.manifest.json"))).expect("read"),
    )
    .expect("json");
    let entries = manifest["body"]["entries"].as_array().expect("entries");
    let stored_in = |suffix: &str| {
        entries
            .iter()
            .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
            .map(|e| e["stored_in"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(stored_in("memdump.bin"), Some(first.clone()));
    assert_eq!(stored_in("notes.txt"), Some(second.clone()));
    // The second bundle is small: the 1 MB artifact is not in it again.
    assert!(report["files"]["plaintext_bytes"].as_u64().expect("bytes") < 1_000_000);

    let target = TestDb::empty();
    let files_to = w.path("restored");
    run(w
        .ops()
        .args([
            "restore",
            &second,
            "--target-database-url",
            &target.url,
            "--files-to",
        ])
        .arg(&files_to))
    .expect_code(0);
    let under = |p: &str| files_to.join(w.path(p).strip_prefix("/").expect("abs"));
    assert_eq!(
        std::fs::read(under("artifacts/case-1/memdump.bin")).expect("read"),
        vec![7u8; 1_000_000]
    );
    assert_eq!(
        std::fs::read(under("artifacts/case-1/notes.txt")).expect("read"),
        b"second look, longer\n"
    );

    // Retention never deletes a backup a kept one still needs.
    std::fs::write(w.path("artifacts/case-1/notes.txt"), b"third look\n").expect("write");
    run(w.ops().args(["backup", "--keep", "1"])).expect_code(0);
    let left = w.backups();
    assert!(
        left.contains(&first),
        "{first} holds memdump.bin for the kept backup: {left:?}"
    );
    assert!(
        !left.contains(&second),
        "{second} is no longer needed: {left:?}"
    );
}

#[test]
fn every_flipped_bit_truncation_or_forged_manifest_fails_verify_and_restore_with_65() {
    let w = world();
    let name = backup(&w)["backup"].as_str().expect("name").to_string();
    let pristine: Vec<(PathBuf, Vec<u8>)> = [".enc", ".files.enc", ".manifest.json"]
        .iter()
        .map(|s| {
            let p = file(&w, &format!("{name}{s}"));
            let bytes = std::fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();
    let restore_target = TestDb::empty();
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, usize, Damage)> = vec![
        (
            "dump bit flip",
            0,
            Box::new(|b: &mut Vec<u8>| {
                let i = b.len() / 2;
                b[i] ^= 0x10
            }),
        ),
        (
            "dump truncated",
            0,
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() - 100)),
        ),
        (
            "bundle bit flip",
            1,
            Box::new(|b: &mut Vec<u8>| {
                let i = b.len() - 40;
                b[i] ^= 1
            }),
        ),
        (
            "bundle truncated",
            1,
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
        ),
        (
            "manifest edited",
            2,
            Box::new(|b: &mut Vec<u8>| {
                let text = String::from_utf8(b.clone()).expect("utf-8").replacen(
                    "\"public.audit_logs\": 500",
                    "\"public.audit_logs\": 499",
                    1,
                );
                assert_ne!(text.as_bytes(), &b[..], "edit applied");
                *b = text.into_bytes();
            }),
        ),
    ];
    for (what, index, damage) in cases {
        let (path, original) = &pristine[index];
        let mut bytes = original.clone();
        damage(&mut bytes);
        std::fs::write(path, &bytes).expect("write");
        let out = run(w.ops().args(["verify", &name]));
        out.expect_code(65);
        assert!(
            out.stderr.contains(&name),
            "{what}: the message names the backup: {}",
            out.stderr
        );
        run(w.ops().args([
            "restore",
            &name,
            "--target-database-url",
            &restore_target.url,
        ]))
        .expect_code(65);
        assert_eq!(
            restore_target.int("select count(*)::int8 from pg_tables where schemaname = 'public'"),
            0,
            "{what}: nothing restored"
        );
        std::fs::write(path, original).expect("restore pristine file");
    }
    run(w.ops().args(["verify", "--all"])).expect_code(0);
}

#[test]
fn a_wrong_backup_key_is_77_and_a_missing_backup_66() {
    let w = world();
    let name = backup(&w)["backup"].as_str().expect("name").to_string();
    std::fs::write(w.path("keys/backup.key"), [9u8; 32]).expect("replace key");
    run(w.ops().args(["verify", &name]))
        .expect_code(77)
        .stderr_has("backup key");
    run(w.ops().args(["verify", "ransomeye_20200101T000000Z"])).expect_code(66);
}

#[test]
fn restore_refuses_a_non_empty_target_unless_clean_and_existing_files_unless_yes() {
    let w = world();
    let name = backup(&w)["backup"].as_str().expect("name").to_string();
    let target = TestDb::new(); // has the schema's tables
    run(w
        .ops()
        .args(["restore", &name, "--target-database-url", &target.url]))
    .expect_code(73)
    .stderr_has("--clean");
    run(w.ops().args([
        "restore",
        &name,
        "--clean",
        "--target-database-url",
        &target.url,
    ]))
    .expect_code(0);
    assert_eq!(data_digest(&target), data_digest(w.db()));

    let files_to = w.path("restored");
    let empty = TestDb::empty();
    run(w
        .ops()
        .args([
            "restore",
            &name,
            "--target-database-url",
            &empty.url,
            "--files-to",
        ])
        .arg(&files_to))
    .expect_code(0);
    let again = TestDb::empty();
    run(w
        .ops()
        .args([
            "restore",
            &name,
            "--target-database-url",
            &again.url,
            "--files-to",
        ])
        .arg(&files_to))
    .expect_code(73)
    .stderr_has("--yes");
    assert_eq!(
        again.int("select count(*)::int8 from pg_tables where schemaname = 'public'"),
        0
    );
}

#[test]
fn services_are_stopped_before_and_started_after_even_a_failed_restore() {
    let w = world();
    let name = backup(&w)["backup"].as_str().expect("name").to_string();
    let log = w.path("services.log");
    w.edit_config(|text| {
        format!(
            "{text}\n[services]\nstop = [\"echo stop >> {l}\"]\nstart = [\"echo start >> {l}\"]\n",
            l = log.display()
        )
    });
    let target = TestDb::empty();
    run(w
        .ops()
        .args(["restore", &name, "--target-database-url", &target.url]))
    .expect_code(0);
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "stop\nstart\n");

    // pg_restore fails (the target has a conflicting table; --clean would drop it, but it is
    // a view here, so the restore errors out): services still start again.
    std::fs::remove_file(&log).expect("rm");
    let busy = TestDb::empty();
    busy.execute("create view audit_logs as select 1 as id");
    run(w.ops().args([
        "restore",
        &name,
        "--clean",
        "--target-database-url",
        &busy.url,
    ]))
    .expect_code(65);
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "stop\nstart\n");
}

/// Two restores at once would stop and start the same services under each other: the second
/// exits 75 naming the first, before stopping anything, whether it finds the host's lock file
/// held or (from another host) the target database's lock.
#[test]
fn a_second_restore_exits_75_before_stopping_services_or_touching_the_target() {
    let w = world();
    let name = backup(&w)["backup"].as_str().expect("name").to_string();
    let log = w.path("services.log");
    w.edit_config(|text| {
        format!(
            "{text}\n[services]\nstop = [\"echo stop >> {l}\"]\nstart = [\"echo start >> {l}\"]\n",
            l = log.display()
        )
    });
    let target = TestDb::empty();
    let restore = |w: &World| {
        run(w
            .ops()
            .args(["restore", &name, "--target-database-url", &target.url]))
    };

    std::fs::write(w.path("backups/.restore.lock"), b"pid 4242 on testhost\n").expect("write");
    let held = hold_flock(&w.path("backups/.restore.lock"));
    restore(&w)
        .expect_code(75)
        .stderr_has("another restore is running (pid 4242 on testhost)");
    drop(held);

    let holder = common::block_on(async {
        let mut conn = target.connect().await;
        sqlx::query("select pg_advisory_lock(hashtextextended('ransomeye-ops restore', 0))")
            .execute(&mut conn)
            .await
            .expect("advisory lock");
        conn
    });
    restore(&w).expect_code(75).stderr_has("restore");
    assert!(
        !log.exists(),
        "services were stopped by a restore that could not proceed"
    );
    assert_eq!(
        target.int(
            "select count(*)::int8 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = 'public'"
        ),
        0,
        "the target was touched"
    );
    drop(holder);

    // Both released: the restore runs.
    restore(&w).expect_code(0);
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "stop\nstart\n");
}

#[test]
fn drill_restores_into_a_scratch_database_checks_it_and_drops_it() {
    let w = world();
    run(w.ops().arg("drill")).expect_code(66);
    backup(&w);
    let out = run(w.ops().args(["--json", "drill"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["status"], "passed");
    assert!(report["rto_ms"].as_f64().expect("rto") > 0.0);
    assert_eq!(report["outcome"]["intel_digest_matches"], true);
    // Its own scratch database, by name: other tests' drills may run meanwhile.
    let scratch = report["scratch_database"].as_str().expect("scratch name");
    assert!(scratch.starts_with("ransomeye_drill_"), "{scratch}");
    assert_eq!(
        w.db().int(&format!(
            "select count(*)::int8 from pg_database where datname = '{scratch}'"
        )),
        0,
        "the scratch database is dropped"
    );

    let busy = TestDb::new();
    run(w.ops().args(["drill", "--target-database-url", &busy.url])).expect_code(73);
}

#[test]
fn retention_keeps_the_newest_n() {
    let w = world();
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(backup(&w)["backup"].as_str().expect("name").to_string());
    }
    let report = {
        let out = run(w.ops().args(["--json", "backup", "--keep", "2"]));
        out.expect_code(0);
        out.json()
    };
    // Kept: the newest two (the third and the new one), plus the first, which holds the
    // artifacts every later backup references. The second holds nothing anyone needs.
    let left = w.backups();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        left.contains(&names[0]) && left.contains(&names[2]),
        "{left:?}"
    );
    assert!(!left.contains(&names[1]), "{left:?}");
    assert_eq!(report["deleted"], serde_json::json!([names[1]]));
}

#[test]
fn bad_input_fails_clearly_and_leaves_no_file() {
    let w = world();
    // Another backup holds the lock: 75.
    std::fs::write(w.path("backups/.backup.lock"), b"pid 4242 on testhost\n").expect("write");
    let held = hold_flock(&w.path("backups/.backup.lock"));
    run(w.ops().arg("backup"))
        .expect_code(75)
        .stderr_has("pid 4242");
    drop(held);
    // pg_dump not where [backup] pg_bin_dir says: 69 with the fix.
    let empty_bin = w.path("no-pg-bin");
    std::fs::create_dir_all(&empty_bin).expect("mkdir");
    w.edit_config(|t| {
        t.replace(
            "[backup]\n",
            &format!(
                "[backup]\npg_bin_dir = {:?}\n",
                empty_bin.display().to_string()
            ),
        )
    });
    run(w.ops().arg("backup"))
        .expect_code(69)
        .stderr_has("pg_dump");
    w.edit_config(|t| {
        t.replace(
            &format!("pg_bin_dir = {:?}\n", empty_bin.display().to_string()),
            "",
        )
    });
    // Backup dir missing: 73.
    std::fs::rename(w.path("backups"), w.path("backups.away")).expect("rename");
    run(w.ops().arg("backup"))
        .expect_code(73)
        .stderr_has("[backup] dir");
    std::fs::rename(w.path("backups.away"), w.path("backups")).expect("rename");
    // A role that may not read a table: pg_dump fails, no file appears.
    w.db().execute(&format!(
        "do $$ begin if not exists (select 1 from pg_roles where rolname = 'ransomeye_limited') then \
           create role ransomeye_limited login; end if; end $$; \
         grant connect on database {} to ransomeye_limited; \
         revoke all on audit_logs from ransomeye_limited;",
        w.db().name
    ));
    let limited = w.db().url.replacen("postgres@", "ransomeye_limited@", 1);
    assert_ne!(limited, w.db().url, "test needs a URL with a user part");
    let out = run(w
        .ops()
        .env("RANSOMEYE_DATABASE_URL", &limited)
        .arg("backup"));
    assert_ne!(out.code, 0);
    assert!(w.backups().is_empty());
    assert!(
        w.list("backups")
            .iter()
            .all(|n| n.starts_with(".backup.lock")),
        "no data file, no temp file: {:?}",
        w.list("backups")
    );
    // Database down: 69.
    w.edit_config(|t| {
        let start = t.find("url = \"postgres").expect("db url");
        let end = start + t[start..].find('\n').expect("eol");
        format!(
            "{}url = \"postgres://postgres@127.0.0.1:1/x\"{}",
            &t[..start],
            &t[end..]
        )
    });
    run(w.ops().arg("backup")).expect_code(69);
}

#[test]
fn disk_full_exits_74_keeps_older_backups_and_leaves_no_partial_file() {
    let w = world();
    let mounted = w.path("backups");
    let _disk = Mount::tmpfs(&mounted, "1m");
    // A first backup fits (the artifact compresses to almost nothing)...
    w.db().execute("truncate audit_logs");
    let first = backup(&w)["backup"].as_str().expect("name").to_string();
    // ...the second cannot: incompressible rows.
    w.db().execute(
        "insert into audit_logs (created_at, details) \
         select now(), jsonb_build_object('r', md5(g::text) || md5((g * 7)::text)) from generate_series(1, 40000) g",
    );
    run(w.ops().arg("backup"))
        .expect_code(74)
        .stderr_has("No space left");
    assert_eq!(w.backups(), std::slice::from_ref(&first));
    assert!(
        w.list("backups").iter().all(|n| !n.contains(".tmp-")),
        "{:?}",
        w.list("backups")
    );
    run(w.ops().args(["verify", &first])).expect_code(0);
}

#[test]
fn sigkill_during_backup_leaves_only_verifiable_backups_and_the_next_one_succeeds() {
    // The long version is scripts/crash-backup; this is the handful.
    for delay_ms in [0u64, 30, 60, 120, 240] {
        let w = world();
        kill_after(
            w.ops().arg("backup"),
            std::time::Duration::from_millis(delay_ms),
        );
        for name in w.backups() {
            run(w.ops().args(["verify", &name])).expect_code(0);
        }
        run(w.ops().arg("backup")).expect_code(0);
        run(w.ops().args(["verify", "--all"])).expect_code(0);
        let left = w.list("backups");
        let data_files = left.iter().filter(|n| n.ends_with(".enc")).count();
        assert_eq!(
            data_files,
            2 * w.backups().len(),
            "leftovers removed: {left:?}"
        );
    }
}

/// `first` is the only backup, nothing else is in the backup dir (but the lock file), and it
/// verifies.
fn only_backup_left(w: &World, first: &str) {
    assert_eq!(w.backups(), [first.to_string()]);
    assert!(
        w.list("backups")
            .iter()
            .all(|n| n.starts_with(first) || n.starts_with(".backup.lock")),
        "nothing of the failed run is left: {:?}",
        w.list("backups")
    );
    run(w.ops().args(["verify", "--all"])).expect_code(0);
}

#[test]
fn a_new_backup_that_does_not_read_back_is_removed_and_older_ones_stay() {
    let w = world();
    let first = backup(&w)["backup"].as_str().expect("name").to_string();
    let out = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "backup-damage-before-verify")
        .arg("backup"));
    out.expect_code(65).stderr_has("was removed");
    only_backup_left(&w, &first);
}

#[test]
fn a_dump_that_does_not_read_back_as_written_is_not_kept_and_older_ones_stay() {
    let w = world();
    let first = backup(&w)["backup"].as_str().expect("name").to_string();
    // The read-back that follows the writer sees one flipped byte, as from a bad disk.
    let out = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "follow-read-differs")
        .arg("backup"));
    out.expect_code(65)
        .stderr_has("did not read back as written")
        .stderr_has(".enc.tmp-");
    only_backup_left(&w, &first);
    // Without the fault, the next backup succeeds.
    backup(&w);
}

/// Names in the backup dir that are not the lock file.
fn backup_dir_files(w: &World) -> Vec<String> {
    w.list("backups")
        .into_iter()
        .filter(|n| !n.starts_with(".backup.lock"))
        .collect()
}

#[test]
fn a_run_killed_while_committing_is_completed_by_the_next_run_and_never_leaves_an_orphan() {
    // Before any rename (all three files durable as temp files), and with the dump renamed.
    for failpoint in ["backup-before-commit", "backup-before-manifest"] {
        let w = world();
        let out = run(w.ops().env("RANSOMEYE_FAILPOINT", failpoint).arg("backup"));
        assert_ne!(out.code, 0, "{failpoint}: the failpoint aborts the run");
        assert!(w.backups().is_empty(), "{failpoint}: not committed");
        let left = backup_dir_files(&w);
        assert!(
            left.iter().any(|n| n.contains(".manifest.json.tmp-")),
            "{failpoint}: {left:?}"
        );
        // Nothing is an orphan meanwhile (that would be 65): the temp manifest says the backup
        // is being committed, so there is simply no backup to verify yet (66).
        run(w.ops().args(["verify", "--all"]))
            .expect_code(66)
            .stderr_has("nothing to verify");
        run(w.ops().args(["backup", "list"])).expect_code(0);
        let report = backup(&w);
        let completed = report["completed"].as_array().expect("completed").clone();
        assert_eq!(completed.len(), 1, "{failpoint}: {report}");
        let name = completed[0].as_str().expect("name");
        run(w.ops().args(["verify", name])).expect_code(0);
        run(w.ops().args(["verify", "--all"])).expect_code(0);
        assert_eq!(w.backups().len(), 2, "{failpoint}");
        assert!(
            backup_dir_files(&w).iter().all(|n| !n.contains(".tmp-")),
            "{failpoint}: {:?}",
            backup_dir_files(&w)
        );
    }
}

#[test]
fn a_kill_while_retention_deletes_a_backup_is_finished_by_the_next_run() {
    let w = world();
    let first = backup(&w)["backup"].as_str().expect("name").to_string();
    std::fs::remove_dir_all(w.path("artifacts/case-1")).expect("rm artifacts");
    let second = backup(&w)["backup"].as_str().expect("name").to_string();
    // Retention (keep 1) deletes the older backups; the run dies in the middle of deleting one,
    // its manifest and data files moved to temp names, none removed yet.
    let out = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "backup-remove-before-delete")
        .args(["backup", "--keep", "1"]));
    assert_ne!(out.code, 0, "the failpoint aborts the run");
    // Meanwhile nothing is an orphan and every committed backup verifies.
    run(w.ops().args(["verify", "--all"])).expect_code(0);
    run(w.ops().args(["backup", "list"])).expect_code(0);
    // The rerun puts the half-deleted backup back and deletes it properly.
    let report = {
        let out = run(w.ops().args(["--json", "backup", "--keep", "1"]));
        out.expect_code(0);
        out.json()
    };
    assert_eq!(report["completed"], serde_json::json!([first]), "{report}");
    let left = w.backups();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        !left.contains(&first) && !left.contains(&second),
        "{left:?}"
    );
    run(w.ops().args(["verify", "--all"])).expect_code(0);
    assert!(
        backup_dir_files(&w).iter().all(|n| n.starts_with(&left[0])),
        "{:?}",
        backup_dir_files(&w)
    );
}

#[test]
fn a_backup_whose_manifest_was_lost_is_an_orphan_reported_everywhere_and_never_deleted() {
    let w = world();
    let name = backup(&w)["backup"].as_str().expect("name").to_string();
    let manifest = file(&w, &format!("{name}.manifest.json"));
    let saved = std::fs::read(&manifest).expect("read manifest");
    std::fs::remove_file(&manifest).expect("lose the manifest");
    let dump = std::fs::read(file(&w, &format!("{name}.enc"))).expect("dump");
    // Temp-looking files that are not the atomic writer's: not the tool's to delete.
    let foreign = [
        ".ransomeye_notes.tmp-keep",
        &format!(".{name}.enc.tmp-backup-copy"),
    ];
    for f in foreign {
        std::fs::write(w.path("backups").join(f), b"mine").expect("write");
    }
    let orphans = [format!("{name}.enc"), format!("{name}.files.enc")];

    let list = run(w.ops().args(["--json", "backup", "list"]));
    list.expect_code(65)
        .stderr_has("no manifest")
        .stderr_has(&orphans[0]);
    let rows = serde_json::Deserializer::from_str(&list.stdout)
        .into_iter::<serde_json::Value>()
        .next()
        .expect("rows")
        .expect("json");
    assert_eq!(rows.as_array().expect("rows").len(), 2, "{rows}");
    assert!(rows[0]["state"]
        .as_str()
        .expect("state")
        .starts_with("orphan"));
    run(w.ops().args(["verify", "--all"]))
        .expect_code(65)
        .stderr_has(&orphans[1]);
    run(w.ops().args(["verify", &name]))
        .expect_code(65)
        .stderr_has("no manifest");
    let health = run(w.ops().args(["--json", "health"]));
    assert_ne!(health.code, 0, "{}", health.stdout);
    let disk = health.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "disk")
        .cloned()
        .expect("disk check");
    assert_eq!(disk["status"], "warning", "{disk}");
    assert_eq!(disk["metrics"]["backup_orphans"], 2.0, "{disk}");

    // The next backup reports them and deletes nothing.
    let report = backup(&w);
    assert_eq!(report["orphans"], serde_json::json!(orphans));
    assert_eq!(
        std::fs::read(file(&w, &format!("{name}.enc"))).expect("still there"),
        dump
    );
    for f in foreign {
        assert!(w.path("backups").join(f).exists(), "{f} kept");
        std::fs::remove_file(w.path("backups").join(f)).expect("rm");
    }
    // With its manifest back, it is a backup again.
    std::fs::write(&manifest, saved).expect("put the manifest back");
    run(w.ops().args(["verify", "--all"])).expect_code(0);
    run(w.ops().args(["backup", "list"])).expect_code(0);
}

#[test]
fn an_artifact_whose_holding_backup_was_lost_is_stored_again() {
    let w = world();
    let first = backup(&w)["backup"].as_str().expect("name").to_string();
    let second = backup(&w);
    assert_eq!(
        second["entries_unchanged"], 2,
        "the second refers to the first"
    );
    // Someone deletes the first backup by hand: the next one must not refer to it, although
    // the newest manifest (the second's) does.
    for suffix in [".manifest.json", ".enc", ".files.enc"] {
        std::fs::remove_file(file(&w, &format!("{first}{suffix}"))).expect("rm");
    }
    let report = backup(&w);
    assert_eq!(report["entries_unchanged"], 0);
    let third = report["backup"].as_str().expect("name");
    run(w.ops().args(["verify", third])).expect_code(0);
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

#[test]
fn the_keys_dir_is_never_backed_up_however_it_is_reached_and_each_file_is_stored_once() {
    let w = world();
    // [keys] dir named through a symlink; the directory itself in `include`, and reached again
    // through a bind mount under another included directory; a hard link to the signing key
    // beside the configuration, which `include` covers as well.
    std::os::unix::fs::symlink(w.path("keys"), w.path("keys-alias")).expect("symlink");
    std::fs::hard_link(w.path("keys/signing.key"), w.path("etc/signing-copy.key")).expect("link");
    std::fs::create_dir_all(w.path("mnt/keys")).expect("mkdir");
    std::fs::write(w.path("mnt/readme.txt"), b"bound\n").expect("write");
    let _bind = Mount::bind(&w.path("keys"), &w.path("mnt/keys"));
    let shown = |p: &str| w.path(p).display().to_string();
    w.edit_config(|t| {
        let t = t.replacen(
            &format!("dir = {:?}", shown("keys")),
            &format!("dir = {:?}", shown("keys-alias")),
            1,
        );
        let include = format!("include = [{:?}]", shown("etc/extra.conf"));
        assert!(t.contains(&include), "{t}");
        t.replacen(
            &include,
            &format!(
                "include = [{:?}, {:?}, {:?}]",
                shown("etc"),
                shown("keys"),
                shown("mnt")
            ),
            1,
        )
    });
    let key_hashes: Vec<String> = ["signing.key", "archive.key", "backup.key"]
        .iter()
        .map(|k| sha256_hex(&std::fs::read(w.path("keys").join(k)).expect("key")))
        .collect();

    let report = backup(&w);
    let mut excluded: Vec<String> = report["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .map(|e| {
            assert!(
                e["reason"].as_str().expect("reason").contains("[keys] dir"),
                "{e}"
            );
            e["path"].as_str().expect("path").to_string()
        })
        .collect();
    excluded.sort();
    assert_eq!(
        excluded,
        [
            shown("etc/signing-copy.key"),
            shown("keys"),
            shown("mnt/keys")
        ]
    );
    let name = report["backup"].as_str().expect("name");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(file(&w, &format!("{name}.manifest.json"))).expect("read"),
    )
    .expect("json");
    let entries = manifest["body"]["entries"].as_array().expect("entries");
    for e in entries {
        let sha = e["sha256"].as_str().expect("sha256");
        assert!(
            !key_hashes.iter().any(|k| k == sha),
            "a key was stored: {e}"
        );
    }
    let stored = |source: &str| entries.iter().filter(|e| e["source"] == source).count();
    assert_eq!(
        stored(&w.config.display().to_string()),
        1,
        "the config once"
    );
    assert_eq!(stored(&shown("etc/extra.conf")), 1);
    assert_eq!(stored(&shown("mnt/readme.txt")), 1);
    run(w.ops().args(["verify", name])).expect_code(0);
}
