//! What a killed `logs archive` left in an archive directory, found and finished before a run
//! (with the lock held, so nothing found here is still being written).
//!
//! A killed run leaves at most: temp files (an archive or an entry being written: removed); an
//! entry whose archive was never renamed into place while its original still exists (removed:
//! the original is archived again); an expiry cut short (its entry moved to a temp name, the
//! archive still there: the archive is deleted, as the run had decided). An archive committed
//! whose original was not yet deleted is finished by the candidate path
//! ([`super::archive::archive_one`]).

use std::path::{Path, PathBuf};

use ransomeye_kernel::atomic_file::{sync_dir, temp_target};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use super::store::{self, ENTRY_SUFFIX, ENTRY_WHAT};
use crate::error::OpsError;
use crate::signed::Signed;
use crate::trust::TrustKeys;

/// What recovery did (or in a dry run would do).
#[derive(Debug, Default, Serialize)]
pub struct Recovered {
    /// Temp files removed.
    pub temp_files: Vec<PathBuf>,
    /// Entries removed whose archive never appeared (the original is still there).
    pub stale_entries: Vec<PathBuf>,
    /// Archives whose interrupted expiry was finished.
    pub expiries_finished: Vec<PathBuf>,
}

/// Finishes or removes what a killed run left in `archive_dir` of `log_dir`.
pub fn recover(
    log_dir: &Path,
    archive_dir: &Path,
    trust: &TrustKeys,
    dry_run: bool,
) -> Result<Recovered, OpsError> {
    let mut done = Recovered::default();
    let Ok(entries) = std::fs::read_dir(archive_dir) else {
        return Ok(done); // no archive dir yet (dry run): nothing left behind
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    for name in &names {
        let Some(target) = temp_target(name) else {
            continue;
        };
        let temp = archive_dir.join(name);
        if let Some(archive) = target.strip_suffix(ENTRY_SUFFIX) {
            let archive = archive_dir.join(archive);
            let entry = archive_dir.join(target);
            if !entry.exists() && archive.exists() && names_archive(&temp, &archive, trust) {
                // An expiry moves the entry aside first: finish it.
                if !dry_run {
                    remove(&archive)?;
                }
                done.expiries_finished.push(archive);
            }
        }
        if !dry_run {
            remove(&temp)?;
        }
        done.temp_files.push(temp);
    }
    for name in &names {
        let Some(archive) = name.strip_suffix(ENTRY_SUFFIX) else {
            continue;
        };
        if temp_target(name).is_some() || archive_dir.join(archive).exists() {
            continue;
        }
        let entry = archive_dir.join(name);
        let Ok(signed) = Signed::<store::Entry>::read(&entry, ENTRY_WHAT) else {
            continue; // verification reports it
        };
        // Only an entry of ours, whose original is still in place, is stale: the run was
        // killed between the entry and the rename. Anything else is left for verify to report.
        if signed.verify_signature(trust).is_ok()
            && signed.body.archive == archive
            && log_dir.join(&signed.body.name).is_file()
        {
            if !dry_run {
                remove(&entry)?;
            }
            done.stale_entries.push(entry);
        }
    }
    let removed_any = !(done.temp_files.is_empty() && done.stale_entries.is_empty());
    if removed_any && !dry_run {
        sync_dir(archive_dir)?;
    }
    Ok(done)
}

/// Whether the temp file `temp` is a complete, signed entry of `archive`.
fn names_archive(temp: &Path, archive: &Path, trust: &TrustKeys) -> bool {
    let Ok(signed) = Signed::<store::Entry>::read(temp, ENTRY_WHAT) else {
        return false;
    };
    signed.verify_signature(trust).is_ok()
        && archive.file_name().and_then(|n| n.to_str()) == Some(signed.body.archive.as_str())
}

fn remove(path: &Path) -> Result<(), OpsError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PathError::new(FileAction::Remove, path, e).into()),
    }
}
