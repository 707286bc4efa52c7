//! `init`: configuration and keys of a new installation, never overwriting anything.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{run, services, World, BIN};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn init_creates_config_and_keys_with_private_modes() {
    let w = World::empty(BIN);
    let out = w.init_with(
        "postgres://ops@127.0.0.1:5432/ransomeye",
        "nats://127.0.0.1:4222",
    );
    out.expect_code(0);
    let admin = ransomeye_kernel::access::admin_gid();
    // With the group, directories are group-writable and setgid so that members can operate.
    let (file_mode, dir_mode) = if admin.is_some() {
        (0o640, 0o2770)
    } else {
        (0o600, 0o700)
    };
    for key in ["signing.key", "archive.key", "backup.key"] {
        let p = w.path("keys").join(key);
        assert_eq!(mode(&p), file_mode, "{key}");
        if let Some(gid) = admin {
            assert_eq!(
                std::fs::metadata(&p).expect("meta").gid(),
                gid,
                "{key} group"
            );
        }
    }
    assert_eq!(mode(&w.config), file_mode);
    for dir in ["keys", "archive", "backups", "etc"] {
        assert_eq!(mode(&w.path(dir)), dir_mode, "{dir}");
        if let Some(gid) = admin {
            let group = std::fs::metadata(w.path(dir)).expect("meta").gid();
            assert_eq!(group, gid, "{dir} group");
        }
    }
    assert_eq!(
        std::fs::metadata(w.path("keys/archive.key"))
            .expect("meta")
            .len(),
        32
    );
    // The printed trust key is the one in the config, and no secret is printed.
    let config = std::fs::read_to_string(&w.config).expect("config");
    let public_key = config
        .lines()
        .find_map(|l| l.strip_prefix("public_key = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("public_key in config");
    assert!(out.stdout.contains(public_key), "{}", out.stdout);
    let archive_key = hex::encode(std::fs::read(w.path("keys/archive.key")).expect("key"));
    assert!(!out.stdout.contains(&archive_key) && !out.stderr.contains(&archive_key));
}

#[test]
fn init_json_reports_public_parts_only() {
    let w = World::empty(BIN);
    let out = run(w
        .init_command(w.ops(), "postgres://a@127.0.0.1/b", "nats://127.0.0.1:4222")
        .arg("--json"));
    out.expect_code(0);
    let v = out.json();
    assert_eq!(v["trust"]["version"], 1);
    assert_eq!(v["trust"]["public_key"].as_str().map(str::len), Some(64));
    assert_eq!(v["key_ids"]["archive"].as_str().map(str::len), Some(16));
}

#[test]
fn init_refuses_to_overwrite_config_or_keys() {
    let w = World::empty(BIN);
    let s = services();
    w.init_with(&s.database_url, &s.nats_url).expect_code(0);
    let before = std::fs::read(w.path("keys/signing.key")).expect("key");
    let config_before = std::fs::read(&w.config).expect("config");
    w.init_with(&s.database_url, &s.nats_url)
        .expect_code(73)
        .stderr_has("refusing to overwrite");
    assert_eq!(
        std::fs::read(w.path("keys/signing.key")).expect("key"),
        before
    );
    assert_eq!(std::fs::read(&w.config).expect("config"), config_before);

    // A key left alone without a config is protected too, and no config is written.
    let w2 = World::empty(BIN);
    std::fs::create_dir_all(w2.path("keys")).expect("mkdir");
    std::fs::write(w2.path("keys/backup.key"), [1u8; 32]).expect("write");
    w2.init_with(&s.database_url, &s.nats_url)
        .expect_code(73)
        .stderr_has("backup.key");
    assert!(!w2.config.exists());
    assert_eq!(w2.list("keys"), vec!["backup.key".to_string()]);
}

#[test]
fn init_with_a_bad_url_changes_nothing() {
    let w = World::empty(BIN);
    w.init_with("mysql://root@localhost/x", "nats://127.0.0.1:4222")
        .expect_code(64)
        .stderr_has("postgres://");
    assert!(w.list("").is_empty(), "{:?}", w.list(""));
}

#[test]
fn init_where_a_directory_cannot_be_created_fails_with_73_and_leaves_no_keys() {
    let w = World::empty(BIN);
    // A regular file where the backup directory should be: creation fails, for root too.
    std::fs::write(w.path("backups"), b"not a dir").expect("write");
    let out = w.init_with("postgres://a@127.0.0.1/b", "nats://127.0.0.1:4222");
    out.expect_code(73).stderr_has("backups");
    assert!(!w.config.exists());
    assert!(
        w.list("keys").is_empty(),
        "keys left behind: {:?}",
        w.list("keys")
    );
}
