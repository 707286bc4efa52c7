//! Step 8 of `backup`: retention, applied only after the new backup verified.

use std::collections::HashSet;

use super::commit::remove_backup;
use super::Job;
use crate::backup_set::{check, manifest};
use crate::error::{Exit, OpsError};

/// What retention did.
pub(super) struct Retention {
    /// Backups deleted.
    pub deleted: Vec<String>,
    /// Backups failing the quick check: never counted, never deleted.
    pub kept_unverified: Vec<String>,
}

/// Keeps the newest `keep` backups that pass the quick check (signature, files present
/// with their sizes), plus any older backup still holding artifacts a kept one refers to.
/// Backups failing the check are never counted and never deleted: they are reported for a
/// human to look at.
pub(super) fn apply(job: &Job, newest: &str) -> Result<Retention, OpsError> {
    let mut good = Vec::new();
    let mut unverified = Vec::new();
    for paths in manifest::list(&job.dir)? {
        match check::quick(&paths, &job.trust_keys) {
            Ok(m) => good.push((paths, m)),
            Err(_) => unverified.push(paths.name),
        }
    }
    if !good.iter().any(|(p, _)| p.name == newest) {
        return Err(OpsError::new(
            Exit::Software,
            format!("the new backup {newest} is not among the verified backups; nothing deleted"),
        ));
    }
    let keep = job.keep.max(1) as usize;
    let split = good.len().saturating_sub(keep);
    let (old, kept) = good.split_at(split);
    let referenced: HashSet<&str> = kept
        .iter()
        .flat_map(|(_, m)| m.body.entries.iter().map(|e| e.stored_in.as_str()))
        .collect();
    let mut deleted = Vec::new();
    for (paths, _) in old {
        if referenced.contains(paths.name.as_str()) {
            continue;
        }
        remove_backup(&job.dir, paths)?;
        deleted.push(paths.name.clone());
    }
    Ok(Retention {
        deleted,
        kept_unverified: unverified,
    })
}
