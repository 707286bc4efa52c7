//! The privilege gate: every operation requires root or membership in `ransomeye-admin`.
//!
//! It runs before the configuration, keys, database, bus or disk are touched; only `--help`,
//! `--version`, `completions` and `man` are open to everyone.

use nix::unistd::{getegid, geteuid, getgid, getgroups};
use ransomeye_kernel::access::{admin_gid, ADMIN_GROUP};

use crate::error::{Exit, OpsError};

/// Refuses unless the effective uid is 0 or the caller is in group `ransomeye-admin`
/// (as primary or supplementary group).
pub fn require_operator() -> Result<(), OpsError> {
    if geteuid().is_root() || caller_in_admin_group() {
        return Ok(());
    }
    Err(OpsError::new(
        Exit::NoPerm,
        format!("Permission Denied: ransomeye-ops requires root or membership in group '{ADMIN_GROUP}'"),
    )
    .hint(format!(
        "run it with sudo, or have an administrator run `usermod -aG {ADMIN_GROUP} <user>` and log in again"
    )))
}

/// Whether this process has group `ransomeye-admin` (effective, real or supplementary).
fn caller_in_admin_group() -> bool {
    let Some(admin) = admin_gid() else {
        return false;
    };
    let primary = [getegid().as_raw(), getgid().as_raw()];
    let supplementary = getgroups().unwrap_or_default();
    primary.contains(&admin) || supplementary.iter().any(|g| g.as_raw() == admin)
}

/// The hint for a file or directory the caller may not access. Past the gate the caller is
/// root or a member, so the fix is the path's group and mode, not the caller's membership.
pub fn permission_denied_hint() -> String {
    if geteuid().is_root() || caller_in_admin_group() {
        format!(
            "check the path's permissions: root and the members of group '{ADMIN_GROUP}' share \
             what the tool creates (directories group '{ADMIN_GROUP}' mode 2770, lock files 0660, \
             keys and other files 0640), e.g. `chgrp {ADMIN_GROUP} PATH && chmod g+rw PATH`"
        )
    } else {
        format!(
            "run as root or as a member of group '{ADMIN_GROUP}', and check the path's permissions"
        )
    }
}
