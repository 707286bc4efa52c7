//! The backup's files restored under `--files-to`: planned (unsafe paths refused, the keys
//! directory fenced off, existing files refused without `--yes`), then written atomically,
//! each only after its SHA-256 matched, following the incremental chain.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{AtomicFile, Replace};
use ransomeye_kernel::{FileAction, PathError};

use super::{FilesTo, Plan};
use crate::backup_set::bundle;
use crate::backup_set::check;
use crate::backup_set::fence::Excluded;
use crate::backup_set::manifest::{Entry, Kind, Manifest, Paths};
use crate::error::{Exit, OpsError};
use crate::sealed::SealedReader;

/// A backup entry and where it is restored to.
pub(super) type Planned = (Entry, PathBuf);

/// Where each restorable entry goes under `to.dir`; existing files are refused without `--yes`.
/// Entries that would land in the keys directory are left out (returned with the reason), as
/// is a second entry for the same destination.
pub(super) fn plan(
    to: &FilesTo,
    manifest: &Manifest,
    yes: bool,
) -> Result<(Vec<Planned>, Vec<Excluded>), OpsError> {
    let dir = &to.dir;
    let mut planned: Vec<Planned> = Vec::new();
    let mut excluded = Vec::new();
    let mut existing = Vec::new();
    for e in &manifest.body.entries {
        let relative = match e.kind {
            Kind::Intel => continue, // restored with the database, checked by digest
            Kind::Config | Kind::Artifact => e.source.trim_start_matches('/'),
        };
        if relative.is_empty()
            || Path::new(relative)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(OpsError::new(
                Exit::Data,
                format!("backup entry {} has an unsafe path {:?}", e.path, e.source),
            ));
        }
        let dest = dir.join(relative);
        if to.keys.holds_destination(&dest) {
            excluded.push(Excluded {
                path: dest.display().to_string(),
                reason: to.keys.restore_reason(),
            });
            continue;
        }
        if planned.iter().any(|(_, d)| *d == dest) {
            continue;
        }
        if dest.symlink_metadata().is_ok() {
            existing.push(dest.display().to_string());
        }
        planned.push((e.clone(), dest));
    }
    if !existing.is_empty() && !yes {
        let shown: Vec<_> = existing.iter().take(5).cloned().collect();
        return Err(OpsError::new(
            Exit::CantCreate,
            format!(
                "{} files already exist under {} (e.g. {})",
                existing.len(),
                dir.display(),
                shown.join(", ")
            ),
        )
        .hint("pass --yes to replace them (this includes live configuration if DIR is /), or choose an empty --files-to"));
    }
    Ok((planned, excluded))
}

/// Writes the planned files, reading each bundle of the chain once. Each file is written
/// atomically and only after its SHA-256 matched.
pub(super) fn restore(
    paths: &Paths,
    manifest: &Manifest,
    plan: &Plan<'_>,
    files: &[(Entry, PathBuf)],
) -> Result<usize, OpsError> {
    let mut by_backup: BTreeMap<&str, Vec<&(Entry, PathBuf)>> = BTreeMap::new();
    for f in files {
        by_backup.entry(f.0.stored_in.as_str()).or_default().push(f);
    }
    let dir = paths.manifest.parent().unwrap_or(Path::new("."));
    let mut restored = 0;
    // A bundle may hold a file twice (backups made before each file was stored once).
    let mut done = HashSet::new();
    for (holder, wanted) in by_backup {
        let holder_paths = Paths::new(dir, holder);
        if holder != manifest.body.name {
            let m = check::quick(&holder_paths, &plan.trust_keys)?;
            check::check_key(&holder_paths, &m, plan.key)?;
        }
        let mut reader = SealedReader::open(&holder_paths.files, plan.key)?;
        bundle::read(&holder_paths.files, &mut reader, |path, contents| {
            let Some((entry, dest)) = wanted
                .iter()
                .map(|f| (&f.0, &f.1))
                .find(|(e, _)| e.path == path)
            else {
                return Ok(());
            };
            if !done.insert(dest.clone()) {
                return Ok(());
            }
            write_file(dest, entry, contents, plan.yes)?;
            restored += 1;
            Ok(())
        })?;
    }
    if restored != files.len() {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "restored {restored} of {} files: the backup chain is incomplete",
                files.len()
            ),
        ));
    }
    Ok(restored)
}

fn write_file(
    dest: &Path,
    entry: &Entry,
    contents: &mut dyn Read,
    replace: bool,
) -> Result<(), OpsError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(PathError::at(FileAction::Create, parent))?;
    }
    let ownership = Ownership {
        mode: entry.mode & 0o777,
        gid: None,
        uid: None,
    };
    let mode = if replace {
        Replace::Allowed
    } else {
        Replace::Never
    };
    let mut file = AtomicFile::create_with(dest, ownership, mode)?;
    let mut hashed = crate::sealed::Hashing::new(contents);
    std::io::copy(&mut hashed, &mut file).map_err(PathError::at(FileAction::Write, dest))?;
    let (_, size, sha256) = hashed.finish();
    if size != entry.size || sha256 != entry.sha256 {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: restored contents differ from the manifest; not written",
                entry.path
            ),
        ));
    }
    file.commit()?;
    Ok(())
}
