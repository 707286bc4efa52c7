//! What only root may do, for the privilege, shared-group and disk tests: run the binary as
//! another user, create throwaway users and the `ransomeye-admin` group, mount.
//!
//! These tests run as root (`scripts/test` and CI do; nextest puts them in the `root` test
//! group, see `.config/nextest.toml`). Run without root they fail saying so; they never pass
//! silently.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ransomeye_kernel::access::ADMIN_GROUP;

use crate::db::random_hex;

/// The uid and gid of `nobody`.
pub const NOBODY: u32 = 65534;

/// True when the tests run as root (needed to switch to other users).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Fails the test unless it runs as root; `needs` says what the test does that needs it.
#[track_caller]
pub fn require_root(needs: &str) {
    assert!(
        is_root(),
        "this test {needs}, so it must run as root (scripts/test and CI do)"
    );
}

/// The gid of group `ransomeye-admin`; the privilege tests need it (`scripts/test` creates it).
pub fn admin_gid() -> u32 {
    ransomeye_kernel::access::admin_gid().expect(
        "group ransomeye-admin does not exist: run `scripts/test` (it creates it) or `groupadd --system ransomeye-admin`",
    )
}

/// The gid of `ransomeye-admin`, creating the group if this host lacks it (as
/// `scripts/lib/sandbox.sh` does for CI).
pub fn ensure_admin_group() -> u32 {
    if let Some(gid) = ransomeye_kernel::access::admin_gid() {
        return gid;
    }
    // Exit 9: another test created it meanwhile.
    let status = Command::new("groupadd")
        .args(["--system", ADMIN_GROUP])
        .status()
        .expect("run groupadd");
    assert!(
        status.success() || status.code() == Some(9),
        "groupadd --system {ADMIN_GROUP} failed: {status}"
    );
    ransomeye_kernel::access::admin_gid().expect("the group exists now")
}

/// A throwaway system user in group `ransomeye-admin`, removed on drop (also when the test
/// fails).
pub struct Member {
    /// Its user name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
}

impl Member {
    /// Creates the user (`useradd --system`, no home, no login shell).
    pub fn create() -> Member {
        let name = format!("ransomeye-t-{}", random_hex(4));
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .args(["-G", ADMIN_GROUP])
            .arg(&name)
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name} failed: {status}");
        let user = nix::unistd::User::from_name(&name)
            .expect("user database")
            .expect("the new user exists");
        Member {
            name,
            uid: user.uid.as_raw(),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// A copy of the binary that any user can execute, for tests that run it as another user
/// (the checkout itself may sit below a directory only root can traverse).
pub struct PublicBinary {
    _dir: tempfile::TempDir,
    /// Path of the executable copy.
    pub path: PathBuf,
}

impl PublicBinary {
    /// Copies the binary at `bin` into a fresh world-traversable directory.
    pub fn new(bin: impl AsRef<Path>) -> PublicBinary {
        let bin = bin.as_ref();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod dir");
        let path = dir
            .path()
            .join(bin.file_name().expect("a binary's file name"));
        std::fs::copy(bin, &path).expect("copy binary");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod binary");
        PublicBinary { _dir: dir, path }
    }

    /// A command running the copy.
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }
}

/// A mount for the life of the guard, unmounted on drop.
pub struct Mount(PathBuf);

impl Mount {
    /// Mounts a tiny tmpfs of `size` (e.g. "64k") over `dir`: a disk that fills up.
    pub fn tmpfs(dir: &Path, size: &str) -> Mount {
        require_root("mounts a tmpfs");
        mount(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0750"),
                    "tmpfs",
                ])
                .arg(dir),
            "mount -t tmpfs",
        );
        Mount(dir.to_path_buf())
    }

    /// Makes `from` appear again at `to` (`mount --bind`).
    pub fn bind(from: &Path, to: &Path) -> Mount {
        require_root("makes a bind mount");
        mount(
            Command::new("mount").arg("--bind").arg(from).arg(to),
            "mount --bind",
        );
        Mount(to.to_path_buf())
    }

    /// Remounts it read-only.
    pub fn remount_read_only(&self) {
        mount(
            Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(&self.0),
            "remount read-only",
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[track_caller]
fn mount(cmd: &mut Command, what: &str) {
    let status = cmd.status().expect("run mount");
    assert!(status.success(), "{what} failed");
}
