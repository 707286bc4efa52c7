//! Signed manifests (backup and archive): verified over the bytes of their body as stored, so
//! that manifests written by earlier versions keep verifying and later versions may add fields.
//!
//! `fixtures/format1` holds a backup and an archive written by the format-1 code (see its
//! README); these tests run the real binary on copies of them. That backup also holds the
//! keys directory, as backups did before keys were excluded: restoring it must not write them
//! back.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{run, TestDb, World, BIN};
use ransomeye_kernel::keys::KeyDir;

const BACKUP: &str = "ransomeye_20261201T152752Z";
const ARCHIVE: &str = "logs_2026-12-01";

/// A world holding copies of the format-1 fixtures: keys, backups, archive, and a configuration
/// with the fixtures' trust key.
fn fixture_world() -> World {
    let w = World::empty(BIN);
    let fixtures = common::repo_root().join("ops/tests/fixtures/format1");
    for dir in ["keys", "backups", "archive", "etc"] {
        std::fs::create_dir_all(w.path(dir)).expect("mkdir");
        std::fs::set_permissions(w.path(dir), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
    }
    for dir in ["keys", "backups", "archive"] {
        for entry in std::fs::read_dir(fixtures.join(dir)).expect("fixtures") {
            let entry = entry.expect("entry");
            let to = w.path(dir).join(entry.file_name());
            std::fs::copy(entry.path(), &to).expect("copy");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    let config = std::fs::read_to_string(fixtures.join("kernel.toml"))
        .expect("config")
        .replace("/tmp/rfx/etc/keys", &w.path("keys").display().to_string())
        .replace("/tmp/rfx/archive", &w.path("archive").display().to_string())
        .replace("/tmp/rfx/backups", &w.path("backups").display().to_string())
        .replace("include = [\"/tmp/rfx/etc\"]", "include = []");
    std::fs::write(&w.config, config).expect("write config");
    std::fs::set_permissions(&w.config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    w
}

/// The signed message of a stored body, as docs/FORMAT.md section 4 defines it: the body's
/// bytes without the whitespace between tokens. Written here from the document, not shared
/// with the code under test.
fn signed_message(body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    for b in body.bytes() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !b" \t\n\r".contains(&b) {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// Adds a member the format-1 code does not know to the manifest's body and signs the result
/// over its stored bytes with the fixtures' trust key.
fn add_unknown_field_and_sign(w: &World, manifest: &Path) {
    let text = std::fs::read_to_string(manifest).expect("manifest");
    let added = text.replacen(
        "\"format\": 1,\n",
        "\"format\": 1,\n    \"added_later\": {\"note\": \"caf\\u00e9 \\\"x\\\" ü\", \"n\": [1.50, -0]},\n",
        1,
    );
    assert_ne!(added, text, "field added");
    let start = added.find("\"body\": ").expect("body") + "\"body\": ".len();
    let end = added.find(",\n  \"signing_key_id\"").expect("end of body");
    let key = KeyDir::new(w.path("keys"))
        .load_signing()
        .expect("signing key");
    let signature = hex::encode(key.sign(&signed_message(&added[start..end])));
    let at = added.find("\"signature\": \"").expect("signature") + "\"signature\": \"".len();
    let signed = format!("{}{signature}{}", &added[..at], &added[at + 128..]);
    std::fs::write(manifest, signed).expect("write manifest");
}

#[test]
fn backup_and_archive_manifests_written_by_format_1_still_verify() {
    let w = fixture_world();
    let out = run(w.ops().args(["verify", "--all"]));
    out.expect_code(0);
    assert!(
        out.stdout.contains(&format!("{BACKUP}: verified")),
        "{}",
        out.stdout
    );
    let list = run(w.ops().args(["--json", "backup", "list"]));
    list.expect_code(0);
    assert_eq!(list.json()[0]["state"], "ok", "{}", list.stdout);
    run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
}

#[test]
fn a_backup_manifest_with_a_field_added_later_verifies_and_any_changed_byte_fails() {
    let w = fixture_world();
    let manifest = w.path("backups").join(format!("{BACKUP}.manifest.json"));
    add_unknown_field_and_sign(&w, &manifest);
    run(w.ops().args(["verify", BACKUP])).expect_code(0);
    let list = run(w.ops().args(["--json", "backup", "list"]));
    list.expect_code(0);
    assert_eq!(list.json()[0]["state"], "ok", "{}", list.stdout);

    let signed = std::fs::read(&manifest).expect("read");
    for (what, from, to) in [
        ("the added field", "1.50", "1.51"),
        ("an escape in it", "\\u00e9", "\\u00e8"),
        ("an escaped string", "\\\\ tab", "\\\\ taB"),
    ] {
        let text = String::from_utf8(signed.clone()).expect("utf-8");
        let changed = text.replacen(from, to, 1);
        assert_ne!(changed, text, "{what}: edit applied");
        std::fs::write(&manifest, changed).expect("write");
        run(w.ops().args(["verify", BACKUP]))
            .expect_code(65)
            .stderr_has("signature does not verify");
    }
}

#[test]
fn an_archive_manifest_with_a_field_added_later_verifies_and_any_changed_byte_fails() {
    let w = fixture_world();
    let manifest = w.path("archive").join(format!("{ARCHIVE}.manifest.json"));
    add_unknown_field_and_sign(&w, &manifest);
    run(w.ops().args(["archive", "verify", "--all"])).expect_code(0);
    let text = std::fs::read_to_string(&manifest).expect("read");
    let changed = text.replacen("[1.50, -0]", "[1.5, -0]", 1);
    assert_ne!(changed, text);
    std::fs::write(&manifest, changed).expect("write");
    run(w.ops().args(["archive", "verify", "--all"])).expect_code(65);
}

#[test]
fn restoring_a_backup_that_holds_keys_never_writes_into_the_keys_dir() {
    let w = fixture_world();
    // The backup's files go to DIR/tmp/rfx/etc/…; make DIR/tmp/rfx/etc/keys the live keys
    // directory, as `--files-to / --yes` on the machine that made it would find it.
    let files_to = w.path("restored");
    let live_keys = files_to.join("tmp/rfx/etc/keys");
    std::fs::create_dir_all(&live_keys).expect("mkdir");
    std::fs::set_permissions(&live_keys, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut inodes = Vec::new();
    for key in ["signing.key", "archive.key", "backup.key"] {
        let to = live_keys.join(key);
        std::fs::copy(w.path("keys").join(key), &to).expect("copy key");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        inodes.push((to.clone(), std::fs::metadata(&to).expect("meta").ino()));
    }
    let config = std::fs::read_to_string(&w.config)
        .expect("config")
        .replacen(
            &format!("dir = {:?}", w.path("keys").display().to_string()),
            &format!("dir = {:?}", live_keys.display().to_string()),
            1,
        );
    std::fs::write(&w.config, config).expect("write config");

    let target = TestDb::empty();
    let out = run(w
        .ops()
        .args([
            "--json",
            "restore",
            BACKUP,
            "--yes",
            "--target-database-url",
            &target.url,
            "--files-to",
        ])
        .arg(&files_to));
    out.expect_code(0);
    let outcome = out.json()["outcome"].clone();
    // kernel.toml (stored twice in that backup) once, and the file with the awkward name.
    assert_eq!(outcome["files_restored"], 2, "{outcome}");
    let mut excluded: Vec<String> = outcome["files_excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .map(|e| e["path"].as_str().expect("path").to_string())
        .collect();
    excluded.sort();
    assert_eq!(
        excluded,
        ["archive.key", "backup.key", "signing.key"]
            .map(|k| live_keys.join(k).display().to_string())
    );
    for (key, ino) in inodes {
        assert_eq!(
            std::fs::metadata(&key).expect("key").ino(),
            ino,
            "{} was replaced",
            key.display()
        );
    }
    assert!(files_to.join("tmp/rfx/etc/kernel.toml").exists());
}
