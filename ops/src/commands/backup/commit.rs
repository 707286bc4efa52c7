//! How a backup becomes durable and how it is unmade: the commit order of its files, the
//! completion (or removal) of what an interrupted run left, and deletion, which takes the commit
//! steps backwards (see the durable order in `backup`'s module comment).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::AtomicFile;
use ransomeye_kernel::{FileAction, PathError};

use crate::backup_set::bundle;
use crate::backup_set::manifest::{self, Manifest, Paths};
use crate::error::OpsError;
use crate::trust::TrustKeys;

/// Step 2: finish what an interrupted run (or removal) left, which is only ever temp files of
/// the atomic writer named after a backup's files, and data files under their names beside a
/// temp manifest. A backup without a manifest whose temp manifest is signed and names the exact
/// bytes of both data files (under their names or in temp files) is completed; the other temp
/// files are removed. Nothing else is touched. Call only while holding the lock. Returns the
/// backups completed.
pub(super) fn settle_interrupted(dir: &Path, trust: &TrustKeys) -> Result<Vec<String>, OpsError> {
    let mut by_backup: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(PathError::at(FileAction::Read, dir))? {
        let entry = entry.map_err(PathError::at(FileAction::Read, dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(target) = ransomeye_kernel::atomic_file::temp_target(&name) else {
            continue;
        };
        let Some(backup) = manifest::backup_name(target) else {
            continue;
        };
        if entry.path().symlink_metadata().is_ok_and(|m| m.is_file()) {
            by_backup
                .entry(backup.to_string())
                .or_default()
                .push((entry.path(), target.to_string()));
        }
    }
    let mut completed = Vec::new();
    for (backup, temps) in &by_backup {
        let paths = Paths::new(dir, backup);
        if complete(&paths, temps, trust)? {
            tracing::info!(backup = %backup, "completed a backup an interrupted run had written up to its manifest");
            completed.push(backup.clone());
        }
        for (temp, _) in temps {
            match std::fs::remove_file(temp) {
                Ok(()) => {
                    tracing::info!(file = %temp.display(), "removed a temporary file left by an interrupted run")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(PathError::new(FileAction::Remove, temp, e).into()),
            }
        }
    }
    if !by_backup.is_empty() {
        ransomeye_kernel::atomic_file::sync_dir(dir)?;
    }
    Ok(completed)
}

/// Completes backup `paths` from its temp files `temps` (path, final name) if it has no
/// manifest, a temp manifest that parses, names it and verifies, and both data files it names
/// with their exact size and SHA-256, each under its name or in a temp file. False otherwise.
fn complete(
    paths: &Paths,
    temps: &[(PathBuf, String)],
    trust: &TrustKeys,
) -> Result<bool, OpsError> {
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    if paths.manifest.symlink_metadata().is_ok() {
        return Ok(false);
    }
    let Some((manifest_temp, m)) = temps
        .iter()
        .filter(|(_, target)| Some(target) == file_name(&paths.manifest).as_ref())
        .find_map(|(temp, _)| {
            let m = Manifest::read(temp, "backup manifest").ok()?;
            (m.body.name == paths.name && m.verify_signature(trust).is_ok()).then_some((temp, m))
        })
    else {
        return Ok(false);
    };
    let mut renames = Vec::new();
    for (final_path, expected) in [(&paths.dump, &m.body.dump), (&paths.files, &m.body.files)] {
        if file_name(final_path).as_deref() != Some(expected.file.as_str()) {
            return Ok(false);
        }
        let matches = |p: &Path| -> Result<bool, OpsError> {
            let (bytes, sha256) = bundle::hash_file(p)?;
            Ok(bytes == expected.bytes && sha256 == expected.sha256)
        };
        if final_path.symlink_metadata().is_ok() {
            if !matches(final_path)? {
                return Ok(false);
            }
            continue;
        }
        let mut found = None;
        for (temp, target) in temps {
            if *target == expected.file && matches(temp)? {
                found = Some(temp);
                break;
            }
        }
        match found {
            Some(temp) => renames.push((temp, final_path)),
            None => return Ok(false),
        }
    }
    // The data files first, the manifest last, as a run commits them; a hard link fails if the
    // name exists, so nothing is ever replaced.
    renames.push((manifest_temp, &paths.manifest));
    for (temp, final_path) in renames {
        std::fs::hard_link(temp, final_path)
            .map_err(PathError::at(FileAction::Rename, final_path))?;
        std::fs::remove_file(temp).map_err(PathError::at(FileAction::Remove, temp))?;
    }
    Ok(true)
}

/// Step 6, the commit: the data files and the manifest made durable under their temp names,
/// then the data files renamed to their names, then the manifest (the commit point). A crash
/// before that leaves what [`settle_interrupted`] completes or removes; a failure unmakes the
/// backup.
pub(super) fn persist(
    mut dump: AtomicFile,
    mut files: AtomicFile,
    manifest: &Manifest,
    paths: &Paths,
    dir: &Path,
) -> Result<(), OpsError> {
    dump.sync()?;
    files.sync()?;
    let mut manifest_file = AtomicFile::create(&paths.manifest, Ownership::secret_file())?;
    manifest_file
        .write_all(&manifest.to_vec()?)
        .map_err(|e| PathError::new(FileAction::Write, manifest_file.temp_path(), e))?;
    manifest_file.sync()?;
    ransomeye_kernel::atomic_file::sync_dir(dir)?;
    crate::failpoint::hit("backup-before-commit");
    let committed = dump.commit().and_then(|_| {
        crate::failpoint::hit("backup-before-manifest");
        files.commit()?;
        manifest_file.commit()
    });
    if let Err(e) = committed {
        // The uncommitted temp files went with their writers; what was renamed is this run's.
        remove_backup(dir, paths)?;
        return Err(OpsError::from(e).hint(format!(
            "the new backup {} could not be committed and was removed; older backups are untouched",
            paths.name
        )));
    }
    Ok(())
}

/// Flips one byte in the middle of `path` (the `backup-damage-before-verify` failpoint: a disk
/// that corrupts what it was given).
pub(super) fn damage_for_test(path: &Path) -> Result<(), OpsError> {
    let mut bytes = std::fs::read(path).map_err(PathError::at(FileAction::Read, path))?;
    let middle = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(middle) {
        *b ^= 0x40;
    }
    std::fs::write(path, bytes).map_err(PathError::at(FileAction::Write, path))?;
    Ok(())
}

/// Deletes a backup, the commit steps backwards: the manifest moved to a temp name (the backup
/// is no longer committed), then its data files, then the temp files removed, data first. A
/// crash in between leaves temp files and perhaps data files beside a temp manifest, which the
/// next run completes (and retention deletes again) or removes; never an orphan.
pub(super) fn remove_backup(dir: &Path, paths: &Paths) -> Result<(), OpsError> {
    use ransomeye_kernel::atomic_file::{rename_to_temp, sync_dir};
    let mut moved = Vec::new();
    for path in [&paths.manifest, &paths.dump, &paths.files] {
        match path.symlink_metadata() {
            Ok(_) => moved.push(rename_to_temp(path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PathError::new(FileAction::Read, path, e).into()),
        }
        if path == &paths.manifest {
            sync_dir(dir)?;
        }
    }
    sync_dir(dir)?;
    crate::failpoint::hit("backup-remove-before-delete");
    for path in &moved {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PathError::new(FileAction::Remove, path, e).into()),
        }
    }
    Ok(sync_dir(dir)?)
}
