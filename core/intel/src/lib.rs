//! The RansomEye threat-intel graph: its model, a canonical portable export with a digest, import, and
//! integrity checks.
//!
//! The graph lives in PostgreSQL: `intel_nodes` (indicators, campaigns, hosts, malware, actors…) and
//! `intel_edges` (typed relations between nodes), see `schema/platform.sql`. Its export is JSON Lines
//! in one canonical encoding, specified in `docs/FORMAT.md` section 7, so that the same database
//! content always gives the same bytes and therefore the same SHA-256 — whatever the physical row
//! order, insertion order or session settings. The backup stores the export and its digest; restore
//! and drill recompute the digest from the restored database and compare.
//!
//! - [`model`]: [`Node`], [`Edge`], [`End`], the [`Record`] enum, and the canonical line of each;
//! - [`json`]: canonical JSON (sorted keys, `serde_json` escaping, PostgreSQL `numeric` number form);
//! - [`export()`] / [`digest()`]: stream the export of what a connection sees, or only its digest;
//! - [`check()`]: verify an export completely (header, canonical lines, order, no dangling edge, end);
//! - [`import()`]: load an export into empty tables, all or nothing.
//!
//! Like the kernel, this crate never prints and never exits: it returns [`IntelError`], whose variants
//! separate database, I/O, format/integrity (with the line number) and data problems.

mod check;
mod error;
mod export;
mod import;
pub mod json;
pub mod model;

use std::io::BufRead;

use serde::{Deserialize, Serialize};

pub use error::{IntelError, Problem};
pub use export::{digest, export};
pub use import::import;
pub use model::{
    Edge, End, Node, Properties, Record, RecordError, RecordKind, Timestamp, TimestampError,
    FORMAT_NAME, FORMAT_VERSION, HEADER,
};

/// Longest line, newline included, that a reader accepts (64 MiB); bounds a reader's memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Counts, size and SHA-256 of a canonical export.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GraphDigest {
    /// Number of node records.
    pub nodes: u64,
    /// Number of edge records.
    pub edges: u64,
    /// Length of the export in bytes, header and end record included.
    pub bytes: u64,
    /// SHA-256 of exactly those bytes, 64 lower-case hex digits.
    pub sha256: String,
}

impl std::fmt::Display for GraphDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} nodes, {} edges, {} bytes, sha256 {}",
            self.nodes, self.edges, self.bytes, self.sha256
        )
    }
}

/// Reads a canonical export and checks it completely; returns its digest.
///
/// Checked: the header; that every line ends with a newline (the last included), is UTF-8, parses,
/// is a valid record and is byte for byte its own canonical encoding; node ids strictly increasing,
/// then edge ids strictly increasing (no node after an edge); every edge's source and target among
/// the nodes; the end record last, with the right counts, and nothing after it. The first problem is
/// returned as [`IntelError::Format`] with its line number. Memory grows only with the number of
/// nodes (their ids, 8 bytes each).
pub fn check<R: BufRead>(input: R) -> Result<GraphDigest, IntelError> {
    check::Reader::new(input).finish()
}

#[cfg(test)]
mod tests;
