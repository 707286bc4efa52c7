//! The row versions an export saw, so that the prune of the same run deletes a row only while it
//! is still that version, at the cost of an integer comparison.
//!
//! Every row version in PostgreSQL carries `xmin`, the transaction that wrote it; an UPDATE
//! writes a new version with a new `xmin`. The export reads `(primary key, xmin)` of every row it
//! archives in the same snapshot as the rows themselves, into an unnamed temp file in the archive
//! dir (it vanishes with the process, so a crash leaves nothing behind). The run's read-back of
//! the new archive holds every archived primary key against this file, row for row, and the
//! prune then works from the file alone (no second decryption of the archive), deleting
//! `where pk = id and xmin = exported xmin`. A prune resumed by a later run has no such file and
//! compares each row's JSON with its archived line instead: exact too, only slower.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::Path;

use ransomeye_kernel::{FileAction, PathError};
use sqlx::PgConnection;

use super::TableShape;
use crate::db::{self, quote_ident, Answer};
use crate::error::{Exit, OpsError};

/// `(primary key, xmin)` of every exported row, in primary-key order.
pub(super) struct RowVersions {
    file: File,
}

impl RowVersions {
    /// Reads the versions of the rows older than `cutoff`, in the transaction (snapshot) the
    /// export then reads the rows themselves in.
    pub(super) async fn capture(
        conn: &mut PgConnection,
        shape: &TableShape,
        cutoff: &str,
        dir: &Path,
    ) -> Result<RowVersions, OpsError> {
        let file = tempfile::tempfile_in(dir).map_err(PathError::at(FileAction::Create, dir))?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let pk = quote_ident(&shape.primary_key);
        let statement = format!(
            "COPY (SELECT {pk}, xmin FROM {t} WHERE {time} < '{cutoff}'::timestamptz ORDER BY {pk}) TO STDOUT",
            t = shape.quoted,
            time = quote_ident(&shape.time_column),
        );
        let mut copy = conn
            .copy_out_raw(&statement)
            .answer("reading the exported rows' versions")
            .await?;
        while let Some(data) = db::bounded(
            futures_util::StreamExt::next(&mut copy),
            "reading row versions",
        )
        .await?
        {
            let data = data.map_err(|e| db::error(e, "reading row versions"))?;
            out.write_all(&data)
                .map_err(|e| OpsError::io("writing the row versions' temp file", &e))?;
        }
        let mut file = out
            .into_inner()
            .map_err(|e| OpsError::io("writing the row versions' temp file", e.error()))?;
        file.rewind()
            .map_err(|e| OpsError::io("rewinding the row versions' temp file", &e))?;
        Ok(RowVersions { file })
    }

    /// A reader handing out the versions in order, from the start (each reader rewinds the
    /// one file: use them one after the other).
    pub(super) fn reader(&self) -> Result<VersionReader, OpsError> {
        let mut file = self
            .file
            .try_clone()
            .map_err(|e| OpsError::io("reopening the row versions' temp file", &e))?;
        file.rewind()
            .map_err(|e| OpsError::io("rewinding the row versions' temp file", &e))?;
        Ok(VersionReader {
            lines: BufReader::with_capacity(256 * 1024, file),
            line: String::new(),
        })
    }
}

/// Reads `(primary key, xmin)` pairs back in the order they were captured.
pub(super) struct VersionReader {
    lines: BufReader<File>,
    line: String,
}

impl VersionReader {
    /// The next `(primary key, xmin)`, or `None` at the end.
    pub(super) fn next(&mut self) -> Result<Option<(i64, i64)>, OpsError> {
        self.line.clear();
        let n = self
            .lines
            .read_line(&mut self.line)
            .map_err(|e| OpsError::io("reading the row versions' temp file", &e))?;
        if n == 0 {
            return Ok(None);
        }
        let parsed = self
            .line
            .trim_end()
            .split_once('\t')
            .and_then(|(key, xmin)| Some((key.parse::<i64>().ok()?, xmin.parse::<i64>().ok()?)));
        parsed.map(Some).ok_or_else(|| {
            OpsError::new(
                Exit::Software,
                "the row versions' temp file holds a line that is not `key<TAB>xmin`",
            )
        })
    }

    /// The version of the next archived row, which must have primary key `id`.
    pub(super) fn next_for(&mut self, id: i64) -> Result<i64, OpsError> {
        match self.next()? {
            Some((key, xmin)) if key == id => Ok(xmin),
            // The two reads share a snapshot, an order and a condition: a difference is a bug.
            _ => Err(OpsError::new(
                Exit::Software,
                format!("the row versions do not follow the archive at primary key {id}"),
            )),
        }
    }

    /// Checks that every version was used: the archive holds no fewer rows than the export read.
    pub(super) fn finish(mut self) -> Result<(), OpsError> {
        match self.next()? {
            None => Ok(()),
            Some((key, _)) => Err(OpsError::new(
                Exit::Software,
                format!("the archive ends before the row versions, at primary key {key}"),
            )),
        }
    }
}
