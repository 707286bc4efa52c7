//! Archiving one log file: temp archive → fsync → read back and compare → signed entry →
//! rename → fsync the directory → delete the original. Also finishing what a killed run left
//! for this file (its archive committed, the original not yet deleted).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ransomeye_kernel::atomic_file::{sync_dir, Replace};
use ransomeye_kernel::keys::{SigningKey, SymmetricKey};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use super::candidates::Candidate;
use super::store::{self, entry_path, Entry, Layout, ENTRY_FORMAT};
use crate::error::{Exit, OpsError};
use crate::signed::Signed;
use crate::trust::TrustKeys;

/// What became of one candidate.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Archived and verified; the original deleted (not in a dry run).
    Archived(Archived),
    /// A killed run had archived it; its archive verified and the original is now deleted.
    Completed(Archived),
    /// Left alone; the reason says why.
    Skipped {
        /// The original.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The archive read back differently: original kept, archive discarded.
    Mismatch {
        /// The original.
        path: PathBuf,
        /// What differed.
        detail: String,
    },
}

/// One archived file.
#[derive(Debug, Clone, Serialize)]
pub struct Archived {
    /// The original (deleted).
    pub path: PathBuf,
    /// The archive.
    pub archive: PathBuf,
    /// Bytes of the original.
    pub bytes: u64,
    /// Bytes of the archive (0 in a dry run).
    pub archive_bytes: u64,
}

/// The keys a run needs.
pub struct Keys {
    /// The archive key, when archives are encrypted.
    pub archive: Option<SymmetricKey>,
    /// Signs the index entries.
    pub signing: SigningKey,
    /// Verifies them.
    pub trust: TrustKeys,
    /// `[keys] dir`, for verification's lazily loaded archive key.
    pub dir: PathBuf,
}

/// Archives `candidate` into `archive_dir` (which exists and whose lock is held).
pub fn archive_one(
    candidate: &Candidate,
    archive_dir: &Path,
    encrypt: bool,
    keys: &Keys,
) -> Result<Outcome, OpsError> {
    let skipped = |reason: &str| {
        Ok(Outcome::Skipped {
            path: candidate.path.clone(),
            reason: reason.to_string(),
        })
    };
    // O_NOFOLLOW: a name swapped for a symlink since the scan is not followed.
    let mut original = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&candidate.path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return skipped("gone since the scan")
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return skipped("replaced by a symlink since the scan")
        }
        Err(e) => return Err(PathError::new(FileAction::Open, &candidate.path, e).into()),
    };
    if !same_file(&original, candidate)? {
        return skipped("replaced or modified since the scan");
    }
    let layout = Layout::for_name(&candidate.name, encrypt);
    let Some(target) = choose_name(candidate, archive_dir, layout, keys)? else {
        return skipped("archive/ holds an archive of another file of that name and mtime");
    };
    let final_path = archive_dir.join(&target);
    if entry_path(&final_path).exists() {
        // Indexed by an earlier run that was killed before it deleted the original.
        return complete(candidate, &final_path, keys);
    }

    let (mut file, read) = store::write_archive(
        &mut original,
        &candidate.path,
        &final_path,
        layout,
        keys.archive.as_ref(),
    )?;
    crate::failpoint::hit("logs-temp-synced");
    if crate::failpoint::armed("logs-damage-temp") {
        damage(file.temp_path());
    }
    let decoded = store::decode(
        file.temp_path(),
        layout,
        keys.archive.as_ref(),
        &mut std::io::sink(),
        |e| OpsError::io("reading back", &e),
    );
    let decoded = match decoded {
        Ok(d) if d.size == read.size && d.sha256 == read.sha256 => d,
        Ok(d) => {
            return Ok(Outcome::Mismatch {
                path: candidate.path.clone(),
                detail: format!(
                    "read back {} bytes with SHA-256 {}, the original had {} bytes with SHA-256 {}",
                    d.size, d.sha256, read.size, read.sha256
                ),
            })
        }
        Err(e) if e.exit == Exit::Data => {
            return Ok(Outcome::Mismatch {
                path: candidate.path.clone(),
                detail: e.what,
            })
        }
        Err(e) => return Err(e),
    };
    crate::failpoint::hit("logs-read-back");
    // Whatever was read must be the whole file as chosen: a writer that came back meanwhile
    // made the archive a copy of something else.
    if read.size != candidate.size || !same_file(&original, candidate)? {
        return skipped("modified while being archived (the archive was discarded)");
    }
    let entry = Entry {
        format: ENTRY_FORMAT,
        name: candidate.name.clone(),
        archive: target.clone(),
        size: read.size,
        sha256: read.sha256,
        mtime: candidate.mtime,
        compressed: layout.compressed,
        encrypted: layout.encrypted,
        archive_bytes: decoded.file_bytes,
        archive_sha256: decoded.file_sha256,
        archived_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    Signed::sign(entry, &keys.signing)?.write(&entry_path(&final_path), Replace::Never)?;
    crate::failpoint::hit("logs-entry-written");
    file.flush()
        .map_err(PathError::at(FileAction::Write, file.temp_path()))?;
    file.commit()?; // rename without replacing, then fsync archive/
    crate::failpoint::hit("logs-archive-committed");
    remove_original(candidate)?;
    crate::failpoint::hit("logs-original-removed");
    Ok(Outcome::Archived(Archived {
        path: candidate.path.clone(),
        archive: final_path,
        bytes: read.size,
        archive_bytes: decoded.file_bytes,
    }))
}

/// The archive name for `candidate`: `<name>…`, or `<name>@<mtime>…` when `<name>…` holds an
/// archive of another file (logrotate's numbered names come back); `None` when both do.
fn choose_name(
    candidate: &Candidate,
    archive_dir: &Path,
    layout: Layout,
    keys: &Keys,
) -> Result<Option<String>, OpsError> {
    for base in [
        candidate.name.clone(),
        format!("{}@{}", candidate.name, candidate.mtime),
    ] {
        let name = layout.archive_name(&base);
        let path = archive_dir.join(&name);
        if !entry_path(&path).exists() && path.symlink_metadata().is_err() {
            return Ok(Some(name));
        }
        if entry_path(&path).exists() {
            let entry = store::read_entry(&path, &keys.trust)?;
            if entry.name == candidate.name
                && entry.size == candidate.size
                && entry.mtime == candidate.mtime
            {
                return Ok(Some(name));
            }
        }
        // An archive file without an entry is an orphan: never overwritten, never reused.
    }
    Ok(None)
}

/// Finishes a file a killed run archived: the archive verified in full against its entry and
/// the entry against the original's bytes, then the original deleted.
fn complete(candidate: &Candidate, archive: &Path, keys: &Keys) -> Result<Outcome, OpsError> {
    let entry = store::read_entry(archive, &keys.trust)?;
    let decoded = store::decode(
        archive,
        store::layout_of(&entry),
        keys.archive.as_ref(),
        &mut std::io::sink(),
        |e| OpsError::io("reading back", &e),
    )
    .and_then(|d| store::check(archive, &entry, &d).map(|()| d));
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) if e.exit == Exit::Data => {
            return Ok(Outcome::Mismatch {
                path: candidate.path.clone(),
                detail: format!("its earlier archive does not verify: {}", e.what),
            })
        }
        Err(e) => return Err(e),
    };
    let mut original =
        File::open(&candidate.path).map_err(PathError::at(FileAction::Open, &candidate.path))?;
    let mut hashed = crate::sealed::Hashing::new(std::io::sink());
    std::io::copy(&mut original, &mut hashed)
        .map_err(PathError::at(FileAction::Read, &candidate.path))?;
    let (_, size, sha256) = hashed.finish();
    if size != entry.size || sha256 != entry.sha256 {
        return Ok(Outcome::Skipped {
            path: candidate.path.clone(),
            reason: format!(
                "differs from its archive {} of the same name, size and mtime",
                archive.display()
            ),
        });
    }
    remove_original(candidate)?;
    Ok(Outcome::Completed(Archived {
        path: candidate.path.clone(),
        archive: archive.to_path_buf(),
        bytes: entry.size,
        archive_bytes: decoded.file_bytes,
    }))
}

/// Whether the open `file` is still the candidate as scanned (same inode, size and mtime).
fn same_file(file: &File, candidate: &Candidate) -> Result<bool, OpsError> {
    let meta = file
        .metadata()
        .map_err(PathError::at(FileAction::Read, &candidate.path))?;
    Ok((meta.dev(), meta.ino()) == candidate.dev_ino
        && meta.len() == candidate.size
        && meta.mtime() == candidate.mtime)
}

/// Deletes the original, if its name still is the archived inode, and makes that durable.
fn remove_original(candidate: &Candidate) -> Result<(), OpsError> {
    let meta = std::fs::symlink_metadata(&candidate.path)
        .map_err(PathError::at(FileAction::Read, &candidate.path))?;
    if (meta.dev(), meta.ino()) != candidate.dev_ino {
        return Err(OpsError::new(
            Exit::TempFail,
            format!(
                "{} was replaced while it was archived; the new file is kept",
                candidate.path.display()
            ),
        )
        .hint("run again: the archive is verified and indexed, the next run finishes"));
    }
    std::fs::remove_file(&candidate.path)
        .map_err(PathError::at(FileAction::Remove, &candidate.path))?;
    if let Some(dir) = candidate.path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Flips one byte in the middle of `path` (the damage failpoint's fault).
fn damage(path: &Path) {
    if let Ok(mut bytes) = std::fs::read(path) {
        if !bytes.is_empty() {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x20;
            let _ = std::fs::write(path, bytes);
        }
    }
}
