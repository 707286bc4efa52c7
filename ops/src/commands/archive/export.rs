//! The export: select → encode → compress → encrypt → persist, and the archive's names.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use ransomeye_kernel::atomic_file::Replace;
use ransomeye_kernel::envelope::Purpose;
use sqlx::PgConnection;

use super::manifest;
use super::manifest::{manifest_path, Body, Manifest, State};
use super::shape::TableShape;
use super::versions::{RowVersions, VersionSplitter};
use super::Job;
use crate::db::{self, quote_ident, Answer};
use crate::error::{Exit, OpsError};
use crate::sealed::SealedWriter;
use crate::utils::progress;

/// Bytes of JSON Lines handed from the database reader to the encoder thread at a time.
const CHUNK: usize = 256 * 1024;

/// First and last row of an export, for the manifest.
#[derive(Default)]
struct Bounds {
    first: Option<Vec<u8>>,
    last: Vec<u8>,
}

impl Bounds {
    /// Takes the next bytes of the JSON Lines stream: keeps the first and the latest complete
    /// line, gathers a line split across chunks in `partial`. Returns the lines completed.
    fn take(&mut self, data: &[u8], partial: &mut Vec<u8>) -> u64 {
        let mut rows = 0;
        let mut start = 0;
        let mut newlines = memchr::memchr_iter(b'\n', data).peekable();
        while let Some(end) = newlines.next() {
            rows += 1;
            // Only the first line and the last line completed in this chunk are kept.
            if self.first.is_none() || newlines.peek().is_none() {
                partial.extend_from_slice(&data[start..end]);
                if self.first.is_none() {
                    self.first = Some(partial.clone());
                }
                std::mem::swap(&mut self.last, partial);
            }
            partial.clear();
            start = end + 1;
        }
        partial.extend_from_slice(&data[start..]);
        rows
    }
}

/// Step 4: select → encode → compress → encrypt → persist. The database streams JSON Lines
/// (COPY) on this task; compression, encryption and writing run beside it on a blocking thread.
/// The same statement reads each row's version, for the prune ([`RowVersions`]).
/// Returns `None` (and leaves no file) when no row is old enough.
pub(super) async fn export(
    conn: &mut PgConnection,
    job: &Job,
    shape: &TableShape,
    cutoff: &str,
) -> Result<Option<(PathBuf, Manifest, RowVersions)>, OpsError> {
    let (date, created_at): (String, String) = sqlx::query_as(
        "select to_char(now() at time zone 'UTC', 'YYYY-MM-DD'), to_json(now())#>>'{}'",
    )
    .fetch_one(&mut *conn)
    .answer("reading the database clock")
    .await?;
    let path = next_archive_name(&job.dir, &date);
    let mut writer =
        SealedWriter::create(&path, &job.archive_key, Purpose::Archive, job.zstd_level)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let encoder = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            writer.write_bytes(&chunk)?;
        }
        writer.finish()
    });

    // Each line is the row's primary key and xmin (for the prune, see `versions`) and one JSON
    // object with the primary key first, the archive's line. CSV with control characters as
    // quote and delimiter passes row_to_json's output through verbatim (JSON escapes them).
    let pk = quote_ident(&shape.primary_key);
    let statement = format!(
        "COPY (SELECT t.{pk}, t.xmin, row_to_json(x) FROM {} t CROSS JOIN LATERAL (SELECT {}) x \
         WHERE t.{} < '{cutoff}'::timestamptz ORDER BY t.{pk}) \
         TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')",
        shape.quoted,
        shape.row_list,
        quote_ident(&shape.time_column),
    );
    let mut splitter = VersionSplitter::new(&job.dir)?;
    let progress = progress(job.no_progress, "exporting", "rows");
    let mut rows = 0u64;
    let mut bounds = Bounds::default();
    let mut line = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut send_failed = false;
    {
        let mut copy = conn
            .copy_out_raw(&statement)
            .answer("starting the export")
            .await?;
        while let Some(data) = db::bounded(copy.next(), "exporting rows").await? {
            let data = data.map_err(|e| db::error(e, "exporting rows"))?;
            let start = chunk.len();
            splitter.feed(&data, &mut chunk)?;
            rows += bounds.take(&chunk[start..], &mut line);
            progress.set_position(rows);
            if chunk.len() >= CHUNK
                && tx
                    .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                    .await
                    .is_err()
            {
                send_failed = true;
                break;
            }
        }
    }
    if !send_failed && !chunk.is_empty() {
        let _ = tx.send(chunk).await;
    }
    drop(tx);
    progress.finish_and_clear();
    let (file, digests) = encoder
        .await
        .map_err(|e| OpsError::new(Exit::Software, format!("encoder thread failed: {e}")))??;
    let versions = splitter.finish()?;
    if rows == 0 {
        return Ok(None); // `file` is dropped uncommitted: no archive appears
    }
    let (first_id, first_time) = row_bounds(bounds.first.as_deref().unwrap_or_default(), shape)?;
    let (last_id, last_time) = row_bounds(&bounds.last, shape)?;
    let body = Body {
        format: manifest::FORMAT,
        file: file_name(&path),
        table: job.table.clone(),
        primary_key: shape.primary_key.clone(),
        time_column: shape.time_column.clone(),
        cutoff: cutoff.to_string(),
        rows,
        first_id: Some(first_id),
        last_id: Some(last_id),
        first_time,
        last_time,
        plaintext_bytes: digests.plaintext_bytes,
        plaintext_sha256: digests.plaintext_sha256,
        file_bytes: digests.file_bytes,
        file_sha256: digests.file_sha256,
        archive_key_id: job.archive_key.id().to_string(),
        zstd_level: job.zstd_level,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at,
        state: State::Written,
        rows_deleted: None,
    };
    let manifest = Manifest::sign(body, &job.signing_key)?;
    // Manifest first, then the archive under its name: see the module comment.
    manifest.write(&manifest_path(&path), Replace::Never)?;
    crate::failpoint::hit("archive-before-commit");
    file.commit()?;
    Ok(Some((path, manifest, versions)))
}

fn next_archive_name(dir: &Path, date: &str) -> PathBuf {
    (1u32..)
        .map(|n| match n {
            1 => dir.join(format!("logs_{date}.zst.enc")),
            n => dir.join(format!("logs_{date}.{n}.zst.enc")),
        })
        .find(|p| p.symlink_metadata().is_err() && manifest_path(p).symlink_metadata().is_err())
        .unwrap_or_else(|| dir.join(format!("logs_{date}.zst.enc")))
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Primary key and time of one exported line.
fn row_bounds(line: &[u8], shape: &TableShape) -> Result<(i64, Option<String>), OpsError> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| OpsError::new(Exit::Software, format!("exported row is not JSON: {e}")))?;
    let id = value[&shape.primary_key]
        .as_i64()
        .ok_or_else(|| OpsError::new(Exit::Software, "exported row has no integer primary key"))?;
    Ok((id, value[&shape.time_column].as_str().map(str::to_string)))
}

/// The primary key at the start of an exported line (`{"id":123,…`), without parsing the rest.
pub(super) fn line_id(line: &[u8], primary_key: &str) -> Option<i64> {
    let prefix = format!("{{{}:", serde_json::to_string(primary_key).ok()?);
    let rest = line.strip_prefix(prefix.as_bytes())?;
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_id_reads_the_leading_primary_key() {
        assert_eq!(
            line_id(br#"{"id":12345,"created_at":"x"}"#, "id"),
            Some(12345)
        );
        assert_eq!(line_id(br#"{"id":-7}"#, "id"), Some(-7));
        assert_eq!(line_id(br#"{"created_at":"x","id":1}"#, "id"), None);
        assert_eq!(line_id(br#"{"weird\"key":5,"a":1}"#, "weird\"key"), Some(5));
    }

    #[test]
    fn bounds_keep_first_and_last_line_however_the_stream_is_cut() {
        let stream = b"{\"id\":1}\n{\"id\":22}\n\n{\"id\":333}\n{\"id\":4444}\n";
        for cut_a in 0..stream.len() {
            for cut_b in cut_a..stream.len() {
                let (mut bounds, mut partial) = (Bounds::default(), Vec::new());
                let rows: u64 = [&stream[..cut_a], &stream[cut_a..cut_b], &stream[cut_b..]]
                    .iter()
                    .map(|part| bounds.take(part, &mut partial))
                    .sum();
                assert_eq!(rows, 5, "cuts {cut_a} {cut_b}");
                assert_eq!(bounds.first.as_deref(), Some(&b"{\"id\":1}"[..]));
                assert_eq!(bounds.last, b"{\"id\":4444}");
                assert!(partial.is_empty());
            }
        }
    }

    #[test]
    fn archive_names_never_collide() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = next_archive_name(dir.path(), "2026-11-23");
        assert_eq!(file_name(&first), "logs_2026-11-23.zst.enc");
        std::fs::write(manifest_path(&first), b"{}").expect("write");
        assert_eq!(
            file_name(&next_archive_name(dir.path(), "2026-11-23")),
            "logs_2026-11-23.2.zst.enc"
        );
    }
}
