//! The keys fence: nothing under `[keys] dir` is ever stored in a backup or restored into it.
//!
//! A path can reach the keys directory in more ways than its configured name: through a
//! symlink (in the configuration or in `include`), a bind mount of it or of a directory above
//! it, or a hard link to a key file. So the fence knows the directory by its canonical path and
//! by the device and inode of the directory and of everything in it, and a walk checks every
//! directory and file it meets by device and inode (a walk never follows symlinks, so below a
//! root whose canonical path is outside the keys directory, device and inode are what can
//! still match). A key file created after the fence was made (a rotation running meanwhile) is
//! still caught by its directory.

use std::collections::HashSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use crate::error::OpsError;

/// The keys directory, as every path that may reach it is checked against.
#[derive(Debug, Clone)]
pub struct KeysFence {
    /// `[keys] dir` as configured.
    configured: PathBuf,
    /// Its canonical path.
    canonical: PathBuf,
    /// Device and inode of the directory and of every directory below it.
    dirs: HashSet<(u64, u64)>,
    /// Device and inode of every other file below it.
    files: HashSet<(u64, u64)>,
}

/// Something the fence kept out, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excluded {
    /// The path as it was met.
    pub path: String,
    /// Why it was left out.
    pub reason: String,
}

impl KeysFence {
    /// The fence around `dir` (`[keys] dir`), which must exist.
    pub fn new(dir: &Path) -> Result<KeysFence, OpsError> {
        let canonical = dir
            .canonicalize()
            .map_err(PathError::at(FileAction::Read, dir))?;
        let mut fence = KeysFence {
            configured: dir.to_path_buf(),
            canonical: canonical.clone(),
            dirs: HashSet::new(),
            files: HashSet::new(),
        };
        fence.learn(&canonical)?;
        Ok(fence)
    }

    fn learn(&mut self, dir: &Path) -> Result<(), OpsError> {
        let meta = dir
            .symlink_metadata()
            .map_err(PathError::at(FileAction::Read, dir))?;
        self.dirs.insert(id(&meta));
        for entry in std::fs::read_dir(dir).map_err(PathError::at(FileAction::Read, dir))? {
            let path = entry.map_err(PathError::at(FileAction::Read, dir))?.path();
            let meta = path
                .symlink_metadata()
                .map_err(PathError::at(FileAction::Read, &path))?;
            if meta.is_dir() {
                self.learn(&path)?;
            } else {
                self.files.insert(id(&meta));
            }
        }
        Ok(())
    }

    /// Whether `path` met in a walk (with its `symlink_metadata`) is the keys directory, a
    /// directory below it or a file in it, by device and inode.
    pub fn holds(&self, meta: &Metadata) -> bool {
        let set = if meta.is_dir() {
            &self.dirs
        } else {
            &self.files
        };
        set.contains(&id(meta))
    }

    /// Whether a walk starting at `root` (with its `symlink_metadata`) starts inside the keys
    /// directory: by device and inode, or by canonical path (through symlinks above it).
    pub fn holds_root(&self, root: &Path, meta: &Metadata) -> bool {
        self.holds(meta)
            || root
                .canonicalize()
                .is_ok_and(|c| c.starts_with(&self.canonical))
    }

    /// Whether writing `dest` (which may not exist yet) would write into the keys directory: an
    /// existing directory above it is (or is inside) the keys directory by device and inode or
    /// canonical path, or `dest` itself is a key file.
    pub fn holds_destination(&self, dest: &Path) -> bool {
        if dest.symlink_metadata().is_ok_and(|m| self.holds(&m)) {
            return true;
        }
        for ancestor in dest.ancestors().skip(1) {
            // Writing below a symlinked directory writes into its target: follow it.
            if let Ok(meta) = ancestor.metadata() {
                if meta.is_dir() && self.dirs.contains(&id(&meta)) {
                    return true;
                }
                if let Ok(canonical) = ancestor.canonicalize() {
                    if canonical.starts_with(&self.canonical) {
                        return true;
                    }
                }
                // The nearest existing directory decides for everything below it that does
                // not exist yet; further up, only device and inode can still match.
            }
        }
        false
    }

    /// The reason given for everything the fence keeps out of a backup.
    pub fn backup_reason(&self) -> String {
        format!(
            "in [keys] dir {}: keys are never backed up (keep an offline copy of that directory)",
            self.configured.display()
        )
    }

    /// The reason given for every file a restore does not write.
    pub fn restore_reason(&self) -> String {
        format!(
            "would be written into [keys] dir {}: keys are never restored from a backup",
            self.configured.display()
        )
    }
}

fn id(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_dir_is_recognised_by_path_symlink_and_hard_link() {
        let top = tempfile::tempdir().expect("tempdir");
        let keys = top.path().join("keys");
        std::fs::create_dir_all(keys.join("retired")).expect("mkdir");
        std::fs::write(keys.join("signing.key"), b"k").expect("write");
        std::fs::write(keys.join("retired/old"), b"o").expect("write");
        std::os::unix::fs::symlink(&keys, top.path().join("alias")).expect("symlink");
        std::fs::hard_link(keys.join("signing.key"), top.path().join("copy")).expect("link");
        std::fs::write(top.path().join("other"), b"x").expect("write");
        let fence = KeysFence::new(&top.path().join("alias")).expect("fence");
        let meta = |p: &Path| p.symlink_metadata().expect("meta");
        assert!(fence.holds_root(&keys, &meta(&keys)));
        assert!(fence.holds_root(
            &top.path().join("alias/retired"),
            &meta(&top.path().join("alias/retired"))
        ));
        assert!(fence.holds(&meta(&keys.join("retired"))));
        assert!(fence.holds(&meta(&top.path().join("copy"))));
        assert!(!fence.holds(&meta(&top.path().join("other"))));
        assert!(!fence.holds_root(top.path(), &meta(top.path())));
        assert!(fence.holds_destination(&keys.join("signing.key")));
        assert!(fence.holds_destination(&top.path().join("alias/new/deeper/file")));
        assert!(fence.holds_destination(&top.path().join("copy")));
        assert!(!fence.holds_destination(&top.path().join("other")));
        assert!(!fence.holds_destination(&top.path().join("new/file")));
    }
}
