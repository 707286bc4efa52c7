//! Which files of a log directory `logs archive` may take: matching a pattern, regular (never
//! a symlink, never followed), old enough, not modified in the last minute, and not open in
//! any process. Everything else that matched a pattern is reported with the reason.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ransomeye_kernel::atomic_file::is_temp_name;
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use crate::error::OpsError;

/// A file is not taken while it was modified this recently (a writer may still be at it).
pub const QUIET_PERIOD: Duration = Duration::from_secs(60);

/// A log file to archive, as it was when chosen.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its path.
    pub path: PathBuf,
    /// Its name in its directory.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// mtime, seconds since the epoch.
    pub mtime: i64,
    /// Device and inode: the file the name must still be when it is deleted.
    pub dev_ino: (u64, u64),
}

/// A matching file left alone, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Its path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// What a log directory offers.
#[derive(Debug, Default)]
pub struct Scan {
    /// To archive, in name order.
    pub candidates: Vec<Candidate>,
    /// Matched a pattern but left alone.
    pub skipped: Vec<Skipped>,
}

/// Scans `dir` (not recursively) for files matching `patterns` older than `cutoff`, and not
/// open in any process of `open` (device, inode pairs).
pub fn scan(
    dir: &Path,
    patterns: &[String],
    cutoff: SystemTime,
    now: SystemTime,
    open: &HashSet<(u64, u64)>,
) -> Result<Scan, OpsError> {
    let mut scan = Scan::default();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(PathError::at(FileAction::Read, dir))?
        .collect::<Result<_, _>>()
        .map_err(PathError::at(FileAction::Read, dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue; // not UTF-8: no pattern of ours matches it
        };
        if is_temp_name(&name) || !patterns.iter().any(|p| matches(p, &name)) {
            continue;
        }
        let path = entry.path();
        let skip = |reason: &str| Skipped {
            path: path.clone(),
            reason: reason.to_string(),
        };
        // lstat: a symlink is reported as one, never followed.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(PathError::new(FileAction::Read, &path, e).into()),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            scan.skipped.push(skip("symlink (never followed)"));
            continue;
        }
        if !kind.is_file() {
            scan.skipped.push(skip("not a regular file"));
            continue;
        }
        let modified = meta.modified().unwrap_or(now);
        if modified >= cutoff {
            continue; // not old enough: not reported, it is simply not due
        }
        if modified + QUIET_PERIOD > now {
            scan.skipped.push(skip("modified within the last minute"));
            continue;
        }
        if open.contains(&(meta.dev(), meta.ino())) {
            scan.skipped.push(skip("open in a process"));
            continue;
        }
        scan.candidates.push(Candidate {
            path,
            name,
            size: meta.len(),
            mtime: meta.mtime(),
            dev_ino: (meta.dev(), meta.ino()),
        });
    }
    Ok(scan)
}

/// Shell-style match of a whole file name: `*` any run of characters, `?` one character,
/// everything else itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it currently stands for up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_patterns_take_rotations_and_never_the_live_log() {
        let defaults = ["*.log.*", "*.log-*"];
        let takes = |name: &str| defaults.iter().any(|p| matches(p, name));
        for rotated in [
            "core.log.1",
            "core.log.2.gz",
            "core.log-20261101",
            "core.log-20261101.gz",
        ] {
            assert!(takes(rotated), "{rotated}");
        }
        for other in ["core.log", "core.txt", "log.1", "core.logx.1", ".log"] {
            assert!(!takes(other), "{other}");
        }
    }

    #[test]
    fn stars_and_question_marks_match_as_in_a_shell() {
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(matches("a*b*c", "abbc"));
        assert!(!matches("a*b*c", "abca"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("**x", "x"));
        assert!(matches("é*", "été"));
    }
}
