//! The walk through one root, entirely through directory file descriptors: each directory is
//! opened with `openat(O_NOFOLLOW | O_DIRECTORY)` relative to its parent's descriptor, checked
//! to be the inode just seen, and everything in it is examined with `fstatat(AT_SYMLINK_NOFOLLOW)`
//! and removed with `unlinkat` relative to that descriptor. A directory swapped for a symlink
//! mid-run is therefore never entered, and one swapped after it was entered is cleaned where it
//! now is, never the symlink's target. Nothing on another filesystem (`st_dev`) is entered.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use serde::Serialize;

use crate::error::{Exit, OpsError};

/// The lock file of an upload session, in the session's directory.
pub const SESSION_LOCK: &str = "session.lock";

/// What kind of root a walk is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// `[clean] temp_dirs`: files and symlinks older than `--older-than`.
    Temp,
    /// `[clean] buffer_dirs`: orphaned chunks of upload sessions.
    Buffer,
}

/// The thresholds and facts a walk decides by.
pub struct Rules {
    /// Files and symlinks with an mtime before this (seconds since the epoch) are due.
    pub cutoff: i64,
    /// Chunks of a dead session with an mtime before this are orphaned.
    pub orphan_cutoff: i64,
    /// Files some process has open (device, inode).
    pub open: HashSet<(u64, u64)>,
    /// Report only.
    pub dry_run: bool,
    /// Names at the top of a root that are the run's own (its lock file).
    pub own: Vec<OsString>,
}

/// Removed entries of one kind.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Count {
    /// How many.
    pub count: u64,
    /// Allocated bytes freed (blocks × 512; 0 for a file with other hard links).
    pub bytes: u64,
}

/// Something left alone, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Where.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// What a walk removed and skipped.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    /// Removed, by kind: file, symlink, chunk, session lock, directory.
    pub removed: BTreeMap<&'static str, Count>,
    /// Left alone, with the reason.
    pub skipped: Vec<Skipped>,
}

/// One root's walk.
pub struct Walk<'a> {
    rules: &'a Rules,
    root_dev: u64,
    /// The result.
    pub tally: Tally,
}

/// How a directory ended up.
struct Left {
    /// Entries still in it.
    remaining: usize,
    /// Whether this run removed (or in a dry run would remove) something in it.
    removed_any: bool,
}

impl<'a> Walk<'a> {
    /// Cleans the root at `root` (already checked) by `rules`.
    pub fn root(root: &Path, kind: RootKind, rules: &'a Rules) -> Result<Tally, OpsError> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno_error(root, "open", e))?;
        let st = fstat(&fd).map_err(|e| errno_error(root, "stat", e))?;
        let mut walk = Walk {
            rules,
            root_dev: st.st_dev,
            tally: Tally::default(),
        };
        match kind {
            RootKind::Temp => {
                walk.dir(&fd, root, true)?;
            }
            RootKind::Buffer => walk.buffer(&fd, root)?,
        }
        Ok(walk.tally)
    }

    /// A temp directory: due files and symlinks, then the directories left empty.
    fn dir(&mut self, dir: &OwnedFd, path: &Path, is_root: bool) -> Result<Left, OpsError> {
        let mut left = Left {
            remaining: 0,
            removed_any: false,
        };
        for name in names(dir, path)? {
            if is_root
                && self
                    .rules
                    .own
                    .iter()
                    .any(|o| name.as_bytes().starts_with(o.as_bytes()))
            {
                left.remaining += 1;
                continue;
            }
            let child = path.join(&name);
            let Some(st) = self.stat(dir, &name, &child) else {
                left.remaining += 1;
                continue;
            };
            let gone = match kind(&st) {
                Kind::Dir => self.subdir(dir, &name, &child, &st)?,
                Kind::Symlink => {
                    st.st_mtime < self.rules.cutoff
                        && self.unlink(dir, &name, &child, &st, "symlink", false)
                }
                Kind::File => {
                    if st.st_mtime >= self.rules.cutoff {
                        false
                    } else if self.rules.open.contains(&(st.st_dev, st.st_ino)) {
                        self.skip(&child, "open in a process");
                        false
                    } else {
                        self.unlink(dir, &name, &child, &st, "file", false)
                    }
                }
                Kind::Other(why) => {
                    self.skip(&child, why);
                    false
                }
            };
            if gone {
                left.removed_any = true;
            } else {
                left.remaining += 1;
            }
        }
        Ok(left)
    }

    /// A subdirectory of a temp directory: entered (same filesystem, still that inode), cleaned,
    /// and removed when it is left empty and either was emptied by this run or is older than
    /// the cutoff. Returns whether it was removed.
    fn subdir(
        &mut self,
        parent: &OwnedFd,
        name: &OsString,
        path: &Path,
        st: &FileStat,
    ) -> Result<bool, OpsError> {
        let Some(sub) = self.enter(parent, name, path, st) else {
            return Ok(false);
        };
        let left = self.dir(&sub, path, false)?;
        drop(sub);
        if left.remaining == 0 && (left.removed_any || st.st_mtime < self.rules.cutoff) {
            return Ok(self.unlink(parent, name, path, st, "directory", true));
        }
        Ok(false)
    }

    /// Opens the directory `name` of `parent` if it is still the directory `st` on the root's
    /// filesystem; otherwise records why not.
    fn enter(
        &mut self,
        parent: &OwnedFd,
        name: &OsString,
        path: &Path,
        st: &FileStat,
    ) -> Option<OwnedFd> {
        if st.st_dev != self.root_dev {
            self.skip(path, "another filesystem (mount point): not entered");
            return None;
        }
        crate::failpoint::hold("clean-before-enter");
        let sub = match openat(
            parent.as_fd(),
            name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                self.skip(
                    path,
                    "replaced by a symlink or file during the run: not followed",
                );
                return None;
            }
            Err(Errno::ENOENT) => return None,
            Err(e) => {
                self.skip(path, &format!("cannot open: {e}"));
                return None;
            }
        };
        match fstat(&sub) {
            Ok(now) if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => {}
            _ => {
                self.skip(path, "replaced during the run: not entered");
                return None;
            }
        }
        crate::failpoint::hold("clean-entered");
        Some(sub)
    }

    /// A buffer root: each subdirectory is an upload session; its chunks go when the session
    /// is dead (its lock not held) and they are older than the orphan age.
    fn buffer(&mut self, root: &OwnedFd, path: &Path) -> Result<(), OpsError> {
        for name in names(root, path)? {
            if self
                .rules
                .own
                .iter()
                .any(|o| name.as_bytes().starts_with(o.as_bytes()))
            {
                continue;
            }
            let child = path.join(&name);
            let Some(st) = self.stat(root, &name, &child) else {
                continue;
            };
            if kind(&st) != Kind::Dir {
                self.skip(&child, "not in an upload session directory: left alone");
                continue;
            }
            let Some(session) = self.enter(root, &name, &child, &st) else {
                continue;
            };
            if self.session(&session, &child)? {
                drop(session);
                self.unlink(root, &name, &child, &st, "directory", true);
            }
        }
        Ok(())
    }

    /// One upload session; returns whether its directory is now empty (to be removed).
    fn session(&mut self, dir: &OwnedFd, path: &Path) -> Result<bool, OpsError> {
        let lock = match openat(
            dir.as_fd(),
            SESSION_LOCK,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => Some(fd),
            Err(Errno::ENOENT) => None,
            Err(e) => {
                self.skip(path, &format!("cannot open its {SESSION_LOCK}: {e}"));
                return Ok(false);
            }
        };
        // Held for the rest of the session's cleaning, so an uploader cannot resume it meanwhile.
        let _held = match lock {
            Some(fd) => match Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock)
            {
                Ok(held) => Some(held),
                Err((_, Errno::EWOULDBLOCK)) => {
                    self.skip(path, "upload session in progress (its lock is held)");
                    return Ok(false);
                }
                Err((_, e)) => {
                    self.skip(path, &format!("cannot lock its {SESSION_LOCK}: {e}"));
                    return Ok(false);
                }
            },
            None => None,
        };
        let mut remaining = 0;
        let mut lock_entry = None;
        for name in names(dir, path)? {
            let child = path.join(&name);
            let Some(st) = self.stat(dir, &name, &child) else {
                remaining += 1;
                continue;
            };
            if name == SESSION_LOCK {
                lock_entry = Some(st);
                continue;
            }
            let gone = if kind(&st) != Kind::File {
                self.skip(&child, "not a chunk (chunks are regular files): left alone");
                false
            } else if st.st_mtime >= self.rules.orphan_cutoff {
                false
            } else if self.rules.open.contains(&(st.st_dev, st.st_ino)) {
                self.skip(&child, "open in a process");
                false
            } else {
                self.unlink(dir, &name, &child, &st, "chunk", false)
            };
            if !gone {
                remaining += 1;
            }
        }
        if remaining > 0 {
            return Ok(false);
        }
        match lock_entry {
            Some(st) if st.st_mtime < self.rules.orphan_cutoff => Ok(self.unlink(
                dir,
                &OsString::from(SESSION_LOCK),
                &path.join(SESSION_LOCK),
                &st,
                "session lock",
                false,
            )),
            Some(_) => Ok(false),
            None => Ok(true),
        }
    }

    fn stat(&mut self, dir: &OwnedFd, name: &OsString, path: &Path) -> Option<FileStat> {
        match fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::ENOENT) => None,
            Err(e) => {
                self.skip(path, &format!("cannot stat: {e}"));
                None
            }
        }
    }

    /// Removes `name` from `dir` (counted under `kind`), or in a dry run counts it; returns
    /// whether it is (or would be) gone.
    fn unlink(
        &mut self,
        dir: &OwnedFd,
        name: &OsString,
        path: &Path,
        st: &FileStat,
        kind: &'static str,
        is_dir: bool,
    ) -> bool {
        if !self.rules.dry_run {
            let flag = if is_dir {
                UnlinkatFlags::RemoveDir
            } else {
                UnlinkatFlags::NoRemoveDir
            };
            match unlinkat(dir.as_fd(), name.as_os_str(), flag) {
                Ok(()) => {}
                Err(Errno::ENOENT) => return true,
                Err(e) => {
                    self.skip(path, &format!("cannot remove: {e}"));
                    return false;
                }
            }
        }
        let count = self.tally.removed.entry(kind).or_default();
        count.count += 1;
        if st.st_nlink <= 1 || is_dir {
            count.bytes += (st.st_blocks as u64).saturating_mul(512);
        }
        true
    }

    fn skip(&mut self, path: &Path, reason: &str) {
        self.tally.skipped.push(Skipped {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        });
    }
}

/// The names in the directory open as `dir` (not `.` and `..`), sorted.
fn names(dir: &OwnedFd, path: &Path) -> Result<Vec<OsString>, OpsError> {
    let dup = dir.try_clone().map_err(|e| {
        OpsError::io(
            format!("{}: duplicating its descriptor", path.display()),
            &e,
        )
    })?;
    let mut listing = Dir::from_fd(dup).map_err(|e| errno_error(path, "read", e))?;
    let mut out = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(|e| errno_error(path, "read", e))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    out.sort();
    Ok(out)
}

/// The type of a directory entry, as far as cleaning goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Symlink,
    File,
    /// Never removed; why.
    Other(&'static str),
}

fn kind(st: &FileStat) -> Kind {
    let format = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if format == SFlag::S_IFDIR {
        Kind::Dir
    } else if format == SFlag::S_IFLNK {
        Kind::Symlink
    } else if format == SFlag::S_IFREG {
        Kind::File
    } else if format == SFlag::S_IFSOCK {
        Kind::Other("socket: never removed")
    } else if format == SFlag::S_IFIFO {
        Kind::Other("FIFO: never removed")
    } else {
        Kind::Other("device node: never removed")
    }
}

fn errno_error(path: &Path, doing: &str, e: Errno) -> OpsError {
    let exit = match e {
        Errno::EACCES | Errno::EPERM => Exit::NoPerm,
        Errno::ENOENT => Exit::NoInput,
        _ => Exit::Io,
    };
    OpsError::new(exit, format!("cannot {doing} {}: {e}", path.display()))
}
