//! An I/O error that remembers which file it concerns and what was being done to it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What was being done to a file when an I/O error happened.
///
/// The binary maps these to exit codes: failing to create or rename is "can't create" (73),
/// failing to write or sync is an I/O error (74), a missing input is "no input" (66).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// Opening an existing file or directory for reading.
    Open,
    /// Reading file contents or metadata.
    Read,
    /// Creating a file or directory.
    Create,
    /// Writing file contents.
    Write,
    /// Flushing a file or directory to stable storage.
    Sync,
    /// Renaming a finished temporary file to its final name.
    Rename,
    /// Changing mode or owner.
    SetPermissions,
    /// Removing a file.
    Remove,
}

impl FileAction {
    fn verb(self) -> &'static str {
        match self {
            FileAction::Open => "cannot open",
            FileAction::Read => "cannot read",
            FileAction::Create => "cannot create",
            FileAction::Write => "cannot write",
            FileAction::Sync => "cannot sync to disk",
            FileAction::Rename => "cannot move into place",
            FileAction::SetPermissions => "cannot set permissions of",
            FileAction::Remove => "cannot remove",
        }
    }
}

/// An I/O error on a named path.
#[derive(Debug)]
pub struct PathError {
    /// What was being attempted.
    pub action: FileAction,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The operating system's error.
    pub source: io::Error,
}

impl PathError {
    /// Wraps `source` with the action and path it happened on.
    pub fn new(action: FileAction, path: impl AsRef<Path>, source: io::Error) -> Self {
        PathError {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A closure for `map_err` that wraps an [`io::Error`] with `action` and `path`.
    pub fn at(action: FileAction, path: &Path) -> impl FnOnce(io::Error) -> PathError + '_ {
        move |source| PathError::new(action, path, source)
    }

    /// True when the file system is out of space or quota.
    pub fn is_disk_full(&self) -> bool {
        is_disk_full(&self.source)
    }
}

/// True when `e` says the file system is out of space or quota.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT)
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.action.verb(),
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
