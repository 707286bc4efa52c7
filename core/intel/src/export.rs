//! Writing the canonical export from PostgreSQL (docs/FORMAT.md, 7.9).
//!
//! This module owns the two `SELECT`s that read the graph (each ordered by primary key on the server,
//! `properties` as jsonb text, `created_at` in binary: neither depends on session settings), the
//! snapshot rule that makes them see the same data, and the hashing sink. Rows are
//! streamed one at a time; memory does not grow with the graph.

use std::io::Write;

use futures_util::TryStreamExt;
use ring::digest;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef, Postgres};
use sqlx::{Connection, PgConnection, Row};

use crate::check::order;
use crate::error::IntelError;
use crate::json;
use crate::model::{write_edge_line, write_node_line, End, Record, RecordKind, Timestamp};
use crate::{GraphDigest, HEADER};

// `properties` is read as PostgreSQL's text form of the jsonb value and canonicalised here;
// `created_at` arrives in binary (microseconds since 2000-01-01 UTC, see `Micros`), so neither depends
// on session settings such as TimeZone or DateStyle.
const NODES_SQL: &str =
    "select id, kind, value, properties::text, created_at from intel_nodes order by id";
const EDGES_SQL: &str = "select id, source_id, target_id, kind, properties::text, created_at \
                         from intel_edges order by id";

/// Bytes buffered before they are hashed and handed to the writer.
const CHUNK: usize = 64 * 1024;

/// A `timestamptz` as PostgreSQL sends it in binary: microseconds since 2000-01-01 00:00:00 UTC.
struct Micros(i64);

impl sqlx::Type<Postgres> for Micros {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ)
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        ty.oid() == Some(TIMESTAMPTZ)
    }
}

/// OID of the built-in `timestamptz` type (fixed in PostgreSQL's catalog).
const TIMESTAMPTZ: Oid = Oid(1184);

impl<'r> sqlx::Decode<'r, Postgres> for Micros {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.format() != PgValueFormat::Binary {
            return Err("timestamptz was not sent in binary".into());
        }
        let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
        Ok(Micros(i64::from_be_bytes(bytes)))
    }
}

/// Streams the canonical export of the graph visible to `conn` into `out` and returns its digest.
///
/// Nodes and edges are read by two statements, which must see one snapshot:
/// - if `conn` is not in a transaction (as sqlx tracks it: `begin`/`begin_with`), the export runs in
///   its own `REPEATABLE READ READ ONLY` transaction, ended before returning;
/// - if it is, that transaction must be `REPEATABLE READ` or `SERIALIZABLE` (the backup's snapshot
///   transaction), otherwise [`IntelError::Snapshot`] is returned before anything is written.
///
/// `out` receives the export in chunks of 64 KiB; on error, what was written is incomplete and must be
/// discarded. The export relies on the tables' foreign keys for "no dangling edge" (it keeps no node
/// ids, so its memory stays flat); ids out of order or repeated fail it with
/// [`IntelError::Unexportable`], as do timestamps outside years 0001–9999.
pub async fn export<W: Write + Send>(
    conn: &mut PgConnection,
    out: &mut W,
) -> Result<GraphDigest, IntelError> {
    if conn.is_in_transaction() {
        let isolation: String =
            sqlx::query_scalar("select current_setting('transaction_isolation')")
                .fetch_one(&mut *conn)
                .await
                .map_err(IntelError::db("reading the transaction isolation level"))?;
        if isolation != "repeatable read" && isolation != "serializable" {
            return Err(IntelError::Snapshot { isolation });
        }
        return write_graph(conn, out).await;
    }
    let mut tx = conn
        .begin_with("begin isolation level repeatable read read only")
        .await
        .map_err(IntelError::db("starting a snapshot transaction"))?;
    let digest = write_graph(&mut tx, out).await?;
    tx.commit()
        .await
        .map_err(IntelError::db("ending the snapshot transaction"))?;
    Ok(digest)
}

/// The digest of the canonical export of the graph visible to `conn`, without writing it anywhere.
/// Same snapshot rules as [`export`].
pub async fn digest(conn: &mut PgConnection) -> Result<GraphDigest, IntelError> {
    export(conn, &mut std::io::sink()).await
}

async fn write_graph<W: Write + Send>(
    conn: &mut PgConnection,
    out: &mut W,
) -> Result<GraphDigest, IntelError> {
    let mut sink = HashingSink::new(out);
    sink.buf.push_str(HEADER);
    sink.buf.push('\n');
    let mut properties = String::new();

    let mut nodes = 0u64;
    let mut previous = None;
    let mut rows = sqlx::query(NODES_SQL).fetch(&mut *conn);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(IntelError::db("reading intel_nodes"))?
    {
        let read = |e| IntelError::Database {
            doing: "reading intel_nodes",
            source: e,
        };
        let id: i64 = row.try_get(0).map_err(read)?;
        let kind: &str = row.try_get(1).map_err(read)?;
        let value: &str = row.try_get(2).map_err(read)?;
        let json: &str = row.try_get(3).map_err(read)?;
        let created_at: Micros = row.try_get(4).map_err(read)?;
        let unexportable = |problem: String| IntelError::Unexportable {
            record: RecordKind::Node,
            id,
            problem,
        };
        if let Some(previous) = previous {
            order(RecordKind::Node, id, previous).map_err(|p| unexportable(p.to_string()))?;
        }
        previous = Some(id);
        canonical_properties(json, &mut properties).map_err(unexportable)?;
        let created_at = timestamp(created_at).map_err(unexportable)?;
        write_node_line(
            &mut sink.buf,
            id,
            kind,
            value,
            &properties,
            created_at.as_str(),
        );
        sink.flush_if_full()?;
        nodes += 1;
    }
    drop(rows);

    let mut edges = 0u64;
    let mut previous = None;
    let mut rows = sqlx::query(EDGES_SQL).fetch(&mut *conn);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(IntelError::db("reading intel_edges"))?
    {
        let read = |e| IntelError::Database {
            doing: "reading intel_edges",
            source: e,
        };
        let id: i64 = row.try_get(0).map_err(read)?;
        let source_id: i64 = row.try_get(1).map_err(read)?;
        let target_id: i64 = row.try_get(2).map_err(read)?;
        let kind: &str = row.try_get(3).map_err(read)?;
        let json: &str = row.try_get(4).map_err(read)?;
        let created_at: Micros = row.try_get(5).map_err(read)?;
        let unexportable = |problem: String| IntelError::Unexportable {
            record: RecordKind::Edge,
            id,
            problem,
        };
        if let Some(previous) = previous {
            order(RecordKind::Edge, id, previous).map_err(|p| unexportable(p.to_string()))?;
        }
        previous = Some(id);
        canonical_properties(json, &mut properties).map_err(unexportable)?;
        let created_at = timestamp(created_at).map_err(unexportable)?;
        write_edge_line(
            &mut sink.buf,
            [id, source_id, target_id],
            kind,
            &properties,
            created_at.as_str(),
        );
        sink.flush_if_full()?;
        edges += 1;
    }
    drop(rows);

    Record::End(End { nodes, edges }).write_line(&mut sink.buf);
    sink.finish(nodes, edges)
}

/// Replaces `out` with the canonical form of PostgreSQL's text of a jsonb value.
fn canonical_properties(json: &str, out: &mut String) -> Result<(), String> {
    out.clear();
    json::canonicalize_into(json, out).map_err(|e| format!("properties: {e}"))
}

fn timestamp(created_at: Micros) -> Result<Timestamp, String> {
    Timestamp::from_postgres_micros(created_at.0).map_err(|e| format!("created_at is {e}"))
}

/// Buffers lines, hashes them and passes them on.
struct HashingSink<'a, W> {
    out: &'a mut W,
    buf: String,
    sha: digest::Context,
    bytes: u64,
}

impl<'a, W: Write> HashingSink<'a, W> {
    fn new(out: &'a mut W) -> Self {
        HashingSink {
            out,
            buf: String::with_capacity(CHUNK + 4096),
            sha: digest::Context::new(&digest::SHA256),
            bytes: 0,
        }
    }

    fn flush_if_full(&mut self) -> Result<(), IntelError> {
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IntelError> {
        self.sha.update(self.buf.as_bytes());
        self.bytes += self.buf.len() as u64;
        self.out
            .write_all(self.buf.as_bytes())
            .map_err(IntelError::io("writing the export"))?;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self, nodes: u64, edges: u64) -> Result<GraphDigest, IntelError> {
        self.flush()?;
        self.out
            .flush()
            .map_err(IntelError::io("writing the export"))?;
        Ok(GraphDigest {
            nodes,
            edges,
            bytes: self.bytes,
            sha256: hex::encode(self.sha.finish().as_ref()),
        })
    }
}
