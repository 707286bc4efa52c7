//! The read-back: an archive under its final name, decrypted in full, against its manifest.

use std::path::Path;

use ransomeye_kernel::keys::SymmetricKey;

use super::export::line_id;
use super::manifest::{Body, Manifest};
use super::stream::read_back;
use super::versions;
use crate::error::{Exit, OpsError};
use crate::sealed::Digests;

/// Step 5: the archive under its final name, read back in full, must match its manifest.
pub(super) async fn verify_archive(
    path: &Path,
    manifest: &Manifest,
    key: &SymmetricKey,
    trust_keys: &crate::trust::TrustKeys,
) -> Result<(), OpsError> {
    verify_archive_against(path, manifest, key, trust_keys, None).await
}

/// [`verify_archive`], also holding every archived row's primary key against the row versions
/// the export read (`versions`, in the same order), so that the prune can then work from the
/// versions alone without decrypting the archive a second time.
pub(super) async fn verify_archive_against(
    path: &Path,
    manifest: &Manifest,
    key: &SymmetricKey,
    trust_keys: &crate::trust::TrustKeys,
    versions: Option<versions::VersionReader>,
) -> Result<(), OpsError> {
    let shown = path.display().to_string();
    manifest
        .verify_signature(trust_keys)
        .map_err(|m| OpsError::new(Exit::Data, format!("{shown}: {m}")))?;
    if manifest.body.archive_key_id != key.id().to_string() {
        return Err(OpsError::new(
            Exit::NoPerm,
            format!(
                "{shown}: encrypted with archive key {}, but the archive key is {}",
                manifest.body.archive_key_id,
                key.id()
            ),
        ));
    }
    let (path, key) = (path.to_path_buf(), key.clone());
    let pk = manifest.body.primary_key.clone();
    let (digests, rows) = tokio::task::spawn_blocking(move || {
        let Some(mut versions) = versions else {
            return read_back(&path, &key, |_| Ok(()));
        };
        let shown = path.display().to_string();
        let read = read_back(&path, &key, |line| {
            let id = line_id(line, &pk).ok_or_else(|| {
                OpsError::new(
                    Exit::Data,
                    format!("{shown}: a row without a leading integer `{pk}`"),
                )
            })?;
            versions.next_for(id).map(|_| ())
        })?;
        versions.finish()?;
        Ok(read)
    })
    .await
    .map_err(|e| OpsError::new(Exit::Software, format!("verify thread failed: {e}")))??;
    compare(&shown, &manifest.body, &digests, rows)
}

pub(super) fn compare(shown: &str, body: &Body, got: &Digests, rows: u64) -> Result<(), OpsError> {
    let mut problems = Vec::new();
    if got.file_bytes != body.file_bytes || got.file_sha256 != body.file_sha256 {
        problems.push(format!(
            "file is {} bytes with SHA-256 {}, manifest says {} bytes, {}",
            got.file_bytes, got.file_sha256, body.file_bytes, body.file_sha256
        ));
    }
    if got.plaintext_sha256 != body.plaintext_sha256 || got.plaintext_bytes != body.plaintext_bytes
    {
        problems.push("decrypted contents differ from the manifest's hash".to_string());
    }
    if rows != body.rows {
        problems.push(format!("{rows} rows, manifest says {}", body.rows));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(
            OpsError::new(Exit::Data, format!("{shown}: {}", problems.join("; ")))
                .hint("the archive or its manifest was modified; use another copy"),
        )
    }
}
