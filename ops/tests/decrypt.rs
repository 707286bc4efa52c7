//! `decrypt`: exact plaintext from a verified envelope, clear failures otherwise.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::{run, stdout_bytes, World, BIN};
use ransomeye_kernel::envelope::{EnvelopeWriter, Purpose};
use ransomeye_kernel::keys::{KeyDir, KeyPurpose};

/// Encrypts `plain` with the world's archive key, as the archive command will.
fn archive_file(w: &World, name: &str, plain: &[u8]) -> std::path::PathBuf {
    let key = KeyDir::new(w.path("keys"))
        .load_symmetric(KeyPurpose::Archive)
        .expect("archive key");
    let path = w.path(name);
    let file = std::fs::File::create(&path).expect("create");
    let mut env = EnvelopeWriter::new(file, &key, Purpose::Archive).expect("writer");
    env.write_all(plain).expect("write");
    env.finish().expect("finish");
    path
}

fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0])
        .collect()
}

#[test]
fn decrypt_to_stdout_yields_the_exact_plaintext() {
    let w = World::initialised(BIN);
    let plain = sample(300_000);
    let file = archive_file(&w, "logs.zst.enc", &plain);
    let out = stdout_bytes(w.ops().arg("decrypt").arg(&file));
    assert!(
        out == plain,
        "plaintext differs ({} vs {} bytes)",
        out.len(),
        plain.len()
    );
}

#[test]
fn decrypt_to_a_file_is_atomic_and_never_overwrites() {
    let w = World::initialised(BIN);
    let plain = sample(70_000);
    let file = archive_file(&w, "logs.zst.enc", &plain);
    let out_path = w.path("out/plain.bin");
    std::fs::create_dir(w.path("out")).expect("mkdir");
    let out = run(w
        .ops()
        .args(["--json", "decrypt"])
        .arg(&file)
        .arg("-o")
        .arg(&out_path));
    out.expect_code(0);
    assert_eq!(out.json()["plaintext_bytes"], plain.len() as u64);
    assert_eq!(out.json()["purpose"], "archive");
    assert_eq!(std::fs::read(&out_path).expect("out"), plain);
    let mode = std::fs::metadata(&out_path)
        .expect("meta")
        .permissions()
        .mode()
        & 0o077;
    assert_eq!(mode & 0o007, 0, "plaintext must not be world-readable");
    run(w.ops().arg("decrypt").arg(&file).arg("-o").arg(&out_path)).expect_code(73);
    assert_eq!(std::fs::read(&out_path).expect("out"), plain);
}

#[test]
fn tampered_file_exits_65_naming_it_and_leaves_no_output() {
    let w = World::initialised(BIN);
    let file = archive_file(&w, "logs.zst.enc", &sample(200_000));
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x04;
    std::fs::write(&file, &bytes).expect("write");
    std::fs::create_dir(w.path("out")).expect("mkdir");
    let out_path = w.path("out/plain.bin");
    run(w.ops().arg("decrypt").arg(&file).arg("-o").arg(&out_path))
        .expect_code(65)
        .stderr_has("logs.zst.enc")
        .stderr_has("failed authentication");
    assert!(
        w.list("out").is_empty(),
        "output left behind: {:?}",
        w.list("out")
    );
}

#[test]
fn truncated_and_foreign_files_exit_65() {
    let w = World::initialised(BIN);
    let file = archive_file(&w, "logs.zst.enc", &sample(100_000));
    let bytes = std::fs::read(&file).expect("read");
    std::fs::write(w.path("cut.enc"), &bytes[..bytes.len() - 1]).expect("write");
    run(w
        .ops()
        .arg("decrypt")
        .arg(w.path("cut.enc"))
        .stdout(Stdio::null()))
    .expect_code(65)
    .stderr_has("cut.enc");
    // Cut exactly at the boundary after the first segment.
    let segment = ransomeye_kernel::envelope::DEFAULT_SEGMENT_SIZE as usize;
    let boundary =
        ransomeye_kernel::envelope::HEADER_LEN + segment + ransomeye_kernel::envelope::TAG_LEN;
    std::fs::write(w.path("boundary.enc"), &bytes[..boundary]).expect("write");
    run(w
        .ops()
        .arg("decrypt")
        .arg(w.path("boundary.enc"))
        .stdout(Stdio::null()))
    .expect_code(65)
    .stderr_has("truncated");
    std::fs::write(
        w.path("plain.txt"),
        b"just some text, not an envelope at all",
    )
    .expect("write");
    run(w
        .ops()
        .arg("decrypt")
        .arg(w.path("plain.txt"))
        .stdout(Stdio::null()))
    .expect_code(65)
    .stderr_has("not a RansomEye envelope");
}

#[test]
fn file_from_another_installation_exits_77() {
    let w = World::initialised(BIN);
    let other = World::initialised(BIN);
    let file = archive_file(&other, "foreign.zst.enc", b"someone else's logs");
    run(w.ops().arg("decrypt").arg(&file).stdout(Stdio::null()))
        .expect_code(77)
        .stderr_has("foreign.zst.enc")
        .stderr_has("archive key");
}

#[test]
fn loose_key_permissions_exit_77_with_the_fix() {
    let w = World::initialised(BIN);
    let file = archive_file(&w, "logs.zst.enc", b"rows");
    let key = w.path("keys/archive.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    run(w.ops().arg("decrypt").arg(&file).stdout(Stdio::null()))
        .expect_code(77)
        .stderr_has(&key.display().to_string())
        .stderr_has("chmod");
}

#[test]
fn json_without_output_file_is_a_usage_error() {
    let w = World::initialised(BIN);
    let file = archive_file(&w, "logs.zst.enc", b"rows");
    let out = w
        .ops()
        .args(["--json", "decrypt"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(
        !out.stdout.windows(4).any(|win| win == b"rows"),
        "plaintext leaked into JSON stdout"
    );
}

#[test]
fn missing_input_exits_66() {
    let w = World::initialised(BIN);
    run(w
        .ops()
        .arg("decrypt")
        .arg(w.path("nope.enc"))
        .stdout(Stdio::null()))
    .expect_code(66)
    .stderr_has("nope.enc");
}

#[test]
fn writer_killed_mid_write_leaves_nothing_under_the_final_name() {
    use std::os::unix::fs::OpenOptionsExt;
    // decrypt reads from a FIFO we feed slowly, so we can SIGKILL it while OUT is half-written.
    let w = World::initialised(BIN);
    let file = archive_file(&w, "big.zst.enc", &sample(2_000_000));
    let bytes = std::fs::read(&file).expect("read");
    let fifo = w.path("feed");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    std::fs::create_dir(w.path("out")).expect("mkdir");
    let out_path = w.path("out/plain.bin");
    let mut child = w
        .ops()
        .arg("decrypt")
        .arg(&fifo)
        .arg("-o")
        .arg(&out_path)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut feed = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(0)
        .open(&fifo)
        .expect("open fifo");
    // Enough for many segments to be decrypted and written to the temp file.
    feed.write_all(&bytes[..bytes.len() / 2]).expect("feed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let temp_size: u64 = std::fs::read_dir(w.path("out"))
            .expect("list")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        if temp_size > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "decrypt never started writing"
        );
        std::thread::yield_now();
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    drop(feed);
    assert!(
        !out_path.exists(),
        "half-written file appeared under its final name"
    );
    let left = w.list("out");
    assert!(
        left.iter()
            .all(|n| ransomeye_kernel::atomic_file::is_temp_name(n)),
        "{left:?}"
    );
}

#[test]
fn dash_as_output_is_stdout() {
    let w = World::initialised(BIN);
    let plain = sample(70_000);
    let file = archive_file(&w, "logs.zst.enc", &plain);
    let out = stdout_bytes(w.ops().arg("decrypt").arg(&file).args(["-o", "-"]));
    assert!(out == plain, "plaintext differs");
    assert!(!w.path("-").exists() && !std::path::Path::new("-").exists());
}
