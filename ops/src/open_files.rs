//! Which files some process has open, from `/proc/*/fd`: commands that delete or move files
//! (`logs archive`, `clean`) leave those alone. A snapshot: a file opened after it was taken
//! is not in it, which is why those commands also require a quiet period.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

/// The (device, inode) of every file some process has open, from `/proc/*/fd`. Processes that
/// exit meanwhile, or whose descriptors this user cannot see, are passed over.
pub fn snapshot() -> HashSet<(u64, u64)> {
    let mut open = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return open;
    };
    for proc in procs.flatten() {
        let is_pid = proc
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            // stat follows the magic link to the open file itself.
            if let Ok(meta) = std::fs::metadata(fd.path()) {
                if meta.is_file() {
                    open.insert((meta.dev(), meta.ino()));
                }
            }
        }
    }
    open
}
