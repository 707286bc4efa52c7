//! The backup manifest and the names of a backup's files.
//!
//! A backup `ransomeye_<UTC YYYYMMDDTHHMMSSZ>[-N]` is three files in the backup directory:
//! `<name>.enc` (the database dump), `<name>.files.enc` (the file bundle) and
//! `<name>.manifest.json`, a [`Signed`] [`Body`] describing both. The manifest is written last:
//! it is the backup's commit point, and the data files get their names only after it (see
//! `backup`). So a data file without a manifest is never an interrupted run's leftover: it is an
//! [`orphans`] entry (its manifest was lost), reported and kept until an operator removes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ransomeye_intel::GraphDigest;
use serde::{Deserialize, Serialize};

use crate::error::{Exit, OpsError};
use crate::signed::Signed;

/// Manifest format version.
pub const FORMAT: u32 = 1;
/// File-name prefix of every backup.
pub const PREFIX: &str = "ransomeye_";
/// Suffix of the database dump file.
pub const DUMP_SUFFIX: &str = ".enc";
/// Suffix of the file bundle.
pub const FILES_SUFFIX: &str = ".files.enc";
/// Suffix of the manifest.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// A signed backup manifest.
pub type Manifest = Signed<Body>;

/// The signed contents of a backup manifest. Fields a later version adds are ignored here; the
/// signature covers them all the same (see [`crate::signed`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Manifest format version.
    pub format: u32,
    /// The backup's name (`ransomeye_20261123T132200Z`); its files are named after it.
    pub name: String,
    /// When the snapshot was taken (database clock, RFC 3339).
    pub snapshot_time: String,
    /// Database name the dump came from.
    pub database: String,
    /// `server_version` of the PostgreSQL server.
    pub server_version: String,
    /// `pg_dump --version` of the program that wrote the dump.
    pub pg_dump_version: String,
    /// Version of ransomeye-ops that wrote the backup.
    pub tool_version: String,
    /// Key id of the backup key that encrypted both files.
    pub backup_key_id: String,
    /// zstd level used.
    pub zstd_level: i32,
    /// The dump: custom-format `pg_dump` output, zstd-compressed, encrypted.
    pub dump: SealedFile,
    /// The file bundle: a tar, zstd-compressed, encrypted.
    pub files: SealedFile,
    /// Exact row count of every table in the snapshot (`schema.table`).
    pub tables: BTreeMap<String, u64>,
    /// Digest of the intel graph's canonical export in the snapshot.
    pub intel: GraphDigest,
    /// Every file the backup restores, with the backup whose bundle holds its bytes.
    pub entries: Vec<Entry>,
}

/// One encrypted file of a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFile {
    /// File name in the backup directory.
    pub file: String,
    /// Size of the file.
    pub bytes: u64,
    /// SHA-256 (hex) of the file (the ciphertext).
    pub sha256: String,
    /// Size of the plaintext (the dump or the tar).
    pub plaintext_bytes: u64,
    /// SHA-256 (hex) of the plaintext.
    pub plaintext_sha256: String,
}

/// What an entry of the bundle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A configuration file (`[backup] include`, the kernel configuration).
    Config,
    /// A forensic artifact (`[backup] artifacts_dir`), stored incrementally.
    Artifact,
    /// The intel graph's canonical export.
    Intel,
}

/// One file the backup can restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path inside the tar (`config/etc/ransomeye/config.toml`, `artifacts/<rel>`,
    /// `intel/graph.jsonl`).
    pub path: String,
    /// Config, artifact or intel.
    pub kind: Kind,
    /// Where the file was (an absolute path; the tables for the intel export).
    pub source: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Permission bits.
    pub mode: u32,
    /// SHA-256 (hex) of the contents.
    pub sha256: String,
    /// Name of the backup whose bundle holds the bytes (this one, or an older one).
    pub stored_in: String,
}

/// The paths of one backup's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The backup's name.
    pub name: String,
    /// `<name>.enc`.
    pub dump: PathBuf,
    /// `<name>.files.enc`.
    pub files: PathBuf,
    /// `<name>.manifest.json`.
    pub manifest: PathBuf,
}

impl Paths {
    /// The files of backup `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Paths {
        Paths {
            name: name.to_string(),
            dump: dir.join(format!("{name}{DUMP_SUFFIX}")),
            files: dir.join(format!("{name}{FILES_SUFFIX}")),
            manifest: dir.join(format!("{name}{MANIFEST_SUFFIX}")),
        }
    }

    /// The backup a path names: any of its three files, or its bare name.
    pub fn of(path: &Path) -> Option<Paths> {
        let file_name = path.file_name()?.to_str()?;
        let name = backup_name(file_name).unwrap_or(file_name);
        if !is_backup_name(name) {
            return None;
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        Some(Paths::new(dir.unwrap_or(Path::new(".")), name))
    }

    /// Whether any of the three files exists.
    pub fn any_exists(&self) -> bool {
        [&self.dump, &self.files, &self.manifest]
            .iter()
            .any(|p| p.symlink_metadata().is_ok())
    }
}

/// The backup name of one of its files (`ransomeye_X.files.enc` → `ransomeye_X`).
pub fn backup_name(file_name: &str) -> Option<&str> {
    [MANIFEST_SUFFIX, FILES_SUFFIX, DUMP_SUFFIX]
        .iter()
        .find_map(|suffix| file_name.strip_suffix(suffix))
        .filter(|name| is_backup_name(name))
}

/// `ransomeye_<8 digits>T<6 digits>Z`, optionally `-<N>`.
pub fn is_backup_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let (stamp, suffix) = match rest.split_once('-') {
        Some((stamp, n)) => (stamp, Some(n)),
        None => (rest, None),
    };
    let b = stamp.as_bytes();
    b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && suffix.is_none_or(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

/// The first free name for a backup taken at `stamp` (`YYYYMMDDTHHMMSSZ`).
pub fn next_name(dir: &Path, stamp: &str) -> String {
    (1u32..)
        .map(|n| match n {
            1 => format!("{PREFIX}{stamp}"),
            n => format!("{PREFIX}{stamp}-{n}"),
        })
        .find(|name| !Paths::new(dir, name).any_exists())
        .unwrap_or_else(|| format!("{PREFIX}{stamp}"))
}

/// Every manifest in `dir`, oldest first (names sort by time).
pub fn list(dir: &Path) -> Result<Vec<Paths>, OpsError> {
    let mut names: Vec<String> = file_names(dir)?
        .into_iter()
        .filter_map(|file_name| {
            let name = file_name.strip_suffix(MANIFEST_SUFFIX)?;
            is_backup_name(name).then(|| name.to_string())
        })
        .collect();
    names.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    Ok(names.iter().map(|n| Paths::new(dir, n)).collect())
}

/// The (UTF-8) names of the entries of the backup directory.
fn file_names(dir: &Path) -> Result<Vec<String>, OpsError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        OpsError::new(
            Exit::CantCreate,
            format!("backup directory {} cannot be read: {e}", dir.display()),
        )
        .hint("create it (ransomeye-ops init does) or fix [backup] dir")
    })?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

fn sort_key(name: &str) -> (&str, u32) {
    match name.split_once('-') {
        Some((stamp, n)) => (stamp, n.parse().unwrap_or(0)),
        None => (name, 1),
    }
}

/// The state `backup list` gives an orphan data file.
pub const ORPHAN_STATE: &str = "orphan: no manifest (kept; not verifiable, not restorable)";

/// Data files in `dir` (`<name>.enc`, `<name>.files.enc`) whose backup has neither a manifest
/// nor a temp manifest, by file name, sorted. The tool never leaves one (a run writes its
/// manifest to a temp file before the data files get their names, and the next run completes or
/// removes what an interrupted one left), so each is a backup whose manifest was lost: kept,
/// for an operator to look at.
pub fn orphans(dir: &Path) -> Result<Vec<String>, OpsError> {
    let names = file_names(dir)?;
    // Backups being committed (or interrupted while committing): their manifest is a temp file.
    let committing: std::collections::HashSet<&str> = names
        .iter()
        .filter_map(|n| ransomeye_kernel::atomic_file::temp_target(n))
        .filter_map(|target| target.strip_suffix(MANIFEST_SUFFIX))
        .collect();
    let mut orphans: Vec<String> = names
        .iter()
        .filter(|file| {
            !file.ends_with(MANIFEST_SUFFIX)
                && backup_name(file).is_some_and(|name| {
                    !committing.contains(name)
                        && Paths::new(dir, name).manifest.symlink_metadata().is_err()
                })
        })
        .cloned()
        .collect();
    orphans.sort();
    Ok(orphans)
}

/// Exit 65 for orphan data files (see [`orphans`]), naming them.
pub fn orphans_error(dir: &Path, orphans: &[String]) -> OpsError {
    OpsError::new(
        Exit::Data,
        format!(
            "{} data file(s) in {} have no manifest, so they cannot be verified or restored: {}",
            orphans.len(),
            dir.display(),
            orphans.join(", ")
        ),
    )
    .hint("they are kept. If a manifest was lost, put it back (e.g. from a copy of the backup directory) and run `ransomeye-ops verify NAME`; otherwise remove them by hand once they are not needed")
}

/// Reads and parses a backup manifest.
pub fn read(paths: &Paths) -> Result<Manifest, OpsError> {
    let manifest = Manifest::read(&paths.manifest, "backup manifest")?;
    if manifest.body.name != paths.name {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: describes backup {}, not {}: the file was renamed or replaced",
                paths.manifest.display(),
                manifest.body.name,
                paths.name
            ),
        ));
    }
    if manifest.body.format != FORMAT {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: manifest format {}, but this version of ransomeye-ops reads format {FORMAT}",
                paths.manifest.display(),
                manifest.body.format
            ),
        )
        .hint("use the ransomeye-ops version that wrote this backup, or a newer one"));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised_exactly() {
        assert!(is_backup_name("ransomeye_20261123T132200Z"));
        assert!(is_backup_name("ransomeye_20261123T132200Z-2"));
        assert!(!is_backup_name("ransomeye_20261123T132200Z-"));
        assert!(!is_backup_name("ransomeye_2026112T132200Z"));
        assert!(!is_backup_name("logs_2026-11-23"));
        assert_eq!(
            backup_name("ransomeye_20261123T132200Z.files.enc"),
            Some("ransomeye_20261123T132200Z")
        );
        assert_eq!(
            backup_name("ransomeye_20261123T132200Z-3.enc"),
            Some("ransomeye_20261123T132200Z-3")
        );
        assert_eq!(backup_name("other.enc"), None);
    }

    #[test]
    fn names_never_collide_and_sort_by_time_then_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = next_name(dir.path(), "20261123T132200Z");
        assert_eq!(first, "ransomeye_20261123T132200Z");
        std::fs::write(Paths::new(dir.path(), &first).dump, b"x").expect("write");
        assert_eq!(
            next_name(dir.path(), "20261123T132200Z"),
            "ransomeye_20261123T132200Z-2"
        );
        for name in [
            "ransomeye_20261123T132200Z-10",
            "ransomeye_20261123T132200Z-2",
            "ransomeye_20261123T132200Z",
            "ransomeye_20261122T000000Z",
        ] {
            std::fs::write(Paths::new(dir.path(), name).manifest, b"{}").expect("write");
        }
        let names: Vec<String> = list(dir.path())
            .expect("list")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(
            names,
            [
                "ransomeye_20261122T000000Z",
                "ransomeye_20261123T132200Z",
                "ransomeye_20261123T132200Z-2",
                "ransomeye_20261123T132200Z-10"
            ]
        );
    }
}
