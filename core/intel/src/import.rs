//! Loading an export into empty intel tables (docs/FORMAT.md, 7.10).
//!
//! This module owns the import transaction: lock both tables against writers, refuse non-empty tables,
//! stream the checked records into `COPY … FROM STDIN` (text format), move the identity sequences past
//! the imported ids, commit. Any error — in the input, the database or the connection — rolls the
//! whole import back, so either the complete graph is imported or nothing is.

use std::io::BufRead;

use sqlx::postgres::PgCopyIn;
use sqlx::{Connection, PgConnection};

use crate::check::Reader;
use crate::error::IntelError;
use crate::model::{Record, RecordKind};
use crate::GraphDigest;

const COPY_NODES: &str = "copy intel_nodes (id, kind, value, properties, created_at) from stdin";
const COPY_EDGES: &str =
    "copy intel_edges (id, source_id, target_id, kind, properties, created_at) from stdin";

/// Bytes of COPY data sent per message.
const CHUNK: usize = 256 * 1024;

/// Imports a canonical export into the empty `intel_nodes` and `intel_edges` of `conn`'s database.
///
/// Everything happens in one transaction (a savepoint if `conn` is already in one): the tables are
/// locked `EXCLUSIVE` (readers go on, writers wait), refused with [`IntelError::NotEmpty`] if either
/// has a row, filled while the input is checked exactly as [`check`](crate::check) does, and the
/// identity sequences of both `id` columns are set so that the next generated id follows the largest
/// imported one. On any error the transaction (or savepoint) is rolled back and nothing is imported.
/// Returns the digest of the input, which equals the digest of the imported graph.
pub async fn import<R: BufRead + Send>(
    conn: &mut PgConnection,
    input: R,
) -> Result<GraphDigest, IntelError> {
    let mut tx = conn
        .begin()
        .await
        .map_err(IntelError::db("starting the import transaction"))?;
    sqlx::query("lock table intel_nodes, intel_edges in exclusive mode")
        .execute(&mut *tx)
        .await
        .map_err(IntelError::db("locking the intel tables"))?;
    for (table, sql) in [
        ("intel_nodes", "select exists (select 1 from intel_nodes)"),
        ("intel_edges", "select exists (select 1 from intel_edges)"),
    ] {
        let has_rows: bool = sqlx::query_scalar(sql)
            .fetch_one(&mut *tx)
            .await
            .map_err(IntelError::db("checking that the intel tables are empty"))?;
        if has_rows {
            return Err(IntelError::NotEmpty { table });
        }
    }

    let mut reader = Reader::new(input);
    let first = reader.next_record()?;
    let next = copy_records(&mut tx, COPY_NODES, RecordKind::Node, &mut reader, first)
        .await
        .map_err(|e| e.or_db("importing intel_nodes"))?;
    let next = copy_records(&mut tx, COPY_EDGES, RecordKind::Edge, &mut reader, next)
        .await
        .map_err(|e| e.or_db("importing intel_edges"))?;
    // The reader hands out nodes, then edges, then None; anything else it has already refused.
    debug_assert!(next.is_none());
    let digest = reader.finish()?;

    for sql in [
        "select setval(pg_get_serial_sequence('intel_nodes', 'id'), greatest(max(id), 1), \
         coalesce(max(id) >= 1, false)) from intel_nodes",
        "select setval(pg_get_serial_sequence('intel_edges', 'id'), greatest(max(id), 1), \
         coalesce(max(id) >= 1, false)) from intel_edges",
    ] {
        sqlx::query(sql)
            .execute(&mut *tx)
            .await
            .map_err(IntelError::db("resetting the identity sequences"))?;
    }
    tx.commit()
        .await
        .map_err(IntelError::db("committing the import"))?;
    Ok(digest)
}

/// An error of [`copy_records`]: from the input (already an [`IntelError`]) or from the database.
enum CopyError {
    Intel(IntelError),
    Db(sqlx::Error),
}

impl CopyError {
    fn or_db(self, doing: &'static str) -> IntelError {
        match self {
            CopyError::Intel(e) => e,
            CopyError::Db(source) => IntelError::Database { doing, source },
        }
    }
}

/// Copies `first` and the records after it into one table for as long as they are of kind `kind`;
/// returns the first record of another kind.
async fn copy_records<R: BufRead>(
    conn: &mut PgConnection,
    statement: &str,
    kind: RecordKind,
    reader: &mut Reader<R>,
    first: Option<Record>,
) -> Result<Option<Record>, CopyError> {
    let mut copy = conn.copy_in_raw(statement).await.map_err(CopyError::Db)?;
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let streamed = stream(&mut copy, &mut buf, kind, reader, first).await;
    match streamed {
        Ok(next) => {
            if !buf.is_empty() {
                copy.send(buf.as_slice()).await.map_err(CopyError::Db)?;
            }
            copy.finish().await.map_err(CopyError::Db)?;
            Ok(next)
        }
        Err(e) => {
            // The server discards the COPY; the caller's rollback discards the rest. An error from
            // the abort itself (a lost connection) changes nothing: the transaction cannot commit.
            let _ = copy.abort("ransomeye-intel: import input rejected").await;
            Err(e)
        }
    }
}

async fn stream<R: BufRead>(
    copy: &mut PgCopyIn<&mut PgConnection>,
    buf: &mut Vec<u8>,
    kind: RecordKind,
    reader: &mut Reader<R>,
    mut next: Option<Record>,
) -> Result<Option<Record>, CopyError> {
    loop {
        match (next, kind) {
            (Some(Record::Node(n)), RecordKind::Node) => {
                push_int(buf, n.id);
                push_text(buf, &n.kind);
                push_text(buf, &n.value);
                push_text(buf, n.properties.as_str());
                push_text(buf, n.created_at.as_str());
            }
            (Some(Record::Edge(e)), RecordKind::Edge) => {
                push_int(buf, e.id);
                push_text(buf, &e.source_id.to_string());
                push_text(buf, &e.target_id.to_string());
                push_text(buf, &e.kind);
                push_text(buf, e.properties.as_str());
                push_text(buf, e.created_at.as_str());
            }
            (other, _) => return Ok(other),
        }
        buf.push(b'\n');
        if buf.len() >= CHUNK {
            copy.send(buf.as_slice()).await.map_err(CopyError::Db)?;
            buf.clear();
        }
        next = reader.next_record().map_err(CopyError::Intel)?;
    }
}

/// Starts a row with an integer column.
fn push_int(buf: &mut Vec<u8>, n: i64) {
    buf.extend_from_slice(n.to_string().as_bytes());
}

/// Appends a tab and a column in COPY text format: backslash, newline, carriage return and tab
/// escaped; every other byte as is (the connection's client encoding is UTF-8).
fn push_text(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'\t');
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_exactly_the_four_special_bytes() {
        let mut buf = Vec::new();
        push_int(&mut buf, -7);
        push_text(&mut buf, "a\\b\nc\rd\te\u{1}é\\N");
        assert_eq!(buf, "-7\ta\\\\b\\nc\\rd\\te\u{1}é\\\\N".as_bytes());
    }
}
