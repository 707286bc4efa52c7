//! Files that appear under their final name complete and durable, or not at all.
//!
//! An [`AtomicFile`] writes to a temporary file created exclusively (mode 0600) in the target's
//! directory. [`AtomicFile::commit`] fsyncs it, moves it to the final name (refusing to replace
//! an existing file unless asked), and fsyncs the directory so that the rename itself survives a
//! power cut. Dropping an uncommitted writer removes the temporary file; a process killed with
//! SIGKILL leaves only a hidden `.<name>.tmp-<random>` file, never a half-written final file.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use crate::access::Ownership;
use crate::{FileAction, PathError};

/// Prefix of the hidden temporary files, so that stale ones can be recognised.
pub const TEMP_PREFIX: &str = ".";
/// Marker between the final name and the random suffix of a temporary file.
pub const TEMP_MARKER: &str = ".tmp-";

/// How a committed file may land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Fail with `AlreadyExists` if the final name exists (the default: nothing is overwritten).
    Never,
    /// Atomically replace an existing file (for rewriting the configuration).
    Allowed,
}

/// A file being written that becomes visible under its final name only on [`commit`](Self::commit).
#[derive(Debug)]
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    file: Option<File>,
    replace: Replace,
}

impl AtomicFile {
    /// Starts writing `path` with the given mode and owner, never replacing an existing file.
    pub fn create(path: &Path, ownership: Ownership) -> Result<Self, PathError> {
        Self::create_with(path, ownership, Replace::Never)
    }

    /// Starts writing `path` with the given mode, owner and replacement rule.
    pub fn create_with(
        path: &Path,
        ownership: Ownership,
        replace: Replace,
    ) -> Result<Self, PathError> {
        let name = path.file_name().ok_or_else(|| {
            PathError::new(
                FileAction::Create,
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
            )
        })?;
        if replace == Replace::Never && path.symlink_metadata().is_ok() {
            return Err(PathError::new(
                FileAction::Create,
                path,
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        let dir = parent_dir(path);
        let (file, temp_path) = create_temp(&dir, name)?;
        let atomic = AtomicFile {
            final_path: path.to_path_buf(),
            temp_path,
            file: Some(file),
            replace,
        };
        if let Some(file) = &atomic.file {
            ownership.apply_to_file(file, &atomic.temp_path)?;
        }
        Ok(atomic)
    }

    /// The name the file will have once committed.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// The temporary file's current path.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Makes the contents durable under the temporary name (fsync), leaving the file uncommitted:
    /// for a caller that must record the file elsewhere (a manifest) before it gets its name.
    pub fn sync(&mut self) -> Result<(), PathError> {
        let temp = self.temp_path.clone();
        self.file_mut()
            .and_then(|f| f.sync_all())
            .map_err(PathError::at(FileAction::Sync, &temp))
    }

    /// Makes the file durable and visible under its final name.
    ///
    /// Order: fsync the data, rename (no-replace unless allowed), fsync the directory.
    pub fn commit(mut self) -> Result<PathBuf, PathError> {
        let file = self.file.take().ok_or_else(|| {
            PathError::new(
                FileAction::Write,
                &self.temp_path,
                io::Error::other("atomic file already closed"),
            )
        })?;
        file.sync_all()
            .map_err(PathError::at(FileAction::Sync, &self.temp_path))?;
        drop(file);
        match self.replace {
            Replace::Allowed => fs::rename(&self.temp_path, &self.final_path)
                .map_err(PathError::at(FileAction::Rename, &self.final_path))?,
            Replace::Never => rename_no_replace(&self.temp_path, &self.final_path)?,
        }
        // From here on the temporary name no longer exists; Drop must not touch it.
        self.temp_path = PathBuf::new();
        sync_dir(&parent_dir(&self.final_path))?;
        Ok(self.final_path.clone())
    }

    fn file_mut(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("atomic file already closed"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_mut()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file_mut()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file_mut()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Writes `contents` to `path` atomically in one call.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    ownership: Ownership,
    replace: Replace,
) -> Result<PathBuf, PathError> {
    let mut file = AtomicFile::create_with(path, ownership, replace)?;
    file.write_all(contents)
        .map_err(PathError::at(FileAction::Write, file.temp_path()))?;
    file.commit()
}

/// Fsyncs a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), PathError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(PathError::at(FileAction::Sync, dir))
}

/// True if `name` is a temporary file left by an [`AtomicFile`] (e.g. after SIGKILL).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.contains(TEMP_MARKER)
}

/// The final name a temporary file was made for: `Some("x")` for `.x.tmp-<16 hex digits>`,
/// exactly the names [`AtomicFile`] and [`rename_to_temp`] create, `None` for anything else.
/// Stricter than [`is_temp_name`]: for callers that delete what it recognises.
pub fn temp_target(name: &str) -> Option<&str> {
    let (target, suffix) = name.strip_prefix(TEMP_PREFIX)?.rsplit_once(TEMP_MARKER)?;
    let random = suffix.len() == 2 * TEMP_RANDOM_BYTES
        && suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (random && !target.is_empty()).then_some(target)
}

/// Removes from `dir` the temporary files (exactly [`temp_target`]'s names) made for a final name
/// `ours` accepts and last modified before `started`: what a run killed mid-write left. Call it
/// holding the lock that makes this run the only writer of those names; a temp file newer than
/// `started` belongs to a racing writer and is left alone. Best effort (a leftover that stays is
/// only a file the next run tries again); returns the paths removed, for the caller to log.
pub fn remove_stale_temps(
    dir: &Path,
    ours: impl Fn(&str) -> bool,
    started: std::time::SystemTime,
) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_ours = name.to_str().and_then(temp_target).is_some_and(&ours);
        let older = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified < started);
        if is_ours && older && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Moves a committed file back to a temporary name of its own (`.<name>.tmp-<random>`), as the
/// first step of deleting it: a crash after this leaves what an unfinished run leaves, which
/// the next run recognises with [`temp_target`]. Returns the temporary path.
pub fn rename_to_temp(path: &Path) -> Result<PathBuf, PathError> {
    let name = path.file_name().ok_or_else(|| {
        PathError::new(
            FileAction::Rename,
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        )
    })?;
    let dir = parent_dir(path);
    let mut last_err = None;
    for _ in 0..8 {
        let temp = dir.join(temp_name(name, &dir)?);
        match rename_no_replace(path, &temp) {
            Ok(()) => return Ok(temp),
            Err(e) if e.source.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        PathError::new(
            FileAction::Rename,
            path,
            io::Error::from(io::ErrorKind::AlreadyExists),
        )
    }))
}

/// Random bytes in a temporary name (hex-encoded).
const TEMP_RANDOM_BYTES: usize = 8;

/// A fresh temporary name for a file called `name` (in `dir`, named in errors).
fn temp_name(name: &std::ffi::OsStr, dir: &Path) -> Result<OsString, PathError> {
    let mut suffix = [0u8; TEMP_RANDOM_BYTES];
    SystemRandom::new().fill(&mut suffix).map_err(|_| {
        PathError::new(
            FileAction::Create,
            dir,
            io::Error::other("system random source failed"),
        )
    })?;
    let mut temp_name = OsString::from(TEMP_PREFIX);
    temp_name.push(name);
    temp_name.push(TEMP_MARKER);
    temp_name.push(hex::encode(suffix));
    Ok(temp_name)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> Result<(File, PathBuf), PathError> {
    let mut last_err = None;
    for _ in 0..8 {
        let temp_path = dir.join(temp_name(name, dir)?);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(&temp_path)
        {
            Ok(file) => return Ok((file, temp_path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(PathError::new(FileAction::Create, &temp_path, e)),
        }
    }
    Err(PathError::new(
        FileAction::Create,
        dir,
        last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)),
    ))
}

fn rename_no_replace(from: &Path, to: &Path) -> Result<(), PathError> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // File systems without RENAME_NOREPLACE: a hard link fails atomically if `to` exists.
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => {
            fs::hard_link(from, to).map_err(PathError::at(FileAction::Rename, to))?;
            fs::remove_file(from).map_err(PathError::at(FileAction::Remove, from))
        }
        Err(errno) => Err(PathError::new(
            FileAction::Rename,
            to,
            io::Error::from_raw_os_error(errno as i32),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn owner_only() -> Ownership {
        Ownership {
            mode: 0o600,
            gid: None,
            uid: None,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_appears_under_the_final_name_before_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.bin");
        let mut f = AtomicFile::create(&target, owner_only()).expect("create");
        f.write_all(b"half").expect("write");
        assert!(!target.exists());
        let listed = names(dir.path());
        assert_eq!(listed.len(), 1);
        assert!(is_temp_name(&listed[0]), "{listed:?}");
        f.commit().expect("commit");
        assert_eq!(fs::read(&target).expect("read"), b"half");
        assert_eq!(names(dir.path()), vec!["out.bin".to_string()]);
    }

    #[test]
    fn dropping_an_uncommitted_file_removes_the_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.bin");
        {
            let mut f = AtomicFile::create(&target, owner_only()).expect("create");
            f.write_all(b"abandoned").expect("write");
        }
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn an_existing_file_is_never_replaced_unless_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("keep.bin");
        fs::write(&target, b"original").expect("write");
        let err = AtomicFile::create(&target, owner_only()).expect_err("must refuse");
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);

        // Created while we were writing: the commit itself must refuse.
        let racing = dir.path().join("race.bin");
        let mut f = AtomicFile::create(&racing, owner_only()).expect("create");
        f.write_all(b"new").expect("write");
        fs::write(&racing, b"winner").expect("write");
        let err = f.commit().expect_err("commit must not replace");
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&racing).expect("read"), b"winner");
        assert_eq!(fs::read(&target).expect("read"), b"original");

        write_atomic(&target, b"replaced", owner_only(), Replace::Allowed).expect("replace");
        assert_eq!(fs::read(&target).expect("read"), b"replaced");
    }

    #[test]
    fn temp_target_recognises_exactly_the_temp_names_made_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.bin");
        let f = AtomicFile::create(&target, owner_only()).expect("create");
        let made = f
            .temp_path()
            .file_name()
            .expect("name")
            .to_str()
            .expect("utf-8");
        assert_eq!(temp_target(made), Some("out.bin"));
        drop(f);
        fs::write(&target, b"x").expect("write");
        let moved = rename_to_temp(&target).expect("rename");
        assert!(!target.exists());
        let moved_name = moved.file_name().expect("name").to_str().expect("utf-8");
        assert_eq!(temp_target(moved_name), Some("out.bin"));
        for other in [
            "out.bin",
            ".out.bin",
            ".out.bin.tmp-",
            ".out.bin.tmp-0123456789abcdef0",
            ".out.bin.tmp-0123456789ABCDEF",
            ".out.bin.tmp-probe-x1y2z3",
            "x.out.bin.tmp-0123456789abcdef",
            "..tmp-0123456789abcdef",
        ] {
            assert_eq!(temp_target(other), None, "{other}");
        }
        assert_eq!(
            temp_target(".out.bin.tmp-0123456789abcdef"),
            Some("out.bin")
        );
    }

    #[test]
    fn committed_file_has_the_requested_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("secret");
        let ownership = Ownership {
            mode: 0o640,
            gid: None,
            uid: None,
        };
        write_atomic(&target, b"x", ownership, Replace::Never).expect("write");
        let mode = fs::metadata(&target).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn missing_directory_is_a_create_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("missing").join("x");
        let err = AtomicFile::create(&target, owner_only()).expect_err("no dir");
        assert_eq!(err.action, FileAction::Create);
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
