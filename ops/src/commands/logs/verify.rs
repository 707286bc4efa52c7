//! `logs verify` and `logs cat`, and the listing of an archive directory they and retention
//! share: which files are archives (those with an entry), and which are orphans.

use std::io::Write;
use std::path::{Path, PathBuf};

use ransomeye_kernel::atomic_file::is_temp_name;
use ransomeye_kernel::keys::{KeyDir, KeyPurpose, SymmetricKey};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use super::store::{self, archive_path, entry_path, ENTRY_SUFFIX};
use crate::error::{Exit, OpsError};
use crate::trust::TrustKeys;

/// The archive key, loaded the first time an encrypted archive needs it.
pub struct LazyKey<'a> {
    dir: &'a Path,
    key: Option<SymmetricKey>,
}

impl<'a> LazyKey<'a> {
    /// The archive key of the key directory `dir`, not loaded yet.
    pub fn new(dir: &'a Path) -> LazyKey<'a> {
        LazyKey { dir, key: None }
    }

    /// The key when `needed`, loading it once.
    pub fn get(&mut self, needed: bool) -> Result<Option<&SymmetricKey>, OpsError> {
        if !needed {
            return Ok(None);
        }
        if self.key.is_none() {
            self.key = Some(KeyDir::new(self.dir).load_symmetric(KeyPurpose::Archive)?);
        }
        Ok(self.key.as_ref())
    }
}

/// The archives of `archive_dir` that have an entry (sorted); a missing directory has none.
pub fn indexed(archive_dir: &Path) -> Result<Vec<PathBuf>, OpsError> {
    Ok(listing(archive_dir)?
        .into_iter()
        .filter_map(|name| name.strip_suffix(ENTRY_SUFFIX).map(|a| archive_dir.join(a)))
        .collect())
}

/// Files of `archive_dir` that are neither entries, archives with an entry, temp files nor
/// the lock; and entries whose archive is missing. Both are reported by verify.
pub fn orphans(archive_dir: &Path) -> Result<Vec<(PathBuf, &'static str)>, OpsError> {
    let names = listing(archive_dir)?;
    let mut out = Vec::new();
    for name in &names {
        let path = archive_dir.join(name);
        if let Some(archive) = name.strip_suffix(ENTRY_SUFFIX) {
            if !names.iter().any(|n| n == archive) {
                out.push((path, "index entry without its archive"));
            }
        } else if !names.contains(&format!("{name}{ENTRY_SUFFIX}")) {
            out.push((path, "archive without an index entry"));
        }
    }
    Ok(out)
}

/// Names in `archive_dir`, sorted, without temp files and the run lock.
fn listing(archive_dir: &Path) -> Result<Vec<String>, OpsError> {
    let entries = match std::fs::read_dir(archive_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PathError::new(FileAction::Read, archive_dir, e).into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(PathError::at(FileAction::Read, archive_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_temp_name(&name) && name != LOCK_FILE {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The run lock's file name in an archive directory (see [`crate::run_lock`]).
pub const LOCK_FILE: &str = ".logs-archive.lock";
/// The name passed to [`crate::run_lock::RunLock::acquire`] for [`LOCK_FILE`].
pub const LOCK_NAME: &str = "logs-archive";

/// One archive's verification.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The archive (or orphan).
    pub file: PathBuf,
    /// The original log's name.
    pub name: Option<String>,
    /// Bytes of the original.
    pub bytes: u64,
    /// `None` when it verified, else what failed.
    pub error: Option<String>,
}

/// Verifies the archive `archive` in full against its entry.
pub fn verify_one(archive: &Path, trust: &TrustKeys, key: &mut LazyKey<'_>) -> Checked {
    let result = (|| {
        let entry = store::read_entry(archive, trust)?;
        let key = key.get(entry.encrypted)?;
        let decoded = store::decode(
            archive,
            store::layout_of(&entry),
            key,
            &mut std::io::sink(),
            |e| OpsError::io("reading", &e),
        )?;
        store::check(archive, &entry, &decoded)?;
        Ok::<_, OpsError>(entry)
    })();
    match result {
        Ok(entry) => Checked {
            file: archive.to_path_buf(),
            name: Some(entry.name),
            bytes: entry.size,
            error: None,
        },
        Err(e) => Checked {
            file: archive.to_path_buf(),
            name: None,
            bytes: 0,
            error: Some(e.what),
        },
    }
}

/// Verifies every archive of `archive_dir` and reports its orphans as failures.
pub fn verify_dir(
    archive_dir: &Path,
    trust: &TrustKeys,
    key: &mut LazyKey<'_>,
) -> Result<Vec<Checked>, OpsError> {
    let mut out: Vec<Checked> = indexed(archive_dir)?
        .iter()
        .filter(|a| a.exists())
        .map(|a| verify_one(a, trust, key))
        .collect();
    for (file, why) in orphans(archive_dir)? {
        out.push(Checked {
            file,
            name: None,
            bytes: 0,
            error: Some(why.to_string()),
        });
    }
    Ok(out)
}

/// `logs cat`: the archive's original bytes to stdout, verified at the end.
pub fn cat(file: &Path, trust: &TrustKeys, key: &mut LazyKey<'_>) -> Result<(), OpsError> {
    let archive = archive_path(file);
    if !archive.exists() && !entry_path(&archive).exists() {
        return Err(OpsError::new(
            Exit::NoInput,
            format!("{}: no such log archive", archive.display()),
        ));
    }
    let entry = store::read_entry(&archive, trust)?;
    let key = key.get(entry.encrypted)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let decoded = store::decode(
        &archive,
        store::layout_of(&entry),
        key,
        &mut out,
        OpsError::stdout,
    )?;
    out.flush().map_err(OpsError::stdout)?;
    store::check(&archive, &entry, &decoded)
}
