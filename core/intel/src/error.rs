//! The errors of this crate: one enum whose variants tell database, I/O, format and data problems apart.
//!
//! Messages name line numbers, ids, fields and byte columns, never whole rows: an export may carry
//! indicators that should not land in logs.

use std::io;

use crate::model::RecordKind;

/// Everything export, digest, check and import can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    /// PostgreSQL failed or refused a statement.
    #[error("database error while {doing}: {source}")]
    Database {
        /// What was being done, e.g. "reading intel_edges".
        doing: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Reading the input or writing the output failed.
    #[error("I/O error while {doing}: {source}")]
    Io {
        /// What was being done, e.g. "writing the export".
        doing: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The input is not a valid, complete, canonical export (integrity or format problem).
    #[error("line {line}: {problem}")]
    Format {
        /// 1-based line number the problem is on (for a missing end record: the line after the last).
        line: u64,
        /// What is wrong.
        problem: Problem,
    },
    /// `import` found rows in the intel tables; it only fills empty ones.
    #[error("{table} is not empty: import only fills empty intel tables")]
    NotEmpty {
        /// `intel_nodes` or `intel_edges`.
        table: &'static str,
    },
    /// `export` was called inside a transaction whose statements may see different snapshots.
    #[error(
        "the export needs one snapshot for nodes and edges, but the open transaction is {isolation}: \
         use REPEATABLE READ or SERIALIZABLE, or call it outside a transaction"
    )]
    Snapshot {
        /// The transaction's isolation level as PostgreSQL names it (`read committed`…).
        isolation: String,
    },
    /// A row in the database cannot be represented in the format (the export is abandoned).
    #[error("{record} {id} cannot be exported: {problem}")]
    Unexportable {
        /// The table the row is in.
        record: RecordKind,
        /// Its primary key.
        id: i64,
        /// What is wrong with it.
        problem: String,
    },
}

impl IntelError {
    /// The line number, for format and integrity errors.
    pub fn line(&self) -> Option<u64> {
        match self {
            IntelError::Format { line, .. } => Some(*line),
            _ => None,
        }
    }

    pub(crate) fn db(doing: &'static str) -> impl FnOnce(sqlx::Error) -> IntelError {
        move |source| IntelError::Database { doing, source }
    }

    pub(crate) fn io(doing: &'static str) -> impl FnOnce(io::Error) -> IntelError {
        move |source| IntelError::Io { doing, source }
    }
}

/// What is wrong with one line of an export (or with the export as a whole, at a line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The input has no bytes at all.
    #[error("empty input: expected the header {}", crate::HEADER)]
    Empty,
    /// The first line is not the header.
    #[error(
        "not a ransomeye intel graph export: the first line must be {}",
        crate::HEADER
    )]
    MissingHeader,
    /// The header names a format version this build does not read.
    #[error("unsupported format version {0} (this build reads version {version})", version = crate::FORMAT_VERSION)]
    UnsupportedVersion(String),
    /// The line is not UTF-8.
    #[error("not valid UTF-8 (at byte column {column})")]
    NotUtf8 {
        /// 1-based byte column of the first invalid byte.
        column: usize,
    },
    /// The line is longer than [`crate::MAX_LINE_BYTES`].
    #[error("line longer than {} bytes", crate::MAX_LINE_BYTES)]
    LineTooLong,
    /// The last line has no newline: the input was cut.
    #[error("missing trailing newline (the export is truncated)")]
    MissingNewline,
    /// Not a JSON text, or not a record.
    #[error("{reason} (at byte column {column})")]
    InvalidJson {
        /// 1-based byte column of the problem.
        column: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Valid JSON, but not a record (missing, unknown or mistyped field).
    #[error("not a valid record: {0}")]
    InvalidRecord(String),
    /// A valid record, but not written canonically.
    #[error(
        "not in canonical encoding: differs from it first at byte column {column} \
         (field order, key order, whitespace, escaping or number form)"
    )]
    NotCanonical {
        /// 1-based byte column of the first byte that differs from the canonical line.
        column: usize,
    },
    /// The same id twice in a row.
    #[error("duplicate {record} id {id}")]
    DuplicateId {
        /// Node or edge.
        record: RecordKind,
        /// The repeated id.
        id: i64,
    },
    /// Ids not strictly increasing.
    #[error("{record} id {id} after {record} id {previous}: ids must be strictly increasing")]
    OutOfOrder {
        /// Node or edge.
        record: RecordKind,
        /// This line's id.
        id: i64,
        /// The previous line's id.
        previous: i64,
    },
    /// A node after the first edge.
    #[error("node {id} after the edges: all nodes come before the first edge")]
    NodeAfterEdges {
        /// The node's id.
        id: i64,
    },
    /// An edge whose source or target is not among the nodes.
    #[error("edge {edge} points to missing node {node}")]
    DanglingEdge {
        /// The edge's id.
        edge: i64,
        /// The missing node id.
        node: i64,
    },
    /// The end record's counts differ from the records seen.
    #[error("end record counts {claimed_nodes} nodes and {claimed_edges} edges, but the export has {nodes} and {edges}")]
    CountMismatch {
        /// Nodes the end record claims.
        claimed_nodes: u64,
        /// Edges the end record claims.
        claimed_edges: u64,
        /// Node lines seen.
        nodes: u64,
        /// Edge lines seen.
        edges: u64,
    },
    /// Input ended before the end record.
    #[error("the export ends without its end record (truncated)")]
    MissingEnd,
    /// Something after the end record.
    #[error("data after the end record")]
    AfterEnd,
}
