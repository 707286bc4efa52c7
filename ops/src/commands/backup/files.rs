//! Step 5 of `backup`: the file bundle (configuration, intel graph, artifacts), incremental
//! against the newest good backup, written to its temp file and read back at once.

use std::path::Path;

use ransomeye_intel::GraphDigest;
use ransomeye_kernel::envelope::{EnvelopeReader, Purpose};

use super::dump::unreadable;
use super::snapshot::IntelSpool;
use super::{Job, Sealed};
use crate::backup_set::manifest::{self, Entry, Paths, SealedFile};
use crate::backup_set::{bundle, check};
use crate::error::{Exit, OpsError};
use crate::sealed::{Digests, SealedWriter};

/// The bundle written and read back, not yet committed.
pub(super) struct Bundled {
    pub sealed: Sealed,
    /// What the bundle holds, and what was left out.
    pub written: bundle::Written,
    /// The digest of the intel graph export it holds.
    pub intel: GraphDigest,
}

/// Entries of the newest backup whose manifest verifies (the base of incremental artifacts),
/// keeping only those whose holding backup still passes the quick check: an artifact whose
/// holder was lost is stored again rather than referenced. None if there is no such backup.
pub(super) fn previous_entries(job: &Job) -> Result<Vec<Entry>, OpsError> {
    for paths in manifest::list(&job.dir)?.iter().rev() {
        let Ok(m) = manifest::read(paths) else {
            continue;
        };
        if m.verify_signature(&job.trust_keys).is_err() {
            continue;
        }
        let mut holders = std::collections::HashMap::new();
        let entries = m
            .body
            .entries
            .into_iter()
            .filter(|e| {
                *holders.entry(e.stored_in.clone()).or_insert_with(|| {
                    check::quick(&Paths::new(&job.dir, &e.stored_in), &job.trust_keys).is_ok()
                })
            })
            .collect();
        return Ok(entries);
    }
    Ok(Vec::new())
}

/// The file bundle (configuration, intel graph, artifacts) → temp file, read back at
/// once (the graph export by its SHA-256, see [`check::GraphCheck::Hash`]).
pub(super) async fn write_bundle(
    job: &Job,
    paths: &Paths,
    previous: &[Entry],
    intel: IntelSpool,
) -> Result<Bundled, OpsError> {
    let writer = SealedWriter::create(
        &paths.files,
        &job.backup_key,
        Purpose::Backup,
        job.zstd_level,
    )?;
    let sources_config = job.config_files.clone();
    let artifacts_dir = job.artifacts_dir.clone();
    let previous = previous.to_vec();
    let name = paths.name.clone();
    let shown = paths.files.clone();
    let dir = job.dir.clone();
    let key = job.backup_key.clone();
    let trust_keys = job.trust_keys.clone();
    let fence = job.keys_fence.clone();
    tokio::task::spawn_blocking(move || {
        let sources = bundle::Sources {
            config: sources_config,
            artifacts_dir: artifacts_dir.as_deref(),
            previous: &previous,
            name: &name,
            fence: &fence,
        };
        let spool = EnvelopeReader::open(std::io::BufReader::new(intel.file), &intel.key)
            .map_err(|e| OpsError::stream(&shown, e))?;
        let (written, writer) = bundle::write(
            writer,
            &sources,
            spool,
            intel.digest.bytes,
            &intel.digest.sha256,
        )?;
        let (file, digests) = writer.finish()?;
        // Read back before it is committed, as verify reads it.
        let spec = check::BundleSpec {
            name: &name,
            file: &sealed_file(&shown, &digests),
            intel: &intel.digest,
            entries: &written.entries,
        };
        check::check_bundle(
            file.temp_path(),
            &dir,
            &spec,
            check::GraphCheck::Hash,
            &key,
            &trust_keys,
        )
        .map_err(unreadable)?;
        Ok(Bundled {
            sealed: Sealed { file, digests },
            written,
            intel: intel.digest,
        })
    })
    .await
    .map_err(|e| OpsError::new(Exit::Software, format!("bundle thread failed: {e}")))?
}

/// How the manifest describes the sealed file `path` with digests `d`.
pub(super) fn sealed_file(path: &Path, d: &Digests) -> SealedFile {
    SealedFile {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: d.file_bytes,
        sha256: d.file_sha256.clone(),
        plaintext_bytes: d.plaintext_bytes,
        plaintext_sha256: d.plaintext_sha256.clone(),
    }
}
