//! The archive manifest: what an archive file holds, signed with the trust key.
//!
//! `logs_<date>[.N].manifest.json` beside each `logs_<date>[.N].zst.enc`, a [`Signed`] body
//! (fields in the order below). `state` moves from `written` to `pruned`; every change is re-signed and written atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::signed::Signed;

/// Manifest format version.
pub const FORMAT: u32 = 1;

/// Where an archive's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The file is written and verified; its rows may still be in the table.
    Written,
    /// The file's rows have been deleted from the table.
    Pruned,
}

/// The signed contents of a manifest. Fields a later version adds are ignored here; the
/// signature covers them all the same (see [`crate::signed`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Manifest format version.
    pub format: u32,
    /// File name of the archive (in the same directory). Refused when it is anything but a
    /// name (`../x`, `/etc/x`, `a/b`): a manifest is read before its signature is checked, and
    /// its name must never lead the tool out of the archive directory.
    #[serde(deserialize_with = "file_name")]
    pub file: String,
    /// Table the rows came from.
    pub table: String,
    /// Primary-key column.
    pub primary_key: String,
    /// Time column the cutoff applies to.
    pub time_column: String,
    /// Rows with `time_column` before this were archived (database clock, RFC 3339).
    pub cutoff: String,
    /// Number of rows (JSON lines).
    pub rows: u64,
    /// Smallest primary key (rows are in primary-key order).
    pub first_id: Option<i64>,
    /// Largest primary key.
    pub last_id: Option<i64>,
    /// `time_column` of the first row in primary-key order (not necessarily the oldest).
    pub first_time: Option<String>,
    /// `time_column` of the last row in primary-key order (not necessarily the newest).
    pub last_time: Option<String>,
    /// Bytes of JSON Lines before compression.
    pub plaintext_bytes: u64,
    /// SHA-256 of the JSON Lines.
    pub plaintext_sha256: String,
    /// Bytes of the archive file.
    pub file_bytes: u64,
    /// SHA-256 of the archive file.
    pub file_sha256: String,
    /// Key id of the archive key that encrypted it.
    pub archive_key_id: String,
    /// zstd level used.
    pub zstd_level: i32,
    /// Version of ransomeye-ops that wrote it.
    pub tool_version: String,
    /// When the archive was written (database clock, RFC 3339).
    pub created_at: String,
    /// `written` or `pruned`.
    pub state: State,
    /// Rows deleted from the table by the prune (fewer than `rows` if some were already gone).
    pub rows_deleted: Option<u64>,
}

/// A manifest file: the body, and who signed it (see [`crate::signed`]).
pub type Manifest = Signed<Body>;

/// Deserializes [`Body::file`], accepting only one plain path component.
fn file_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    let mut parts = Path::new(&name).components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(n)), None) if n == name.as_str() => Ok(name),
        _ => Err(serde::de::Error::custom(format!(
            "file {name:?} is not a file name in the archive directory"
        ))),
    }
}

/// The manifest path of an archive file (`x.zst.enc` → `x.manifest.json`).
pub fn manifest_path(archive: &Path) -> PathBuf {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".zst.enc").unwrap_or(&name);
    archive.with_file_name(format!("{stem}.manifest.json"))
}

/// The archive path of a manifest (`x.manifest.json` → `x.zst.enc`).
pub fn archive_path(manifest: &Path, body: &Body) -> PathBuf {
    manifest.with_file_name(&body.file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_with_file(file: &str) -> Result<Body, serde_json::Error> {
        let mut body = serde_json::json!({
            "format": 1, "file": "logs_2026-01-01.zst.enc", "table": "audit_logs",
            "primary_key": "id", "time_column": "created_at", "cutoff": "2026-01-01T00:00:00Z",
            "rows": 1, "first_id": 1, "last_id": 1, "first_time": null, "last_time": null,
            "plaintext_bytes": 1, "plaintext_sha256": "00", "file_bytes": 1, "file_sha256": "00",
            "archive_key_id": "k", "zstd_level": 3,
            "tool_version": "0", "created_at": "2026-01-01T00:00:00Z", "state": "written",
            "rows_deleted": null
        });
        body["file"] = serde_json::Value::String(file.into());
        serde_json::from_value(body)
    }

    #[test]
    fn the_data_file_must_be_a_plain_name_in_the_same_directory() {
        assert_eq!(
            body_with_file("logs_2026-01-01.2.zst.enc")
                .expect("a plain name")
                .file,
            "logs_2026-01-01.2.zst.enc"
        );
        for bad in [
            "../x.zst.enc",
            "/etc/shadow",
            "sub/x.zst.enc",
            "",
            ".",
            "..",
            "x/",
        ] {
            let err = body_with_file(bad).expect_err(bad).to_string();
            assert!(err.contains("is not a file name"), "{bad}: {err}");
        }
    }
}
