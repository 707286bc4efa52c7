//! `archive`: old audit logs to encrypted cold storage, verified before deleted, losing nothing.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{
    finish, hold_flock, hold_table_lock, kill_after, run, spawn, stdout_bytes, tree, until_backend,
    Mount, World, BIN,
};

/// 600 rows, one every 2.4 hours over 60 days; ids 1..=600, the oldest first... in reverse:
/// row g is g*2.4 h old, so rows with g > 300 are older than 30 days.
fn seed(w: &World, rows: i64) {
    w.db().execute(&format!(
        "insert into audit_logs (created_at, actor, action, target, details) \
         select now() - g * interval '144 minutes', 'user' || (g % 7), 'login', 'host-' || g, \
                jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b'), 'ok', g % 2 = 0) \
         from generate_series(1, {rows}) g"
    ));
}

fn old_count(w: &World) -> i64 {
    w.db()
        .int("select count(*)::int8 from audit_logs where created_at < now() - interval '30 days'")
}

/// Digest of every row in id order, for exact before/after comparisons.
fn table_digest(w: &World) -> String {
    w.db().text("select coalesce(md5(string_agg(row_to_json(a)::text, E'\\n' order by id)), '') from audit_logs a")
}

fn cat_rows(w: &World, file: &str) -> Vec<serde_json::Value> {
    let out = stdout_bytes(
        w.ops()
            .args(["archive", "cat"])
            .arg(w.path("archive").join(file)),
    );
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn archive_moves_old_rows_to_a_verified_encrypted_file_and_keeps_new_ones() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let old = old_count(&w);
    assert!(old > 250 && old < 350, "{old}");
    let out = run(w.ops().args(["--json", "archive", "--days", "30"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["status"], "archived");
    assert_eq!(report["rows"], old);
    assert_eq!(report["rows_deleted"], old);
    assert_eq!(old_count(&w), 0);
    assert_eq!(
        w.db().int("select count(*)::int8 from audit_logs"),
        600 - old
    );

    let files = w.archives();
    assert_eq!(files.len(), 1);
    assert!(
        files[0].starts_with("logs_") && files[0].ends_with(".zst.enc"),
        "{files:?}"
    );
    let rows = cat_rows(&w, &files[0]);
    assert_eq!(rows.len() as i64, old);
    // Every column, jsonb as JSON, timestamps RFC 3339, primary-key order.
    let first = &rows[0];
    for col in ["id", "created_at", "actor", "action", "target", "details"] {
        assert!(first.get(col).is_some(), "missing {col} in {first}");
    }
    assert!(first["details"]["tags"].is_array(), "{first}");
    assert!(
        first["created_at"].as_str().unwrap_or("").contains('T'),
        "{first}"
    );
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert!(
        ids.windows(2).all(|p| p[0] < p[1]),
        "not in primary-key order"
    );

    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            w.path("archive")
                .join(files[0].replace(".zst.enc", ".manifest.json")),
        )
        .expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["body"]["state"], "pruned");
    assert_eq!(manifest["body"]["rows"], old);
    assert_eq!(manifest["body"]["table"], "audit_logs");
    // The archive is an envelope: decrypt + zstd -d gives the same JSON Lines.
    let decrypted = stdout_bytes(
        w.ops()
            .arg("decrypt")
            .arg(w.path("archive").join(&files[0])),
    );
    let plain = zstd::stream::decode_all(&decrypted[..]).expect("zstd");
    assert_eq!(plain.iter().filter(|b| **b == b'\n').count() as i64, old);

    run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
}

#[test]
fn nothing_old_enough_writes_no_file_and_exits_0() {
    let w = World::initialised(BIN);
    seed(&w, 100); // at most 10 days old
    let out = run(w.ops().args(["archive", "--days", "30"]));
    out.expect_code(0);
    assert!(out.stdout.contains("nothing to archive"), "{}", out.stdout);
    assert!(w.archives().is_empty());
    assert!(
        w.list("archive").iter().all(|n| n.starts_with('.')),
        "{:?}",
        w.list("archive")
    );
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let before = table_digest(&w);
    let out = run(w
        .ops()
        .args(["--json", "archive", "--dry-run", "--days", "30"]));
    out.expect_code(0);
    assert_eq!(out.json()["status"], "dry_run");
    assert_eq!(out.json()["rows"], old_count(&w));
    assert!(out.json()["estimated_file_bytes"].as_u64().unwrap_or(0) > 0);
    assert_eq!(out.json()["space_ok"], true);
    assert!(out.json()["free_bytes"].as_u64().unwrap_or(0) > 0);
    assert_eq!(table_digest(&w), before);
    assert!(w.archives().is_empty());
}

#[test]
fn dry_run_says_when_the_archive_dir_lacks_the_space_and_still_changes_nothing() {
    let w = World::initialised(BIN);
    seed_incompressible(&w);
    let _disk = Mount::tmpfs(&w.path("archive"), "64k");
    let report = dry_run_changing_nothing(&w);
    assert_eq!(report["space_ok"], false, "{report}");
    let (free, needed) = (
        report["free_bytes"].as_u64().expect("free_bytes"),
        report["estimated_file_bytes"]
            .as_u64()
            .expect("estimated_file_bytes"),
    );
    assert!(free < needed, "{free} bytes free, {needed} needed");
    let out = run(w.ops().args(["archive", "--dry-run", "--days", "30"]));
    out.expect_code(0);
    assert!(
        out.stdout.contains("the run would fail with exit 74")
            && out.stdout.contains(&format!("{free} bytes free")),
        "{}",
        out.stdout
    );
    // And the run it describes does fail that way.
    run(w.ops().args(["archive", "--days", "30"])).expect_code(74);
}

#[test]
fn verify_all_with_no_archive_exits_66() {
    let w = World::initialised(BIN);
    run(w.ops().args(["archive", "verify", "--all"]))
        .expect_code(66)
        .stderr_has("no archives to verify");
    let out = run(w.ops().args(["--json", "archive", "verify", "--all"]));
    out.expect_code(66);
    // As when archives fail: the (empty) results, then the error.
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.stdout));
    assert_eq!(docs.len(), 2, "{}", out.stdout);
    assert_eq!(docs[0], serde_json::json!([]));
    assert_eq!(docs[1]["exit_code"], 66);
}

#[test]
fn a_second_run_the_same_day_never_replaces_the_first_archive() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    run(w.ops().args(["archive", "--days", "45"])).expect_code(0);
    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
    let files = w.archives();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.contains(".2.zst.enc")), "{files:?}");
    let total: usize = files.iter().map(|f| cat_rows(&w, f).len()).sum();
    assert_eq!(
        total as i64 + w.db().int("select count(*)::int8 from audit_logs"),
        600
    );
}

#[test]
fn a_concurrent_run_exits_75_naming_the_holder() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let lock_path = w.path("archive/.archive-audit_logs.lock");
    std::fs::write(
        &lock_path,
        "pid 4242 on testhost, started 2026-11-23T10:00:00Z",
    )
    .expect("write");
    let held = hold_flock(&lock_path);
    let before = table_digest(&w);
    run(w.ops().args(["archive", "--days", "30"]))
        .expect_code(75)
        .stderr_has("pid 4242 on testhost");
    assert_eq!(table_digest(&w), before);
    drop(held);
    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
}

#[test]
fn a_run_on_another_host_holding_the_database_lock_exits_75() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let url = w.db().url.clone();
    common::block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(
            "select pg_advisory_lock(hashtextextended('ransomeye-ops archive audit_logs', 0))",
        )
        .execute(&mut conn)
        .await
        .expect("lock");
        let out = run(w.ops().args(["archive", "--days", "30"]));
        out.expect_code(75).stderr_has("PostgreSQL backend pid");
        drop(conn);
    });
    assert!(w.archives().is_empty());
}

#[test]
fn killed_before_the_archive_is_in_place_loses_nothing_and_the_rerun_completes_it() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let before = table_digest(&w);
    let old = old_count(&w);
    let out = run(w
        .ops()
        .args(["archive", "--days", "30"])
        .env("RANSOMEYE_FAILPOINT", "archive-before-commit"));
    assert_ne!(out.code, 0, "the failpoint must kill the run");
    assert_eq!(
        table_digest(&w),
        before,
        "rows changed by an interrupted run"
    );
    assert!(
        w.archives().is_empty(),
        "an archive appeared under its final name: {:?}",
        w.list("archive")
    );

    // The rerun completes the interrupted archive (its file was complete at its temp name)
    // instead of writing a second one.
    let out = run(w.ops().args(["--json", "archive", "--days", "30"]));
    out.expect_code(0);
    assert_eq!(
        out.json()["recovered"].as_array().map(Vec::len),
        Some(1),
        "{}",
        out.stdout
    );
    assert_eq!(old_count(&w), 0);
    let files = w.archives();
    assert_eq!(files.len(), 1);
    assert_eq!(cat_rows(&w, &files[0]).len() as i64, old);
    let leftovers: Vec<String> = w
        .list("archive")
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn killed_mid_prune_the_rerun_finishes_the_prune_without_archiving_twice() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let old = old_count(&w);
    let all_ids = w
        .db()
        .text("select string_agg(id::text, ',' order by id) from audit_logs");
    let out = run(w
        .ops()
        .args(["archive", "--days", "30", "--batch-size", "50"])
        .env("RANSOMEYE_FAILPOINT", "archive-mid-prune"));
    assert_ne!(out.code, 0);
    let remaining_old = old_count(&w);
    assert!(
        remaining_old > 0 && remaining_old < old,
        "prune should be partial: {remaining_old} of {old}"
    );

    let out = run(w.ops().args(["--json", "archive", "--days", "30"]));
    out.expect_code(0);
    assert_eq!(
        out.json()["recovered"].as_array().map(Vec::len),
        Some(1),
        "{}",
        out.stdout
    );
    assert_eq!(old_count(&w), 0);
    let files = w.archives();
    assert_eq!(
        files.len(),
        1,
        "the interrupted archive must be completed, not redone: {files:?}"
    );
    // Rows in the table plus rows in the archive are exactly the original rows, once each.
    let mut ids: Vec<i64> = cat_rows(&w, &files[0])
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect();
    let kept = w
        .db()
        .text("select coalesce(string_agg(id::text, ','), '') from audit_logs");
    ids.extend(
        kept.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i64>().expect("id")),
    );
    ids.sort_unstable();
    let expected: Vec<i64> = all_ids.split(',').map(|s| s.parse().expect("id")).collect();
    assert_eq!(ids, expected);
}

#[test]
fn a_row_inserted_with_an_old_timestamp_after_the_export_is_not_pruned_unarchived() {
    // Prune deletes the archived primary keys, not "everything older than the cutoff": a late
    // row with an old timestamp stays in the table until an archive holds it.
    let w = World::initialised(BIN);
    seed(&w, 600);
    let out = run(w
        .ops()
        .args(["archive", "--days", "30", "--batch-size", "50"])
        .env("RANSOMEYE_FAILPOINT", "archive-mid-prune"));
    assert_ne!(out.code, 0);
    w.db().execute("insert into audit_logs (created_at, actor) values (now() - interval '90 days', 'late writer')");
    let late = w
        .db()
        .int("select id::int8 from audit_logs where actor = 'late writer'");

    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
    let mut files = w.archives();
    // logs_<date>.zst.enc, then logs_<date>.2.zst.enc
    files.sort_by_key(|f| (f.len(), f.clone()));
    assert_eq!(
        files.len(),
        2,
        "the completed archive and one with the late row: {files:?}"
    );
    let in_first = cat_rows(&w, &files[0]).iter().any(|r| r["id"] == late);
    let second = cat_rows(&w, &files[1]);
    assert!(
        !in_first,
        "the late row cannot be in an archive written before it existed"
    );
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["id"], late);
    assert_eq!(second[0]["actor"], "late writer");
}

#[test]
fn tampered_archives_and_manifests_fail_verification_with_65() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
    let file = w.path("archive").join(&w.archives()[0]);
    let original = std::fs::read(&file).expect("read");

    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&file, &flipped).expect("write");
    run(w.ops().args(["archive", "verify"]).arg(&file))
        .expect_code(65)
        .stderr_has("failed verification");
    run(w
        .ops()
        .args(["archive", "cat"])
        .arg(&file)
        .stdout(Stdio::null()))
    .expect_code(65);

    std::fs::write(&file, &original[..original.len() - 10]).expect("write");
    run(w.ops().args(["archive", "verify", "--all"])).expect_code(65);

    std::fs::write(&file, &original).expect("write");
    run(w.ops().args(["archive", "verify"]).arg(&file)).expect_code(0);
    let manifest = w
        .path("archive")
        .join(w.archives()[0].replace(".zst.enc", ".manifest.json"));
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, text.replacen("\"rows\": ", "\"rows\": 1", 1)).expect("write");
    let out = run(w.ops().args(["archive", "verify"]).arg(&file));
    out.expect_code(65);
    assert!(out.stdout.contains("signature"), "{}", out.stdout);
}

#[test]
fn restore_brings_rows_back_exactly_including_nulls_unicode_big_jsonb_and_extra_columns() {
    let w = World::initialised(BIN);
    w.db().execute(
        "alter table audit_logs add column severity smallint, add column source inet, add column raw bytea;
         insert into audit_logs (created_at, actor, action, target, details, severity, source, raw) values
           (now() - interval '40 days', null, null, null, null, null, null, null),
           (now() - interval '41 days', 'Zoë 🦀 \"quoted\" \\ back', E'line\\nbreak\\ttab', 'ünïcödé', '{\"deep\": {\"a\": [1, 2, {\"b\": null}]}, \"s\": \"x\\u0001y\"}', 3, '10.0.0.1', '\\x00ff10'),
           (now() - interval '42 days', 'big', 'blob', 't', (select jsonb_object_agg('k' || g, repeat('v', 100)) from generate_series(1, 2000) g), 1, '::1', null),
           (now() - interval '1 day', 'recent', 'x', 'y', '{}', 2, null, null);",
    );
    let before = table_digest(&w);
    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
    assert_eq!(w.db().int("select count(*)::int8 from audit_logs"), 1);
    let file = w.path("archive").join(&w.archives()[0]);
    let out = run(w.ops().args(["--json", "archive", "restore"]).arg(&file));
    out.expect_code(0);
    assert_eq!(out.json()["rows_inserted"], 3);
    assert_eq!(
        table_digest(&w),
        before,
        "restored rows differ from the originals"
    );
    // Restoring again inserts nothing: every primary key exists.
    let out = run(w.ops().args(["--json", "archive", "restore"]).arg(&file));
    out.expect_code(0);
    assert_eq!(out.json()["rows_inserted"], 0);
    assert_eq!(out.json()["rows_skipped"], 3);
}

#[test]
fn list_shows_each_archive_with_rows_and_state() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
    let out = run(w.ops().args(["--json", "archive", "list"]));
    out.expect_code(0);
    let list = out.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["state"], "pruned");
    assert_eq!(
        list[0]["rows"],
        600 - w.db().int("select count(*)::int8 from audit_logs")
    );
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let before = table_digest(&w);

    // Archive directory missing: 73.
    std::fs::rename(w.path("archive"), w.path("archive.away")).expect("rename");
    run(w.ops().args(["archive", "--days", "30"]))
        .expect_code(73)
        .stderr_has("[archive] dir");
    std::fs::rename(w.path("archive.away"), w.path("archive")).expect("rename");

    // Table or column missing: 78.
    w.edit_config(|t| t.replace("table = \"audit_logs\"", "table = \"audit_log\""));
    run(w.ops().args(["archive", "--days", "30"]))
        .expect_code(78)
        .stderr_has("audit_log");
    w.edit_config(|t| {
        t.replace("table = \"audit_log\"", "table = \"audit_logs\"")
            .replace("time_column = \"created_at\"", "time_column = \"created\"")
    });
    run(w.ops().args(["archive", "--days", "30"]))
        .expect_code(78)
        .stderr_has("created");
    w.edit_config(|t| t.replace("time_column = \"created\"", "time_column = \"created_at\""));

    // Database unreachable: 69.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    run(w.ops().args(["archive", "--days", "30"]).env(
        "RANSOMEYE_DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:{port}/x"),
    ))
    .expect_code(69);

    assert_eq!(table_digest(&w), before);
    assert!(w.archives().is_empty());
}

/// 3000 rows older than 40 days with incompressible details: their archive cannot fit in 64 KiB.
fn seed_incompressible(w: &World) {
    w.db().execute(
        "insert into audit_logs (created_at, actor, details) \
         select now() - interval '40 days' - g * interval '1 minute', 'u', \
                jsonb_build_object('noise', md5(random()::text) || md5(random()::text) || md5(random()::text)) \
         from generate_series(1, 3000) g",
    );
}

#[test]
fn disk_full_exits_74_deletes_nothing_and_leaves_no_partial_file() {
    let w = World::initialised(BIN);
    seed_incompressible(&w);
    let before = table_digest(&w);
    let _disk = Mount::tmpfs(&w.path("archive"), "64k");
    let out = run(w.ops().args(["archive", "--days", "30"]));
    out.expect_code(74).stderr_has("No space left");
    assert_eq!(
        table_digest(&w),
        before,
        "rows were deleted although the archive failed"
    );
    let left = w.list("archive");
    assert!(
        left.iter().all(|n| n.starts_with(".archive-")),
        "partial files left: {left:?}"
    );
}

/// Every id in the table and in every archive, sorted (duplicates kept, so they show).
fn all_ids(w: &World) -> Vec<i64> {
    let kept = w
        .db()
        .text("select coalesce(string_agg(id::text, ','), '') from audit_logs");
    let mut ids: Vec<i64> = kept
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("id"))
        .collect();
    for file in w.archives() {
        ids.extend(
            cat_rows(w, &file)
                .iter()
                .map(|r| r["id"].as_i64().expect("id")),
        );
    }
    ids.sort_unstable();
    ids
}

#[test]
fn sigkill_at_spread_moments_then_rerun_loses_and_duplicates_nothing() {
    // The long version (hundreds of random kills) is scripts/crash-archive; this is the handful.
    for delay_ms in [0u64, 20, 40, 80, 160] {
        let w = World::initialised(BIN);
        seed(&w, 3000);
        let original = all_ids(&w);
        kill_after(
            w.ops()
                .args(["archive", "--days", "30", "--batch-size", "100"]),
            std::time::Duration::from_millis(delay_ms),
        );
        run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
        run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
        assert_eq!(
            all_ids(&w),
            original,
            "rows lost or duplicated after a kill at {delay_ms} ms"
        );
        assert_eq!(old_count(&w), 0);
        let left = w.list("archive");
        assert!(
            left.iter().all(|n| !n.contains(".tmp-")),
            "temp files after the rerun: {left:?}"
        );
    }
}

#[test]
fn an_archive_from_another_key_is_refused_with_77_by_verify_and_cat() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
    let file = w.path("archive").join(&w.archives()[0]);
    // Another installation's archive key in place of ours (as after restoring the wrong key backup).
    let key = w.path("keys/archive.key");
    std::fs::remove_file(&key).expect("rm");
    ransomeye_kernel::keys::KeyDir::new(w.path("keys"))
        .create_symmetric(
            &ransomeye_kernel::keys::SymmetricKey::generate(
                ransomeye_kernel::keys::KeyPurpose::Archive,
            )
            .expect("generate"),
        )
        .expect("create");
    let out = run(w.ops().args(["archive", "verify"]).arg(&file));
    out.expect_code(65);
    assert!(out.stdout.contains("archive key"), "{}", out.stdout);
    run(w
        .ops()
        .args(["archive", "cat"])
        .arg(&file)
        .stdout(Stdio::null()))
    .expect_code(77)
    .stderr_has("archive key");
}

/// Every file under the archive directory with its bytes, to show that a run changed nothing.
fn archive_files(w: &World) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    tree(&w.path("archive"))
        .into_iter()
        .filter(|(_, e)| !e.is_dir)
        .map(|(path, e)| (path, e.bytes))
        .collect()
}

/// A dry run (`--json archive --dry-run --days 30`) that must leave the table and the archive
/// directory exactly as they were; returns its report.
#[track_caller]
fn dry_run_changing_nothing(w: &World) -> serde_json::Value {
    let (rows, files) = (table_digest(w), archive_files(w));
    let out = run(w
        .ops()
        .args(["--json", "archive", "--dry-run", "--days", "30"]));
    out.expect_code(0);
    assert_eq!(out.json()["status"], "dry_run");
    assert_eq!(table_digest(w), rows, "a dry run changed the table");
    let after = archive_files(w);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "a dry run changed the archive directory's names"
    );
    assert!(after == files, "a dry run changed a file's contents");
    out.json()
}

#[test]
fn dry_run_changes_nothing_in_any_interrupted_state_and_reports_what_it_would_finish() {
    // No lock file yet: the dry run must not create one.
    let w = World::initialised(BIN);
    seed(&w, 600);
    assert!(w.list("archive").is_empty(), "{:?}", w.list("archive"));
    assert_eq!(dry_run_changing_nothing(&w)["rows"], old_count(&w));

    for failpoint in [
        "archive-before-commit", // manifest written, archive at its temp name
        "archive-before-prune",  // archive in place and verified, no row deleted
        "archive-mid-prune",     // some batches deleted
    ] {
        let w = World::initialised(BIN);
        seed(&w, 600);
        let original = all_ids(&w);
        let out = run(w
            .ops()
            .args(["archive", "--days", "30", "--batch-size", "50"])
            .env("RANSOMEYE_FAILPOINT", failpoint));
        assert_ne!(out.code, 0, "{failpoint} must kill the run");
        // What an export killed before its commit leaves, beside the interrupted run.
        let stray = w.path("archive/.logs_2020-01-01.zst.enc.tmp-AbCdEf");
        std::fs::write(&stray, b"half an archive").expect("write");

        let report = dry_run_changing_nothing(&w);
        let recovered = report["recovered"].as_array().expect("recovered");
        assert_eq!(recovered.len(), 1, "{failpoint}: {report}");
        let removed = report["removed_temp_files"].as_array().expect("temps");
        assert_eq!(removed.len(), 1, "{failpoint}: {report}");
        assert_eq!(removed[0].as_str(), stray.to_str(), "{failpoint}");
        // The old rows are the interrupted archive's: the run would prune them, not archive them.
        assert_eq!(report["rows"], 0, "{failpoint}: {report}");
        // A second dry run sees the same.
        assert_eq!(
            dry_run_changing_nothing(&w)["recovered"],
            report["recovered"]
        );

        let out = run(w.ops().args(["--json", "archive", "--days", "30"]));
        out.expect_code(0);
        assert_eq!(out.json()["recovered"], report["recovered"], "{failpoint}");
        assert_eq!(old_count(&w), 0, "{failpoint}");
        assert_eq!(
            all_ids(&w),
            original,
            "{failpoint}: rows lost or duplicated"
        );
        assert!(
            !stray.exists(),
            "{failpoint}: the temp file was not removed"
        );
        run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
    }
}

#[test]
fn orphans_are_reported_by_list_and_verify_all_and_never_deleted_by_a_run() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let original = all_ids(&w);
    run(w.ops().args(["archive", "--days", "45"])).expect_code(0);
    let first = w.archives()[0].clone();
    // A data file without its manifest (say, copied in by hand).
    let lone_data = w.path("archive/logs_2020-01-01.zst.enc");
    std::fs::copy(w.path("archive").join(&first), &lone_data).expect("copy");
    // A manifest without its data file: a run killed before the rename whose temp archive was
    // then lost (as after a power cut).
    let out = run(w
        .ops()
        .args(["archive", "--days", "30"])
        .env("RANSOMEYE_FAILPOINT", "archive-before-commit"));
    assert_ne!(out.code, 0);
    for name in w.list("archive") {
        if name.contains(".zst.enc.tmp-") {
            std::fs::remove_file(w.path("archive").join(name)).expect("rm");
        }
    }
    let lone_manifest = w
        .list("archive")
        .into_iter()
        .find(|n| {
            n.ends_with(".manifest.json")
                && !w
                    .archives()
                    .contains(&n.replace(".manifest.json", ".zst.enc"))
        })
        .map(|n| w.path("archive").join(n))
        .expect("the killed run's manifest");
    let kept = [
        (lone_data.clone(), std::fs::read(&lone_data).expect("read")),
        (
            lone_manifest.clone(),
            std::fs::read(&lone_manifest).expect("read"),
        ),
    ];
    let name = |p: &std::path::Path| p.file_name().expect("name").to_string_lossy().into_owned();

    let out = run(w.ops().args(["--json", "archive", "list"]));
    out.expect_code(65)
        .stderr_has(&name(&lone_data))
        .stderr_has(&name(&lone_manifest))
        .stderr_has("hint: an orphan is");
    // With --json, the list comes first on stdout, then the error object.
    let listed: serde_json::Value = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter()
        .next()
        .expect("a JSON list")
        .expect("JSON");
    let orphans: Vec<&serde_json::Value> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| !e["orphan"].is_null())
        .collect();
    assert_eq!(orphans.len(), 2, "{listed}");
    run(w.ops().args(["archive", "list"]))
        .expect_code(65)
        .stderr_has("2 orphan files");

    let out = run(w.ops().args(["archive", "verify", "--all"]));
    out.expect_code(65);
    assert!(
        out.stdout.contains(&format!(
            "ok      {}",
            w.path("archive").join(&first).display()
        )),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("FAILED").count(), 2, "{}", out.stdout);
    assert_eq!(out.stdout.matches("orphan").count(), 2, "{}", out.stdout);

    // A run archives what is old, reports the orphans, and leaves them exactly as they were.
    let out = run(w.ops().args(["--json", "archive", "--days", "30"]));
    out.expect_code(0);
    assert_eq!(
        out.json()["orphans"].as_array().map(Vec::len),
        Some(2),
        "{}",
        out.stdout
    );
    for (path, bytes) in &kept {
        assert_eq!(
            &std::fs::read(path).expect("orphan kept"),
            bytes,
            "{}",
            path.display()
        );
    }
    assert_eq!(old_count(&w), 0);
    // Every row once, in the table or in a real archive (the copied file aside).
    std::fs::remove_file(&lone_data).expect("rm");
    assert_eq!(all_ids(&w), original);
    // Once the operator has resolved them, nothing is reported.
    std::fs::remove_file(&lone_manifest).expect("rm");
    run(w.ops().args(["archive", "list"])).expect_code(0);
    run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
}

#[test]
fn a_row_updated_between_export_and_prune_stays_and_a_later_run_archives_its_new_version() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let original = all_ids(&w);
    // Killed with the archive written and verified, before the prune.
    let out = run(w
        .ops()
        .args(["archive", "--days", "30"])
        .env("RANSOMEYE_FAILPOINT", "archive-before-prune"));
    assert_ne!(out.code, 0);
    let first = w.archives()[0].clone();
    let archived = cat_rows(&w, &first);
    let changed = archived[archived.len() / 2]["id"].as_i64().expect("id");
    // A writer changes an archived row in that window.
    w.db().execute(&format!(
        "update audit_logs set actor = 'changed after the export' where id = {changed}"
    ));

    // The rerun completes the prune from the archive on disk: every row but the changed one.
    let out = run(w.ops().args(["--json", "archive", "--days", "30"]));
    out.expect_code(0);
    assert_eq!(
        out.json()["recovered"].as_array().map(Vec::len),
        Some(1),
        "{}",
        out.stdout
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            w.path("archive")
                .join(first.replace(".zst.enc", ".manifest.json")),
        )
        .expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["body"]["rows_deleted"], archived.len() as i64 - 1);
    // ... and its export archives the changed row's new version, alone.
    let later: Vec<String> = w.archives().into_iter().filter(|f| *f != first).collect();
    assert_eq!(later.len(), 1, "{:?}", w.archives());
    let rows = cat_rows(&w, &later[0]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], changed);
    assert_eq!(rows[0]["actor"], "changed after the export");
    assert_eq!(old_count(&w), 0);
    // Nothing lost; the only id in two archives is the changed row, in two different versions.
    let mut expected = original;
    expected.push(changed);
    expected.sort_unstable();
    assert_eq!(all_ids(&w), expected);
    let old_version = archived
        .iter()
        .find(|r| r["id"] == changed)
        .expect("old version");
    assert_ne!(old_version["actor"], "changed after the export");
}

/// A configuration like `w`'s whose archive directory is `archive2`: another run on the same
/// table (as from another host sharing the database).
fn second_config(w: &World) -> PathBuf {
    std::fs::create_dir(w.path("archive2")).expect("mkdir");
    w.config_copy(
        "second.toml",
        &format!("\"{}\"", w.path("archive").display()),
        &format!("\"{}\"", w.path("archive2").display()),
    )
}

#[test]
fn a_run_with_another_archive_dir_exits_75_at_once_naming_the_live_holder() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let original = all_ids(&w);
    let second = second_config(&w);
    let url = w.db().url.clone();
    common::block_on(async {
        use sqlx::Connection;
        // Hold the first run inside its export: it waits for the table, holding the run's lock.
        let mut blocker = hold_table_lock(&url, "access exclusive").await;
        let first = spawn(w.ops().args(["archive", "--days", "30"]));
        let mut watch = sqlx::PgConnection::connect(&url).await.expect("connect");
        until_backend(&mut watch, first.id(), "wait_event_type = 'Lock'").await;

        let started = std::time::Instant::now();
        let out = run(w.ops_with_config(&second).args(["archive", "--days", "30"]));
        let took = started.elapsed();
        out.expect_code(75)
            .stderr_has("another archive run for table audit_logs is running")
            .stderr_has(&format!("ransomeye-ops archive pid {}", first.id()));
        assert!(!out.stderr.contains("slow statement"), "{}", out.stderr);
        // At once: the live holder is not waited for (the old code waited 5 s for it).
        assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
        assert!(
            w.list("archive2").iter().all(|n| n.starts_with('.')),
            "{:?}",
            w.list("archive2")
        );

        sqlx::raw_sql("commit")
            .execute(&mut blocker)
            .await
            .expect("commit");
        finish(first).expect_code(0);
    });
    assert_eq!(old_count(&w), 0);
    assert_eq!(all_ids(&w), original);
}

#[test]
fn a_rerun_waits_briefly_for_a_killed_runs_lingering_session_then_completes() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let original = all_ids(&w);
    let url = w.db().url.clone();
    common::block_on(async {
        use sqlx::Connection;
        // A run killed while its backend waits for the table: the backend, and the run's
        // database lock, outlive the process until the table is free again.
        let mut blocker = hold_table_lock(&url, "access exclusive").await;
        let mut killed = spawn(w.ops().args(["archive", "--days", "30"]));
        let mut watch = sqlx::PgConnection::connect(&url).await.expect("connect");
        until_backend(&mut watch, killed.id(), "wait_event_type = 'Lock'").await;
        killed.kill().expect("kill");
        killed.wait().expect("wait");

        let rerun = spawn(w.ops().args(["archive", "--days", "30"]));
        // The rerun is retrying the lock held by the dead run's session; free the table.
        until_backend(&mut watch, rerun.id(), "query like '%advisory_lock(%'").await;
        sqlx::raw_sql("commit")
            .execute(&mut blocker)
            .await
            .expect("commit");
        finish(rerun).expect_code(0);
    });
    assert_eq!(old_count(&w), 0);
    assert_eq!(all_ids(&w), original);
}

#[test]
fn a_row_updated_while_the_prune_waits_is_kept_and_archived_by_the_next_run() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    let original = all_ids(&w);
    let changed = w
        .db()
        .int("select id::int8 from audit_logs order by created_at limit 1");
    let url = w.db().url.clone();
    common::block_on(async {
        use sqlx::Connection;
        // SHARE lets the export read but stops the prune's first delete: the run waits with
        // its archive written and verified, and the row is updated in that window.
        let mut writer = hold_table_lock(&url, "share").await;
        let run = spawn(w.ops().args(["--json", "archive", "--days", "30"]));
        let mut watch = sqlx::PgConnection::connect(&url).await.expect("connect");
        until_backend(
            &mut watch,
            run.id(),
            "wait_event_type = 'Lock' and query like '%delete from%'",
        )
        .await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "update audit_logs set actor = 'changed during the prune' where id = {changed}; commit"
        )))
        .execute(&mut writer)
        .await
        .expect("update");
        let out = finish(run);
        out.expect_code(0);
        let report = out.json();
        assert_eq!(
            report["rows_deleted"].as_i64(),
            report["rows"].as_i64().map(|n| n - 1),
            "{report}"
        );
    });
    let first = w.archives()[0].clone();
    let old_version = cat_rows(&w, &first)
        .into_iter()
        .find(|r| r["id"] == changed)
        .expect("archived");
    assert_ne!(old_version["actor"], "changed during the prune");
    assert_eq!(
        w.db().text(&format!(
            "select actor from audit_logs where id = {changed}"
        )),
        "changed during the prune"
    );

    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
    let later: Vec<String> = w.archives().into_iter().filter(|f| *f != first).collect();
    assert_eq!(later.len(), 1, "{:?}", w.archives());
    let rows = cat_rows(&w, &later[0]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["actor"], "changed during the prune");
    let mut expected = original;
    expected.push(changed);
    expected.sort_unstable();
    assert_eq!(all_ids(&w), expected);
}

#[test]
fn a_run_keeps_the_temp_archive_of_another_tables_interrupted_run_in_the_same_dir() {
    let w = World::initialised(BIN);
    seed(&w, 600);
    w.db().execute(
        "create table other_logs (like audit_logs including all); \
         insert into other_logs select * from audit_logs",
    );
    let other = w.config_copy(
        "other.toml",
        "table = \"audit_logs\"",
        "table = \"other_logs\"",
    );
    let out = run(w
        .ops_with_config(&other)
        .args(["archive", "--days", "30"])
        .env("RANSOMEYE_FAILPOINT", "archive-before-commit"));
    assert_ne!(out.code, 0);
    let temps = |w: &World| -> Vec<String> {
        w.list("archive")
            .into_iter()
            .filter(|n| n.contains(".tmp-"))
            .collect()
    };
    let left = temps(&w);
    assert_eq!(left.len(), 1, "{:?}", w.list("archive"));

    // audit_logs' run leaves other_logs' interrupted archive alone...
    run(w.ops().args(["archive", "--days", "30"])).expect_code(0);
    assert_eq!(temps(&w), left);
    // ... and other_logs' next run completes it.
    let out = run(w
        .ops_with_config(&other)
        .args(["--json", "archive", "--days", "30"]));
    out.expect_code(0);
    assert_eq!(
        out.json()["recovered"].as_array().map(Vec::len),
        Some(1),
        "{}",
        out.stdout
    );
    assert!(temps(&w).is_empty(), "{:?}", w.list("archive"));
    run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
}

#[test]
fn the_prune_is_unpaced_by_default_and_paced_into_short_transactions_when_configured() {
    // Unpaced (the default): exactly --batch-size rows per transaction, no rest.
    let w = World::initialised(BIN);
    seed(&w, 3000);
    let old = old_count(&w);
    let out = run(w.ops().args([
        "--json",
        "archive",
        "--days",
        "30",
        "--no-vacuum",
        "--batch-size",
        "400",
    ]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["rows_deleted"], old);
    assert_eq!(
        report["prune_transactions"].as_i64(),
        Some((old + 399) / 400),
        "{report}"
    );
    assert_eq!(report["prune_rest_ms"].as_f64(), Some(0.0), "{report}");

    // Paced: a --batch-size far above the rows still deletes in several short transactions,
    // resting between them.
    let w = World::initialised(BIN);
    seed(&w, 3000);
    let old = old_count(&w);
    w.edit_config(|t| {
        let edited = t.replace(
            "[archive]\n",
            "[archive]\nprune_slice_ms = 20\nprune_rest_percent = 50\n",
        );
        assert_ne!(edited, t, "the config has an [archive] section");
        edited
    });
    let out = run(w
        .ops()
        .args(["--json", "archive", "--days", "30", "--no-vacuum"]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["rows_deleted"], old);
    let transactions = report["prune_transactions"].as_u64().expect("transactions");
    assert!(
        transactions >= 2,
        "{old} rows in {transactions} transactions: {report}"
    );
    assert!(
        report["prune_rest_ms"].as_f64().expect("rest") > 0.0,
        "{report}"
    );
}

#[test]
fn a_role_that_is_not_superuser_archives_and_prunes_without_compressing_wal() {
    // The prune compresses its WAL only where the role may (superuser); anyone else with the
    // table's privileges prunes all the same.
    let w = World::initialised(BIN);
    seed(&w, 600);
    let old = old_count(&w);
    w.db().execute(&format!(
        "do $$ begin if not exists (select 1 from pg_roles where rolname = 'ransomeye_archiver') then \
           create role ransomeye_archiver login nosuperuser; end if; end $$; \
         grant connect on database {} to ransomeye_archiver; \
         grant select, delete on audit_logs to ransomeye_archiver;",
        w.db().name
    ));
    let archiver = w.db().url.replacen("postgres@", "ransomeye_archiver@", 1);
    assert_ne!(archiver, w.db().url, "test needs a URL with a user part");
    let out = run(w.ops().env("RANSOMEYE_DATABASE_URL", &archiver).args([
        "--json",
        "archive",
        "--days",
        "30",
        "--no-vacuum",
    ]));
    out.expect_code(0);
    assert_eq!(out.json()["rows_deleted"], old);
    assert_eq!(old_count(&w), 0);
    run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
}
