//! Checks on the directories commands write into, before any work starts, with hints that say
//! how to make a directory usable by every operator (root and group `ransomeye-admin`).

use std::path::Path;

use ransomeye_kernel::access::ADMIN_GROUP;

use crate::error::{Exit, OpsError};

/// `dir` (named `setting` in messages, e.g. "[archive] dir") must exist and be a directory this
/// process can write (73 otherwise), so a run fails before it has done any work.
pub fn check_writable(dir: &Path, setting: &str) -> Result<(), OpsError> {
    check_readable(dir, setting)?;
    if nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_err() {
        let hint = if nix::unistd::geteuid().is_root() {
            "is the volume mounted read-only? check its permissions".to_string()
        } else {
            format!(
                "members of group '{ADMIN_GROUP}' operate in directories that group can write: \
                 `chgrp {ADMIN_GROUP} {shown} && chmod 2770 {shown}` (as init creates them); \
                 or is the volume mounted read-only?",
                shown = dir.display()
            )
        };
        return Err(OpsError::new(
            Exit::CantCreate,
            format!("{setting} {} is not writable", dir.display()),
        )
        .hint(hint));
    }
    Ok(())
}

/// `dir` must exist and be a directory (73 otherwise).
pub fn check_readable(dir: &Path, setting: &str) -> Result<(), OpsError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(OpsError::new(
            Exit::CantCreate,
            format!("{setting} {} is not a directory", dir.display()),
        )
        .hint(format!("fix {setting} in the configuration"))),
        Err(e) => Err(OpsError::new(
            Exit::CantCreate,
            format!("{setting} {}: {e}", dir.display()),
        )
        .hint(format!(
            "create it (mode 2770, group {ADMIN_GROUP}) or fix {setting}; is its volume mounted?"
        ))),
    }
}

/// Removes the hidden temp files of the atomic writer whose names start with `prefix` (e.g.
/// `.logs_`): what an interrupted run left. Call only while holding the operation's lock, so
/// that none of them is still being written.
pub fn remove_temp_files(dir: &Path, prefix: &str) -> Result<(), OpsError> {
    use ransomeye_kernel::atomic_file::is_temp_name;
    use ransomeye_kernel::{FileAction, PathError};
    for entry in std::fs::read_dir(dir).map_err(PathError::at(FileAction::Read, dir))? {
        let entry = entry.map_err(PathError::at(FileAction::Read, dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temp_name(&name) && name.starts_with(prefix) {
            let path = entry.path();
            tracing::info!(file = %path.display(), "removing a temporary file left by an interrupted run");
            std::fs::remove_file(&path).map_err(PathError::at(FileAction::Remove, &path))?;
        }
    }
    Ok(())
}

/// Bytes an unprivileged writer can still put on the filesystem holding `dir` (`statvfs`:
/// available blocks times the fragment size), for the checks a dry run makes.
pub fn free_bytes(dir: &Path, setting: &str) -> Result<u64, OpsError> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| {
        OpsError::new(
            Exit::Io,
            format!(
                "{setting} {}: cannot read the free space: {e}",
                dir.display()
            ),
        )
    })?;
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
}
