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
    if geteuid().is_root() {
        return Ok(());
    }
    if let Some(admin) = admin_gid() {
        let primary = [getegid().as_raw(), getgid().as_raw()];
        let supplementary = getgroups().unwrap_or_default();
        if primary.contains(&admin) || supplementary.iter().any(|g| g.as_raw() == admin) {
            return Ok(());
        }
    }
    Err(OpsError::new(
        Exit::NoPerm,
        format!("Permission Denied: ransomeye-ops requires root or membership in group '{ADMIN_GROUP}'"),
    )
    .hint(format!(
        "run it with sudo, or have an administrator run `usermod -aG {ADMIN_GROUP} <user>` and log in again"
    )))
}
