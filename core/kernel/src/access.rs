//! Who may read what: the `ransomeye-admin` group, the modes secret files, shared files and
//! directories are created with, and the checks that refuse a key file anyone else could read
//! (as ssh does).
//!
//! The group is the unit of trust: root and its members operate the same installation, so
//! what one of them creates the others must be able to use and rewrite. Directories are
//! therefore group-writable and setgid (what a member creates in them belongs to the group),
//! files rewritten in place (lock files) are group read-write, and secrets are group
//! read-only: a key changes by atomic replace in its directory, never by writing into it.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Gid, Group, Uid};

use crate::{FileAction, PathError};

/// The group whose members may operate RansomEye besides root.
pub const ADMIN_GROUP: &str = "ransomeye-admin";

/// The gid of [`ADMIN_GROUP`], or `None` when the group does not exist on this host.
pub fn admin_gid() -> Option<u32> {
    match Group::from_name(ADMIN_GROUP) {
        Ok(Some(group)) => Some(group.gid.as_raw()),
        _ => None,
    }
}

/// Mode and group a new file or directory gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Permission bits (e.g. `0o600`).
    pub mode: u32,
    /// Group to hand the file to, if any (the owner stays the creating user).
    pub gid: Option<u32>,
    /// User to hand the file to, if any (only root can do this).
    pub uid: Option<u32>,
}

impl Ownership {
    /// A secret file: `0600`, or `0640` owned by group `ransomeye-admin` when that group exists,
    /// so that its members can operate.
    pub fn secret_file() -> Self {
        Ownership::with_group(0o640, 0o600)
    }

    /// A file every operator rewrites in place (a lock file): `0660` owned by group
    /// `ransomeye-admin` when that group exists, so that a member can open what root or another
    /// member created; `0600` otherwise. Never for secrets.
    pub fn shared_file() -> Self {
        Ownership::with_group(0o660, 0o600)
    }

    /// `group_mode` with group `ransomeye-admin` when that group exists, else `alone_mode`.
    fn with_group(group_mode: u32, alone_mode: u32) -> Self {
        match admin_gid() {
            Some(gid) => Ownership {
                mode: group_mode,
                gid: Some(gid),
                uid: None,
            },
            None => Ownership {
                mode: alone_mode,
                gid: None,
                uid: None,
            },
        }
    }

    /// A directory the tool creates (keys, archive, backups, the configuration's): `2770` with
    /// group `ransomeye-admin` when that group exists — group-writable so that members can
    /// create, replace and remove files in it (rotated keys, the journal, archives, backups,
    /// the rewritten configuration), setgid so that whatever they create belongs to the group
    /// and stays usable by root and the other members; `0700` otherwise.
    pub fn private_dir() -> Self {
        match admin_gid() {
            Some(gid) => Ownership {
                mode: 0o2770,
                gid: Some(gid),
                uid: None,
            },
            None => Ownership {
                mode: 0o700,
                gid: None,
                uid: None,
            },
        }
    }

    /// The mode and owner an existing file has, so that a rewrite can keep them.
    pub fn of(meta: &fs::Metadata) -> Self {
        Ownership {
            mode: meta.mode() & 0o7777,
            gid: Some(meta.gid()),
            uid: Some(meta.uid()),
        }
    }

    /// Applies mode and owner to an open file.
    ///
    /// Only root can give a file away, so for anyone else the owner is left alone: a member who
    /// rewrites a file root created (the configuration, by `rotate-keys`) becomes its owner,
    /// while its group and mode — what makes it usable by the others — are kept.
    pub fn apply_to_file(&self, file: &fs::File, path: &Path) -> Result<(), PathError> {
        let uid = self.uid.filter(|_| Uid::effective().is_root());
        if uid.is_some() || self.gid.is_some() {
            std::os::unix::fs::fchown(file, uid, self.gid)
                .map_err(PathError::at(FileAction::SetPermissions, path))?;
        }
        file.set_permissions(fs::Permissions::from_mode(self.mode))
            .map_err(PathError::at(FileAction::SetPermissions, path))
    }
}

/// Creates `dir` (and missing parents) as [`Ownership::private_dir`]. An existing directory is
/// left as it is; only the directories this call creates get the mode and group.
pub fn create_private_dir(dir: &Path) -> Result<(), PathError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            create_private_dir(parent)?;
        }
    }
    let policy = Ownership::private_dir();
    let created = fs::DirBuilder::new().mode(policy.mode).create(dir);
    match created {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(PathError::new(FileAction::Create, dir, e)),
    }
    if let Some(gid) = policy.gid {
        std::os::unix::fs::chown(dir, None, Some(gid))
            .map_err(PathError::at(FileAction::SetPermissions, dir))?;
    }
    // The umask may have cleared bits the policy asks for; chmod also sets the setgid bit,
    // which mkdir's mode argument ignores.
    fs::set_permissions(dir, fs::Permissions::from_mode(policy.mode))
        .map_err(PathError::at(FileAction::SetPermissions, dir))
}

/// Why a secret file's permissions are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseSecret {
    /// What is wrong, e.g. "is readable by everyone (mode 0644)".
    pub problem: String,
    /// The command that fixes it.
    pub fix: String,
}

/// Checks that a secret file (a key) is readable only by its owner and at most by group
/// `ransomeye-admin`, and is not writable by anyone but its owner. The owner must be root, the
/// caller, or a member of `ransomeye-admin`: a key that a member's `rotate-keys` wrote belongs
/// to that member, and root and the other members must go on using it. Members are trusted with
/// the keys anyway (they read them all and may rotate the signing key); an owner outside the
/// group could rewrite the key or open it to anyone, so such a file is refused.
pub fn check_secret_file(path: &Path, meta: &fs::Metadata) -> Result<(), LooseSecret> {
    let mode = meta.mode() & 0o7777;
    let shown = path.display();
    if !meta.is_file() {
        return Err(LooseSecret {
            problem: "is not a regular file".into(),
            fix: format!("replace {shown} with the key file itself"),
        });
    }
    let admin = admin_gid();
    let (wanted_mode, group_fix) = match admin {
        Some(gid) if meta.gid() == gid => ("0640", String::new()),
        Some(_) => ("0640", format!(" && chgrp {ADMIN_GROUP} {shown}")),
        None => ("0600", String::new()),
    };
    let fix = format!("chmod {wanted_mode} {shown}{group_fix}");
    if mode & 0o007 != 0 {
        return Err(LooseSecret {
            problem: format!("is accessible by every user (mode {mode:04o})"),
            fix,
        });
    }
    if mode & 0o020 != 0 {
        return Err(LooseSecret {
            problem: format!("is writable by its group (mode {mode:04o})"),
            fix,
        });
    }
    if mode & 0o070 != 0 && Some(meta.gid()) != admin {
        return Err(LooseSecret {
            problem: format!(
                "is readable by group {} (mode {mode:04o}), which is not {ADMIN_GROUP}",
                group_name(meta.gid())
            ),
            fix: match admin {
                Some(_) => format!("chgrp {ADMIN_GROUP} {shown} && chmod 0640 {shown}"),
                None => format!("chmod 0600 {shown}"),
            },
        });
    }
    let owner = meta.uid();
    if owner != 0 && owner != Uid::effective().as_raw() && !is_admin_member(owner) {
        return Err(LooseSecret {
            problem: format!(
                "is owned by {}, neither root, nor the user running this command, nor a member of {ADMIN_GROUP}",
                user_name(owner)
            ),
            fix: format!("chown root {shown}"),
        });
    }
    Ok(())
}

/// Whether the user `uid` belongs to [`ADMIN_GROUP`], as primary or supplementary group
/// (per the user and group databases, as a login would set it up).
pub fn is_admin_member(uid: u32) -> bool {
    let Some(admin) = admin_gid() else {
        return false;
    };
    let Ok(Some(user)) = nix::unistd::User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid.as_raw() == admin {
        return true;
    }
    match Group::from_gid(Gid::from_raw(admin)) {
        Ok(Some(group)) => group.mem.contains(&user.name),
        _ => false,
    }
}

fn group_name(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(g)) => format!("'{}'", g.name),
        _ => format!("gid {gid}"),
    }
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("user '{}'", u.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_with_mode(mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("archive.key");
        fs::write(&path, [0u8; 32]).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        (dir, path)
    }

    fn check(path: &Path) -> Result<(), LooseSecret> {
        let meta = fs::metadata(path).expect("metadata");
        check_secret_file(path, &meta)
    }

    #[test]
    fn created_directories_are_shared_with_the_group_when_it_exists() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("a/b");
        create_private_dir(&dir).expect("create");
        for d in [base.path().join("a"), dir] {
            let meta = fs::metadata(&d).expect("metadata");
            match admin_gid() {
                Some(gid) => {
                    assert_eq!(meta.mode() & 0o7777, 0o2770, "{}", d.display());
                    assert_eq!(meta.gid(), gid, "{}", d.display());
                }
                None => assert_eq!(meta.mode() & 0o7777, 0o700, "{}", d.display()),
            }
        }
    }

    #[test]
    fn shared_files_are_group_read_write_and_never_for_others() {
        let shared = Ownership::shared_file();
        let secret = Ownership::secret_file();
        assert_eq!(shared.gid, secret.gid);
        assert_eq!(shared.mode & 0o007, 0);
        match admin_gid() {
            Some(_) => assert_eq!((shared.mode, secret.mode), (0o660, 0o640)),
            None => assert_eq!((shared.mode, secret.mode), (0o600, 0o600)),
        }
    }

    #[test]
    fn owner_only_file_is_accepted() {
        let (_d, path) = secret_with_mode(0o600);
        assert_eq!(check(&path), Ok(()));
    }

    #[test]
    fn world_readable_file_is_refused_with_a_fix() {
        let (_d, path) = secret_with_mode(0o644);
        let err = check(&path).expect_err("0644 must be refused");
        assert!(err.problem.contains("every user"), "{err:?}");
        assert!(err.fix.starts_with("chmod 06"), "{err:?}");
    }

    #[test]
    fn group_writable_file_is_refused() {
        let (_d, path) = secret_with_mode(0o660);
        assert!(check(&path).is_err());
    }

    #[test]
    fn group_readable_by_a_foreign_group_is_refused() {
        let (_d, path) = secret_with_mode(0o640);
        // The temp file's group is the caller's primary group, never ransomeye-admin here
        // unless the caller runs with that primary group.
        let meta = fs::metadata(&path).expect("metadata");
        let result = check(&path);
        if Some(meta.gid()) == admin_gid() {
            assert_eq!(result, Ok(()));
        } else {
            let err = result.expect_err("foreign group must be refused");
            assert!(err.problem.contains("not ransomeye-admin"), "{err:?}");
        }
    }
}
