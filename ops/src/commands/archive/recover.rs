//! Interrupted runs and the archive directory: the scan of its files, the orphans, and completing
//! what an interrupted run left.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;
use sqlx::PgConnection;

use super::check::verify_archive;
use super::export::file_name;
use super::manifest;
use super::manifest::{manifest_path, Manifest, State};
use super::prune::prune;
use super::shape::TableShape;
use super::Job;
use crate::error::{Exit, OpsError};

/// A file of the archive directory whose other half is missing. Runs never delete one: only the
/// operator knows whether its other half was moved, lost or never existed.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Orphan {
    pub(super) file: PathBuf,
    pub(super) reason: &'static str,
}

pub(super) const NO_MANIFEST: &str = "a data file without its manifest";
const NO_DATA: &str = "a manifest without its data file";

/// The archive directory's files, by name.
pub(super) struct DirScan {
    /// Manifests (`logs_*.manifest.json`), sorted by name.
    pub(super) manifests: Vec<(PathBuf, Manifest)>,
    /// Data files (`logs_*.zst.enc`), sorted by name.
    data_files: Vec<PathBuf>,
    /// Temp files of the atomic writer (`.logs_*.tmp-*`): only an unfinished run leaves them.
    temp_files: Vec<PathBuf>,
}

impl DirScan {
    pub(super) fn read(dir: &Path) -> Result<DirScan, OpsError> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(PathError::at(FileAction::Read, dir))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        let mut scan = DirScan {
            manifests: Vec::new(),
            data_files: Vec::new(),
            temp_files: Vec::new(),
        };
        for name in names {
            let path = dir.join(&name);
            if ransomeye_kernel::atomic_file::is_temp_name(&name) && name.starts_with(".logs_") {
                scan.temp_files.push(path);
            } else if name.starts_with("logs_") && name.ends_with(".manifest.json") {
                let manifest = Manifest::read(&path, "archive manifest")?;
                scan.manifests.push((path, manifest));
            } else if name.starts_with("logs_") && name.ends_with(".zst.enc") {
                scan.data_files.push(path);
            }
        }
        Ok(scan)
    }

    /// The temp files an unfinished commit of `archive` may have left (`.<name>.tmp-*`).
    fn temps_of(&self, archive: &Path) -> Vec<PathBuf> {
        let prefix = format!(
            ".{}{}",
            file_name(archive),
            ransomeye_kernel::atomic_file::TEMP_MARKER
        );
        self.temp_files
            .iter()
            .filter(|t| file_name(t).starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// Whether `manifest` is a `written` one whose archive is still at a temp name: an
    /// interrupted run that the next run completes, not an orphan.
    pub(super) fn is_interrupted(&self, manifest_file: &Path, manifest: &Manifest) -> bool {
        manifest.body.state == State::Written
            && !self
                .temps_of(&manifest::archive_path(manifest_file, &manifest.body))
                .is_empty()
    }

    /// Data files without their manifest, and manifests without their data file (except an
    /// interrupted run's, whose data file is still at its temp name).
    pub(super) fn orphans(&self) -> Vec<Orphan> {
        let mut orphans: Vec<Orphan> = self
            .data_files
            .iter()
            .filter(|d| !manifest_path(d).exists())
            .map(|d| Orphan {
                file: d.clone(),
                reason: NO_MANIFEST,
            })
            .collect();
        for (path, manifest) in &self.manifests {
            if !manifest::archive_path(path, &manifest.body).exists()
                && !self.is_interrupted(path, manifest)
            {
                orphans.push(Orphan {
                    file: path.clone(),
                    reason: NO_DATA,
                });
            }
        }
        orphans.sort_by(|a, b| a.file.cmp(&b.file));
        orphans
    }
}

/// What [`finish_interrupted`] did (or, in a dry run, would do).
pub(super) struct Recovery {
    pub(super) completed: Vec<PathBuf>,
    /// First and last ids of the completed archives.
    pub(super) pending_ids: Vec<(i64, i64)>,
    pub(super) temp_files: Vec<PathBuf>,
    pub(super) orphans: Vec<Orphan>,
}

/// Step 2: complete what an interrupted run left in the archive directory: a `written` archive
/// is verified and its prune completed; a `written` manifest whose archive is still at its temp
/// name gets that file renamed into place first, if the file matches the manifest in full. Then
/// the remaining temp files are removed. Orphans are reported and kept. With `dry_run`, every
/// check is made and nothing is changed.
pub(super) async fn finish_interrupted(
    conn: &mut PgConnection,
    job: &Job,
    shape: &TableShape,
    dry_run: bool,
) -> Result<Recovery, OpsError> {
    let scan = DirScan::read(&job.dir)?;
    let mut orphans = scan.orphans();
    let mut pending: Vec<(PathBuf, Option<PathBuf>, &Manifest)> = Vec::new();
    // Temp files that stay: the ones to rename into place, and those of another table's
    // interrupted run (that table's next run completes it).
    let mut keep = HashSet::new();
    for (manifest_file, manifest) in &scan.manifests {
        if manifest.body.state != State::Written {
            continue;
        }
        if manifest.body.table != job.table {
            keep.extend(scan.temps_of(&manifest::archive_path(manifest_file, &manifest.body)));
            continue;
        }
        let archive = manifest::archive_path(manifest_file, &manifest.body);
        if archive.exists() {
            verify_archive(&archive, manifest, &job.archive_key, &job.trust_keys)
                .await
                .map_err(|e| e.hint("an interrupted archive does not verify, so its rows were not deleted; investigate before rerunning"))?;
            pending.push((archive, None, manifest));
            continue;
        }
        // Interrupted between the manifest and the archive's rename: nothing was deleted, and
        // the archive is complete at its temp name unless the machine lost it (power cut).
        let mut found = None;
        for temp in scan.temps_of(&archive) {
            match verify_archive(&temp, manifest, &job.archive_key, &job.trust_keys).await {
                Ok(()) => {
                    found = Some(temp);
                    break;
                }
                Err(e) if e.exit == Exit::Data => {
                    tracing::warn!(file = %temp.display(), "an interrupted run's temp file does not match its manifest: {}", e.what);
                }
                Err(e) => return Err(e),
            }
        }
        match found {
            Some(temp) => {
                keep.insert(temp.clone());
                pending.push((archive, Some(temp), manifest));
            }
            None if scan.is_interrupted(manifest_file, manifest) => orphans.push(Orphan {
                file: manifest_file.clone(),
                reason: NO_DATA,
            }),
            None => {}
        }
    }
    orphans.sort_by(|a, b| a.file.cmp(&b.file));
    let temp_files: Vec<PathBuf> = scan
        .temp_files
        .iter()
        .filter(|t| !keep.contains(*t))
        .cloned()
        .collect();
    let completed: Vec<PathBuf> = pending.iter().map(|(a, _, _)| a.clone()).collect();
    let pending_ids = pending
        .iter()
        .filter_map(|(_, _, m)| Some((m.body.first_id?, m.body.last_id?)))
        .collect();
    if dry_run {
        return Ok(Recovery {
            completed,
            pending_ids,
            temp_files,
            orphans,
        });
    }
    for (archive, temp, manifest) in pending {
        tracing::warn!(file = %archive.display(), "completing an interrupted archive run");
        if let Some(temp) = temp {
            adopt(&temp, &archive)?;
        }
        // No row versions survive a crash: the resumed prune compares the rows' contents.
        prune(conn, job, shape, &archive, manifest.clone(), None).await?;
    }
    for temp in &temp_files {
        tracing::info!(file = %temp.display(), "removing a temporary file left by an interrupted run");
        std::fs::remove_file(temp).map_err(PathError::at(FileAction::Remove, temp))?;
    }
    Ok(Recovery {
        completed,
        pending_ids,
        temp_files,
        orphans,
    })
}

/// Puts an interrupted run's complete temp file under its final name: fsync, link (which never
/// replaces an existing file), fsync the directory, then remove the temp name.
fn adopt(temp: &Path, archive: &Path) -> Result<(), OpsError> {
    std::fs::File::open(temp)
        .and_then(|f| f.sync_all())
        .map_err(PathError::at(FileAction::Sync, temp))?;
    std::fs::hard_link(temp, archive).map_err(PathError::at(FileAction::Rename, archive))?;
    let dir = archive.parent().unwrap_or(Path::new("."));
    ransomeye_kernel::atomic_file::sync_dir(dir)?;
    std::fs::remove_file(temp).map_err(PathError::at(FileAction::Remove, temp))?;
    ransomeye_kernel::atomic_file::sync_dir(dir)?;
    Ok(())
}
