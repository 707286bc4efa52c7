//! Reading an export back: line framing and every integrity rule (docs/FORMAT.md, 7.8).
//!
//! [`Reader`] owns the one implementation of the rules that both [`check`](crate::check) and
//! [`import`](crate::import) apply: it hashes every byte it reads, frames lines (each ends with a
//! newline, at most [`MAX_LINE_BYTES`](crate::MAX_LINE_BYTES)), requires the header first, parses each
//! record and compares it with its own canonical re-encoding, enforces the order (nodes by strictly
//! increasing id, then edges likewise), refuses dangling edges, and requires the end record, with the
//! right counts, last. Its memory grows only with the number of node ids (kept sorted for lookups).

use std::io::{BufRead, Read};

use ring::digest;

use crate::error::{IntelError, Problem};
use crate::json::{self, Value};
use crate::model::{Edge, End, Node, Record, RecordKind};
use crate::{GraphDigest, FORMAT_NAME, HEADER, MAX_LINE_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Body,
    Ended,
}

/// Reads and checks an export, handing out its node and edge records in order.
pub(crate) struct Reader<R> {
    input: R,
    /// The current line, newline included.
    buf: Vec<u8>,
    /// The canonical re-encoding of the current line.
    canonical: String,
    /// Number of the current line (1-based; 0 before the first).
    line: u64,
    state: State,
    node_ids: Vec<i64>,
    last_edge: Option<i64>,
    nodes: u64,
    edges: u64,
    bytes: u64,
    sha: digest::Context,
}

impl<R: BufRead> Reader<R> {
    pub(crate) fn new(input: R) -> Self {
        Reader {
            input,
            buf: Vec::new(),
            canonical: String::new(),
            line: 0,
            state: State::Header,
            node_ids: Vec::new(),
            last_edge: None,
            nodes: 0,
            edges: 0,
            bytes: 0,
            sha: digest::Context::new(&digest::SHA256),
        }
    }

    fn fail(&self, problem: Problem) -> IntelError {
        IntelError::Format {
            line: self.line,
            problem,
        }
    }

    /// The next node or edge record, checked; `None` once the end record and the end of input have
    /// been read and everything held.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, IntelError> {
        loop {
            if !self.read_line()? {
                return match self.state {
                    State::Header => Err(IntelError::Format {
                        line: 1,
                        problem: Problem::Empty,
                    }),
                    State::Body => Err(IntelError::Format {
                        line: self.line + 1,
                        problem: Problem::MissingEnd,
                    }),
                    State::Ended => Ok(None),
                };
            }
            match self.state {
                State::Header => {
                    self.header()?;
                    self.state = State::Body;
                }
                State::Ended => return Err(self.fail(Problem::AfterEnd)),
                State::Body => match self.record()? {
                    Record::Node(node) => {
                        self.node(&node)?;
                        return Ok(Some(Record::Node(node)));
                    }
                    Record::Edge(edge) => {
                        self.edge(&edge)?;
                        return Ok(Some(Record::Edge(edge)));
                    }
                    Record::End(end) => {
                        self.end(end)?;
                        self.state = State::Ended;
                    }
                },
            }
        }
    }

    /// Reads every remaining record and returns the digest of the whole input.
    pub(crate) fn finish(mut self) -> Result<GraphDigest, IntelError> {
        while self.next_record()?.is_some() {}
        Ok(GraphDigest {
            nodes: self.nodes,
            edges: self.edges,
            bytes: self.bytes,
            sha256: hex::encode(self.sha.finish().as_ref()),
        })
    }

    /// Reads the next line into `buf`, hashing it; `false` at the end of input.
    fn read_line(&mut self) -> Result<bool, IntelError> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut self.buf)
            .map_err(IntelError::io("reading the export"))?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        self.bytes += n as u64;
        self.sha.update(&self.buf);
        if self.buf.last() != Some(&b'\n') {
            return Err(self.fail(if n >= MAX_LINE_BYTES {
                Problem::LineTooLong
            } else {
                Problem::MissingNewline
            }));
        }
        Ok(true)
    }

    /// The current line without its newline, as UTF-8.
    fn text(&self) -> Result<&str, IntelError> {
        let bytes = &self.buf[..self.buf.len() - 1];
        std::str::from_utf8(bytes).map_err(|e| {
            self.fail(Problem::NotUtf8 {
                column: e.valid_up_to() + 1,
            })
        })
    }

    fn header(&self) -> Result<(), IntelError> {
        let text = self.text().map_err(|_| self.fail(Problem::MissingHeader))?;
        if text == HEADER {
            return Ok(());
        }
        // Say more than "not a header" when it is one of ours with another version or layout.
        if let Ok(Value::Object(members)) = json::parse(text) {
            let field = |name: &str| members.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            if field("format") == Some(&Value::String(FORMAT_NAME.into())) {
                return Err(match field("version") {
                    Some(Value::Number(v)) if v != "1" => {
                        self.fail(Problem::UnsupportedVersion(v.chars().take(20).collect()))
                    }
                    _ => self.fail(Problem::NotCanonical {
                        column: first_difference(text.as_bytes(), HEADER.as_bytes()),
                    }),
                });
            }
        }
        Err(self.fail(Problem::MissingHeader))
    }

    /// Parses the current line as a record and checks that it is canonical.
    fn record(&mut self) -> Result<Record, IntelError> {
        let text = self.text()?;
        let value = json::parse(text).map_err(|e| {
            self.fail(Problem::InvalidJson {
                column: e.offset + 1,
                reason: e.reason,
            })
        })?;
        let record = Record::from_value(value)
            .map_err(|e| self.fail(Problem::InvalidRecord(e.to_string())))?;
        self.canonical.clear();
        record.write_line(&mut self.canonical);
        if self.canonical.as_bytes() != self.buf.as_slice() {
            return Err(self.fail(Problem::NotCanonical {
                column: first_difference(&self.buf, self.canonical.as_bytes()),
            }));
        }
        Ok(record)
    }

    fn node(&mut self, node: &Node) -> Result<(), IntelError> {
        if self.last_edge.is_some() {
            return Err(self.fail(Problem::NodeAfterEdges { id: node.id }));
        }
        if let Some(&previous) = self.node_ids.last() {
            order(RecordKind::Node, node.id, previous).map_err(|p| self.fail(p))?;
        }
        self.node_ids.push(node.id);
        self.nodes += 1;
        Ok(())
    }

    fn edge(&mut self, edge: &Edge) -> Result<(), IntelError> {
        if let Some(previous) = self.last_edge {
            order(RecordKind::Edge, edge.id, previous).map_err(|p| self.fail(p))?;
        }
        for node in [edge.source_id, edge.target_id] {
            if self.node_ids.binary_search(&node).is_err() {
                return Err(self.fail(Problem::DanglingEdge {
                    edge: edge.id,
                    node,
                }));
            }
        }
        self.last_edge = Some(edge.id);
        self.edges += 1;
        Ok(())
    }

    fn end(&self, end: End) -> Result<(), IntelError> {
        if end.nodes != self.nodes || end.edges != self.edges {
            return Err(self.fail(Problem::CountMismatch {
                claimed_nodes: end.nodes,
                claimed_edges: end.edges,
                nodes: self.nodes,
                edges: self.edges,
            }));
        }
        Ok(())
    }
}

/// Checks that `id` may follow `previous` in a sequence of strictly increasing ids.
pub(crate) fn order(record: RecordKind, id: i64, previous: i64) -> Result<(), Problem> {
    if id == previous {
        Err(Problem::DuplicateId { record, id })
    } else if id < previous {
        Err(Problem::OutOfOrder {
            record,
            id,
            previous,
        })
    } else {
        Ok(())
    }
}

/// 1-based column of the first byte where `a` and `b` differ.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count() + 1
}
