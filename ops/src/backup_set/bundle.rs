//! The file bundle: a tar of configuration files, forensic artifacts and the intel graph
//! export, sealed with the backup key.
//!
//! Tar paths: `config/<absolute path without the leading />`, `artifacts/<path relative to
//! artifacts_dir>`, `intel/graph.jsonl`. Artifacts are incremental: one whose size, mtime and
//! SHA-256 match the previous backup's entry is not stored again; its entry names the backup
//! that holds it. Only regular files are stored; symlinks and special files are skipped and
//! reported. Nothing in `[keys] dir` is stored, however a walk reaches it (see
//! [`super::fence`]); what was left out is reported. Each file is stored once, however many
//! sources cover it (the kernel configuration inside `include`, overlapping includes, hard
//! links).

use std::collections::HashSet;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ransomeye_kernel::{FileAction, PathError};

use super::fence::{Excluded, KeysFence};
use super::manifest::{Entry, Kind};
use crate::error::{Exit, OpsError};
use crate::sealed::Hashing;

/// Tar path of the intel graph export.
pub const INTEL_PATH: &str = "intel/graph.jsonl";

/// What goes into a bundle.
pub struct Sources<'a> {
    /// Configuration files and directories (absolute).
    pub config: Vec<PathBuf>,
    /// The artifacts directory, if any.
    pub artifacts_dir: Option<&'a Path>,
    /// Entries of the previous backup, for incremental artifacts.
    pub previous: &'a [Entry],
    /// The backup being written.
    pub name: &'a str,
    /// What must never be stored.
    pub fence: &'a KeysFence,
}

/// What a bundle holds, and what was left out.
#[derive(Debug, Default)]
pub struct Written {
    /// Every entry the backup restores (stored here or in an older backup).
    pub entries: Vec<Entry>,
    /// Artifacts referenced from an older backup instead of stored.
    pub unchanged: u64,
    /// Paths skipped: not regular files.
    pub skipped: Vec<String>,
    /// Paths left out on purpose, with the reason.
    pub excluded: Vec<Excluded>,
}

/// Writes the tar of `sources` plus the intel export (`intel`, `intel_bytes` long, with its
/// hex SHA-256 `intel_sha256`) into `out`.
pub fn write<W: Write>(
    out: W,
    sources: &Sources<'_>,
    intel: impl Read,
    intel_bytes: u64,
    intel_sha256: &str,
) -> Result<(Written, W), OpsError> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    let mut written = Written::default();
    // Device and inode of every file stored: each is stored once.
    let mut stored = HashSet::new();

    for root in &sources.config {
        for (file, meta) in walk(root, sources.fence, &mut written)? {
            if !stored.insert((meta.dev(), meta.ino())) {
                continue;
            }
            let tar_path = format!(
                "config/{}",
                file.display().to_string().trim_start_matches('/')
            );
            let entry = append_file(&mut tar, &file, &tar_path, Kind::Config, sources.name)?;
            written.entries.push(Entry {
                source: file.display().to_string(),
                ..entry
            });
        }
    }

    let mut header = tar::Header::new_gnu();
    header.set_size(intel_bytes);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut hashed = Hashing::new(intel.take(intel_bytes));
    tar.append_data(&mut header, INTEL_PATH, &mut hashed)
        .map_err(|e| bundle_error(e, "the intel graph export"))?;
    let (_, bytes, sha256) = hashed.finish();
    if bytes != intel_bytes || sha256 != intel_sha256 {
        return Err(OpsError::new(
            Exit::Software,
            "the spooled intel graph export changed between writing and reading it",
        ));
    }
    written.entries.push(Entry {
        path: INTEL_PATH.to_string(),
        kind: Kind::Intel,
        source: "intel_nodes, intel_edges".to_string(),
        size: intel_bytes,
        mtime: 0,
        mode: 0o600,
        sha256: intel_sha256.to_string(),
        stored_in: sources.name.to_string(),
    });

    if let Some(dir) = sources.artifacts_dir {
        let previous: HashMap<&str, &Entry> = sources
            .previous
            .iter()
            .filter(|e| e.kind == Kind::Artifact)
            .map(|e| (e.path.as_str(), e))
            .collect();
        for (file, meta) in walk(dir, sources.fence, &mut written)? {
            if !stored.insert((meta.dev(), meta.ino())) {
                continue;
            }
            let relative = file
                .strip_prefix(dir)
                .unwrap_or(&file)
                .display()
                .to_string();
            let tar_path = format!("artifacts/{relative}");
            if let Some(old) = previous.get(tar_path.as_str()) {
                if old.size == meta.len()
                    && old.mtime == meta.mtime()
                    && old.sha256 == hash_file(&file)?.1
                {
                    written.entries.push((*old).clone());
                    written.unchanged += 1;
                    continue;
                }
            }
            let entry = append_file(&mut tar, &file, &tar_path, Kind::Artifact, sources.name)?;
            written.entries.push(Entry {
                source: file.display().to_string(),
                ..entry
            });
        }
    }
    let out = tar
        .into_inner()
        .map_err(|e| bundle_error(e, "the end of the tar"))?;
    Ok((written, out))
}

/// Appends one regular file, hashing what is stored; the file must not change meanwhile.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    file: &Path,
    tar_path: &str,
    kind: Kind,
    backup: &str,
) -> Result<Entry, OpsError> {
    let opened = File::open(file).map_err(PathError::at(FileAction::Open, file))?;
    let meta = opened
        .metadata()
        .map_err(PathError::at(FileAction::Read, file))?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    let mut hashed = Hashing::new(opened.take(meta.len()));
    tar.append_data(&mut header, tar_path, &mut hashed)
        .map_err(|e| bundle_error(e, &file.display().to_string()))?;
    let (_, bytes, sha256) = hashed.finish();
    if bytes != meta.len() {
        return Err(OpsError::new(
            Exit::TempFail,
            format!(
                "{} shrank from {} to {bytes} bytes while being backed up",
                file.display(),
                meta.len()
            ),
        )
        .hint("something is writing to it; retry the backup"));
    }
    Ok(Entry {
        path: tar_path.to_string(),
        kind,
        source: String::new(),
        size: bytes,
        mtime: meta.mtime(),
        mode: meta.mode() & 0o7777,
        sha256,
        stored_in: backup.to_string(),
    })
}

/// Regular files under `root` (or `root` itself), sorted, with their metadata; anything else
/// goes to `written.skipped`, and what `fence` holds to `written.excluded`.
fn walk(
    root: &Path,
    fence: &KeysFence,
    written: &mut Written,
) -> Result<Vec<(PathBuf, std::fs::Metadata)>, OpsError> {
    let meta = root.symlink_metadata().map_err(|e| {
        OpsError::new(
            Exit::Config,
            format!("{} (in [backup]) cannot be read: {e}", root.display()),
        )
        .hint("fix [backup] include / artifacts_dir, or create the path")
    })?;
    if fence.holds_root(root, &meta) {
        exclude(root, fence, written);
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    walk_below(root, meta, fence, written, &mut files)?;
    Ok(files)
}

fn walk_below(
    path: &Path,
    meta: std::fs::Metadata,
    fence: &KeysFence,
    written: &mut Written,
    files: &mut Vec<(PathBuf, std::fs::Metadata)>,
) -> Result<(), OpsError> {
    if fence.holds(&meta) {
        exclude(path, fence, written);
    } else if meta.is_file() {
        files.push((path.to_path_buf(), meta));
    } else if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(PathError::at(FileAction::Read, path))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(PathError::at(FileAction::Read, path))?;
        entries.sort();
        for entry in entries {
            let meta = entry
                .symlink_metadata()
                .map_err(PathError::at(FileAction::Read, &entry))?;
            walk_below(&entry, meta, fence, written, files)?;
        }
    } else {
        written.skipped.push(path.display().to_string());
    }
    Ok(())
}

fn exclude(path: &Path, fence: &KeysFence, written: &mut Written) {
    written.excluded.push(Excluded {
        path: path.display().to_string(),
        reason: fence.backup_reason(),
    });
}

/// Size and SHA-256 (hex) of a file's contents, as read.
pub fn hash_file(path: &Path) -> Result<(u64, String), OpsError> {
    let file = File::open(path).map_err(PathError::at(FileAction::Open, path))?;
    let mut hashed = Hashing::new(file);
    io::copy(&mut hashed, &mut io::sink()).map_err(PathError::at(FileAction::Read, path))?;
    let (_, bytes, sha256) = hashed.finish();
    Ok((bytes, sha256))
}

fn bundle_error(e: io::Error, what: &str) -> OpsError {
    OpsError::io(format!("writing {what} into the file bundle failed"), &e)
}

/// Reads the tar of the bundle at `path` from `input` (its decrypted plaintext), calling
/// `on_entry(tar path, contents)` for each entry. Returns each entry's path, size and SHA-256.
pub fn read(
    path: &Path,
    input: impl Read,
    mut on_entry: impl FnMut(&str, &mut dyn Read) -> Result<(), OpsError>,
) -> Result<Vec<(String, u64, String)>, OpsError> {
    let tar_error = |e: io::Error| -> OpsError {
        if ransomeye_kernel::envelope::EnvelopeError::from_io(&e).is_some() {
            return crate::sealed::decode_error(path, e);
        }
        OpsError::new(
            Exit::Data,
            format!(
                "{}: the file bundle is not a readable tar: {e}",
                path.display()
            ),
        )
    };
    let mut archive = tar::Archive::new(input);
    let mut seen = Vec::new();
    for entry in archive.entries().map_err(tar_error)? {
        let entry = entry.map_err(tar_error)?;
        let name = entry.path().map_err(tar_error)?.display().to_string();
        let mut hashed = Hashing::new(entry);
        on_entry(&name, &mut hashed)?;
        io::copy(&mut hashed, &mut io::sink()).map_err(tar_error)?;
        let (_, size, sha256) = hashed.finish();
        seen.push((name, size, sha256));
    }
    // The reader stops at the first end-of-archive block; the rest must be zero padding, and
    // is read so that the caller's stream is consumed (and authenticated) to its end.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 8192];
    loop {
        let n = rest.read(&mut buf).map_err(tar_error)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(OpsError::new(
                Exit::Data,
                format!("{}: data after the end of the tar", path.display()),
            ));
        }
    }
    Ok(seen)
}
