//! The row versions an export saw, so that the prune of the same run deletes a row only while it
//! is still that version, at the cost of an integer comparison.
//!
//! Every row version in PostgreSQL carries `xmin`, the transaction that wrote it; an UPDATE
//! writes a new version with a new `xmin`. The export's one COPY statement reads `(primary key,
//! xmin)` of every row it archives beside the row itself ([`VersionSplitter`]), into an unnamed
//! temp file in the archive dir (it vanishes with the process, so a crash leaves nothing
//! behind). The run's read-back of the new archive holds every archived primary key against this
//! file, row for row, and the prune then works from the file alone (no second decryption of the
//! archive), deleting where the key and `xmin` match. A prune resumed by a later run has no such
//! file and compares each row's JSON with its archived line instead: exact too, only slower.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::Path;

use ransomeye_kernel::{FileAction, PathError};

use crate::error::{Exit, OpsError};

/// Splits the export's COPY lines, `key \x02 xmin \x02 json \n`, into the archive's JSON Lines
/// and the versions file (`key \t xmin \n`): one statement, so one snapshot, reads both.
pub(super) struct VersionSplitter {
    partial: Vec<u8>,
    out: BufWriter<File>,
}

impl VersionSplitter {
    /// A splitter writing into a new unnamed temp file in `dir`.
    pub(super) fn new(dir: &Path) -> Result<VersionSplitter, OpsError> {
        let file = tempfile::tempfile_in(dir).map_err(PathError::at(FileAction::Create, dir))?;
        Ok(VersionSplitter {
            partial: Vec::new(),
            out: BufWriter::with_capacity(256 * 1024, file),
        })
    }

    /// Appends the JSON lines of the COPY output `data` to `json` and records their versions;
    /// a line cut at the end of `data` waits for the next call.
    pub(super) fn feed(&mut self, data: &[u8], json: &mut Vec<u8>) -> Result<(), OpsError> {
        let mut rest = data;
        if !self.partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.partial.extend_from_slice(rest);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&rest[..=end]);
            self.line(&line, json)?;
            line.clear();
            self.partial = line;
            rest = &rest[end + 1..];
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            self.line(&rest[..=end], json)?;
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// One whole line, newline included.
    fn line(&mut self, line: &[u8], json: &mut Vec<u8>) -> Result<(), OpsError> {
        let split = memchr::memchr(0x02, line).and_then(|key_end| {
            let xmin_end = key_end + 1 + memchr::memchr(0x02, &line[key_end + 1..])?;
            Some((key_end, xmin_end))
        });
        let Some((key_end, xmin_end)) = split else {
            return Err(OpsError::new(
                Exit::Software,
                "an exported line without its key and version columns",
            ));
        };
        let written = self
            .out
            .write_all(&line[..key_end])
            .and_then(|()| self.out.write_all(b"\t"))
            .and_then(|()| self.out.write_all(&line[key_end + 1..xmin_end]))
            .and_then(|()| self.out.write_all(b"\n"));
        written.map_err(|e| OpsError::io("writing the row versions' temp file", &e))?;
        json.extend_from_slice(&line[xmin_end + 1..]);
        Ok(())
    }

    /// The versions recorded, once the COPY has ended (on a whole line).
    pub(super) fn finish(self) -> Result<RowVersions, OpsError> {
        if !self.partial.is_empty() {
            return Err(OpsError::new(
                Exit::Software,
                "the export ended in the middle of a line",
            ));
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| OpsError::io("writing the row versions' temp file", e.error()))?;
        Ok(RowVersions { file })
    }
}

/// `(primary key, xmin)` of every exported row, in primary-key order.
pub(super) struct RowVersions {
    file: File,
}

impl RowVersions {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cut_anywhere_split_into_json_and_versions() {
        let copy = b"1\x02700\x02{\"id\":1}\n22\x02701\x02{\"id\":22,\"a\":\"x\"}\n";
        for cut in 0..copy.len() {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut splitter = VersionSplitter::new(dir.path()).expect("splitter");
            let mut json = Vec::new();
            splitter.feed(&copy[..cut], &mut json).expect("feed");
            splitter.feed(&copy[cut..], &mut json).expect("feed");
            assert_eq!(
                json, b"{\"id\":1}\n{\"id\":22,\"a\":\"x\"}\n",
                "cut at {cut}"
            );
            let versions = splitter.finish().expect("finish");
            let mut reader = versions.reader().expect("reader");
            assert_eq!(reader.next_for(1).expect("1"), 700);
            assert_eq!(reader.next_for(22).expect("22"), 701);
            reader.finish().expect("nothing more");
        }
    }

    #[test]
    fn a_line_without_its_columns_or_a_cut_end_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut splitter = VersionSplitter::new(dir.path()).expect("splitter");
        assert!(splitter.feed(b"{\"id\":1}\n", &mut Vec::new()).is_err());
        let mut splitter = VersionSplitter::new(dir.path()).expect("splitter");
        splitter
            .feed(b"1\x02700\x02{", &mut Vec::new())
            .expect("partial");
        assert!(splitter.finish().is_err());
    }
}
