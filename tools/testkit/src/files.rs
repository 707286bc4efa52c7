//! Snapshots of a directory tree, to show that a command changed nothing (or only what it
//! should). Each test compares the attributes its claim is about.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One file or directory as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Its size (`st_size`).
    pub len: u64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// The contents (empty for a directory).
    pub bytes: Vec<u8>,
}

/// Every file and directory under `dir` (not `dir` itself), by path relative to `dir`.
/// Symbolic links are described as links and read through.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut entries = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let rel = path.strip_prefix(dir).expect("inside").to_path_buf();
            let is_dir = meta.is_dir();
            let bytes = if is_dir {
                todo.push(path);
                Vec::new()
            } else {
                std::fs::read(&path).expect("read")
            };
            entries.insert(
                rel,
                Entry {
                    is_dir,
                    len: meta.len(),
                    mode: meta.mode(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    bytes,
                },
            );
        }
    }
    entries
}
