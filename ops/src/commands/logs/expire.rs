//! Archive retention: archives of logs older than the archive retention are deleted, but only
//! once every archive that stays verified in full.
//!
//! A deletion moves the entry to a temp name first, then deletes the archive, then the moved
//! entry: a kill in between leaves a temp entry beside its archive, which the next run's
//! recovery recognises and finishes ([`super::recover`]). No state ever shows an entry
//! without its archive.

use std::path::{Path, PathBuf};

use ransomeye_kernel::atomic_file::{rename_to_temp, sync_dir, temp_target};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use super::store::{self, Entry, ENTRY_SUFFIX};
use super::verify;
use crate::error::OpsError;
use crate::trust::TrustKeys;

/// One archive deleted by retention.
#[derive(Debug, Clone, Serialize)]
pub struct Expired {
    /// The archive.
    pub archive: PathBuf,
    /// The original log's mtime (RFC 3339).
    pub log_mtime: String,
    /// Bytes freed (archive and entry).
    pub freed_bytes: u64,
}

/// Archives due for deletion, with their entries; and the archives that stay.
pub type Split = (Vec<(PathBuf, Entry)>, Vec<PathBuf>);

/// The archives in `archive_dir` whose log's mtime is before `cutoff` (seconds since the
/// epoch), with their entries; and the ones that stay.
pub fn split(archive_dir: &Path, cutoff: i64, trust: &TrustKeys) -> Result<Split, OpsError> {
    let (mut expiring, mut staying) = (Vec::new(), Vec::new());
    for archive in verify::indexed(archive_dir)? {
        match store::read_entry(&archive, trust) {
            Ok(entry) if entry.mtime < cutoff => expiring.push((archive, entry)),
            // An entry that does not check out stays, and the verification of what stays fails.
            _ => staying.push(archive),
        }
    }
    Ok((expiring, staying))
}

/// Deletes the archives `expiring` (already decided, the rest verified).
pub fn delete(archive_dir: &Path, expiring: &[(PathBuf, Entry)]) -> Result<Vec<Expired>, OpsError> {
    let mut expired = Vec::new();
    for (archive, entry) in expiring {
        let entry_file = store::entry_path(archive);
        let entry_bytes = std::fs::metadata(&entry_file).map(|m| m.len()).unwrap_or(0);
        let moved = rename_to_temp(&entry_file)?;
        debug_assert!(moved
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(temp_target)
            .is_some_and(|t| t.ends_with(ENTRY_SUFFIX)));
        sync_dir(archive_dir)?;
        crate::failpoint::hit("logs-expire-entry-moved");
        std::fs::remove_file(archive).map_err(PathError::at(FileAction::Remove, archive))?;
        crate::failpoint::hit("logs-expire-archive-removed");
        std::fs::remove_file(&moved).map_err(PathError::at(FileAction::Remove, &moved))?;
        sync_dir(archive_dir)?;
        expired.push(Expired {
            archive: archive.clone(),
            log_mtime: mtime_text(entry.mtime),
            freed_bytes: entry.archive_bytes + entry_bytes,
        });
    }
    Ok(expired)
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn mtime_text(secs: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}
