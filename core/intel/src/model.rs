//! The graph model and its one-line encodings (docs/FORMAT.md, 7.1–7.4 and 7.6).
//!
//! This module owns the types of the records of an export — [`Node`], [`Edge`], the [`End`] record and
//! the [`Record`] enum over them — together with the two value types whose form the format pins down:
//! [`Properties`] (canonical JSON text) and [`Timestamp`] (UTC, microseconds, `Z`). It writes each record
//! as its canonical line and reads a line back leniently (any field order or whitespace); the checker
//! compares the two to decide whether a line is canonical.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::json::{self, Value};

/// The first line of every export, without its newline.
pub const HEADER: &str = r#"{"format":"ransomeye-intel-graph","version":1}"#;
/// The value of the header's `format` field.
pub const FORMAT_NAME: &str = "ransomeye-intel-graph";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// A vertex of the threat-intel graph: a row of `intel_nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Primary key.
    pub id: i64,
    /// What the node is: `ipv4-addr`, `domain-name`, `file-sha256`, `campaign`, `malware`, `host`, …
    pub kind: String,
    /// The indicator or name itself (an address, a hash, a campaign name…).
    pub value: String,
    /// Free-form attributes (confidence, source, tags, first_seen…), canonical JSON.
    pub properties: Properties,
    /// When the row was created.
    pub created_at: Timestamp,
}

/// A typed, directed relation between two nodes: a row of `intel_edges`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Primary key.
    pub id: i64,
    /// The node the relation starts from.
    pub source_id: i64,
    /// The node the relation points to.
    pub target_id: i64,
    /// The relation: `indicates`, `uses`, `attributed-to`, `communicates-with`, …
    pub kind: String,
    /// Free-form attributes, canonical JSON.
    pub properties: Properties,
    /// When the row was created.
    pub created_at: Timestamp,
}

/// The last record of an export: how many nodes and edges precede it. It makes an export cut at a
/// line boundary detectably incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    /// Number of node records.
    pub nodes: u64,
    /// Number of edge records.
    pub edges: u64,
}

/// One line of an export after the header.
///
/// With `serde_json`, a record serializes to exactly its canonical line (without the newline) and
/// deserializes from any JSON object with the same fields (see [`Record::from_json`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    /// A node (`"type":"node"`).
    Node(Node),
    /// An edge (`"type":"edge"`).
    Edge(Edge),
    /// The end record (`"type":"end"`).
    End(End),
}

/// Which table a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// `intel_nodes`.
    Node,
    /// `intel_edges`.
    Edge,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Node => "node",
            RecordKind::Edge => "edge",
        })
    }
}

impl Record {
    /// Appends the canonical line of this record, newline included.
    pub fn write_line(&self, out: &mut String) {
        match self {
            Record::Node(n) => write_node_line(
                out,
                n.id,
                &n.kind,
                &n.value,
                n.properties.as_str(),
                n.created_at.as_str(),
            ),
            Record::Edge(e) => write_edge_line(
                out,
                [e.id, e.source_id, e.target_id],
                &e.kind,
                e.properties.as_str(),
                e.created_at.as_str(),
            ),
            Record::End(end) => {
                out.push_str(r#"{"type":"end","nodes":"#);
                push_int(out, end.nodes);
                out.push_str(r#","edges":"#);
                push_int(out, end.edges);
                out.push_str("}\n");
            }
        }
    }

    /// The canonical line of this record, newline included.
    pub fn to_line(&self) -> String {
        let mut s = String::new();
        self.write_line(&mut s);
        s
    }

    /// Reads a record from one JSON object in any layout: fields in any order, any whitespace, any
    /// JSON escaping and number form. All fields of the record type are required and no others are
    /// allowed; `properties` may be any JSON value and is canonicalised.
    pub fn from_json(text: &str) -> Result<Record, RecordError> {
        let value = json::parse(text).map_err(RecordError::Json)?;
        Record::from_value(value)
    }

    pub(crate) fn from_value(value: Value<'_>) -> Result<Record, RecordError> {
        let Value::Object(members) = value else {
            return Err(RecordError::Field("a record must be a JSON object".into()));
        };
        let mut fields = Fields::new(members)?;
        let kind = match fields.take("type")? {
            Value::String(s) => s.into_owned(),
            _ => return Err(RecordError::Field("\"type\" must be a string".into())),
        };
        let record = match kind.as_str() {
            "node" => Record::Node(Node {
                id: fields.int("id")?,
                kind: fields.string("kind")?,
                value: fields.string("value")?,
                properties: Properties::from_value(&fields.take("properties")?),
                created_at: fields.timestamp("created_at")?,
            }),
            "edge" => Record::Edge(Edge {
                id: fields.int("id")?,
                source_id: fields.int("source_id")?,
                target_id: fields.int("target_id")?,
                kind: fields.string("kind")?,
                properties: Properties::from_value(&fields.take("properties")?),
                created_at: fields.timestamp("created_at")?,
            }),
            "end" => Record::End(End {
                nodes: fields.count("nodes")?,
                edges: fields.count("edges")?,
            }),
            other => {
                return Err(RecordError::Field(format!(
                    "unknown record type {:?} (expected node, edge or end)",
                    truncate(other)
                )))
            }
        };
        fields.finish(&kind)?;
        Ok(record)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Record::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Why a JSON text is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(json::JsonError),
    /// Valid JSON, but a field is missing, unknown, repeated or of the wrong type.
    #[error("{0}")]
    Field(String),
}

/// The members of a record object, taken out one field at a time.
struct Fields<'a> {
    members: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Fields<'a> {
    fn new(members: Vec<(Cow<'a, str>, Value<'a>)>) -> Result<Fields<'a>, RecordError> {
        // Bounds the duplicate search below; a record has at most 7 fields.
        if members.len() > 16 {
            return Err(RecordError::Field(format!(
                "{} fields; a record has at most 7",
                members.len()
            )));
        }
        for (i, (key, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(k, _)| k == key) {
                return Err(RecordError::Field(format!(
                    "field {:?} appears twice",
                    truncate(key)
                )));
            }
        }
        Ok(Fields { members })
    }

    fn take(&mut self, name: &str) -> Result<Value<'a>, RecordError> {
        match self.members.iter().position(|(k, _)| k == name) {
            Some(i) => Ok(self.members.swap_remove(i).1),
            None => Err(RecordError::Field(format!("missing field \"{name}\""))),
        }
    }

    fn int(&mut self, name: &str) -> Result<i64, RecordError> {
        match self.take(name)? {
            Value::Number(n) => n.parse::<i64>().map_err(|_| {
                RecordError::Field(format!(
                    "\"{name}\" must be an integer in the signed 64-bit range"
                ))
            }),
            _ => Err(RecordError::Field(format!("\"{name}\" must be an integer"))),
        }
    }

    fn count(&mut self, name: &str) -> Result<u64, RecordError> {
        match self.take(name)? {
            Value::Number(n) => n.parse::<u64>().map_err(|_| {
                RecordError::Field(format!("\"{name}\" must be a non-negative 64-bit integer"))
            }),
            _ => Err(RecordError::Field(format!("\"{name}\" must be an integer"))),
        }
    }

    fn string(&mut self, name: &str) -> Result<String, RecordError> {
        match self.take(name)? {
            Value::String(s) => Ok(s.into_owned()),
            _ => Err(RecordError::Field(format!("\"{name}\" must be a string"))),
        }
    }

    fn timestamp(&mut self, name: &str) -> Result<Timestamp, RecordError> {
        let s = self.string(name)?;
        Timestamp::parse(&s)
            .map_err(|e| RecordError::Field(format!("\"{name}\" is not a valid timestamp: {e}")))
    }

    fn finish(self, kind: &str) -> Result<(), RecordError> {
        match self.members.first() {
            None => Ok(()),
            Some((k, _)) => Err(RecordError::Field(format!(
                "unknown field {:?} in a {kind} record",
                truncate(k)
            ))),
        }
    }
}

/// Appends a node's canonical line; `properties` must be canonical JSON and `created_at` a [`Timestamp`].
pub(crate) fn write_node_line(
    out: &mut String,
    id: i64,
    kind: &str,
    value: &str,
    properties: &str,
    created_at: &str,
) {
    out.push_str(r#"{"type":"node","id":"#);
    push_int(out, id);
    out.push_str(r#","kind":"#);
    json::write_str(kind, out);
    out.push_str(r#","value":"#);
    json::write_str(value, out);
    out.push_str(r#","properties":"#);
    out.push_str(properties);
    out.push_str(r#","created_at":""#);
    out.push_str(created_at);
    out.push_str("\"}\n");
}

/// Appends an edge's canonical line (`ids` = id, source_id, target_id); same rules as nodes.
pub(crate) fn write_edge_line(
    out: &mut String,
    ids: [i64; 3],
    kind: &str,
    properties: &str,
    created_at: &str,
) {
    out.push_str(r#"{"type":"edge","id":"#);
    push_int(out, ids[0]);
    out.push_str(r#","source_id":"#);
    push_int(out, ids[1]);
    out.push_str(r#","target_id":"#);
    push_int(out, ids[2]);
    out.push_str(r#","kind":"#);
    json::write_str(kind, out);
    out.push_str(r#","properties":"#);
    out.push_str(properties);
    out.push_str(r#","created_at":""#);
    out.push_str(created_at);
    out.push_str("\"}\n");
}

/// At most 40 characters of a name taken from the input, so that errors never carry whole rows.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Appends an integer in decimal (`-` for negatives, no leading zeros).
fn push_int(out: &mut String, n: impl Into<i128>) {
    let n: i128 = n.into();
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 40];
    let mut i = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// Appends `n` as exactly `width` decimal digits (`n` must fit).
fn push_padded(out: &mut String, n: i64, width: u32) {
    for p in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10_i64.pow(p) % 10) as u8));
    }
}

/// A JSON value in canonical encoding (docs/FORMAT.md, 7.5): the `properties` of a node or edge.
///
/// Built only through canonicalisation, so the text is always canonical. With `serde_json` it
/// serializes as the JSON value itself (not as a string) and deserializes from any JSON value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Properties(String);

impl Properties {
    /// Canonicalises a JSON text (for example PostgreSQL's `jsonb` output).
    pub fn from_json(text: &str) -> Result<Properties, json::JsonError> {
        json::canonicalize(text).map(Properties)
    }

    pub(crate) fn from_value(v: &Value<'_>) -> Properties {
        let mut s = String::new();
        json::write_value(v, &mut s);
        Properties(s)
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Properties {
    /// The empty object `{}`, the column default.
    fn default() -> Self {
        Properties("{}".to_string())
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Properties({})", self.0)
    }
}

impl fmt::Display for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Properties::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// A point in time as the export writes it: `YYYY-MM-DDTHH:MM:SS.ffffffZ` — UTC, exactly six fraction
/// digits, years 0001 to 9999 (the range both RFC 3339 and PostgreSQL's `timestamptz` cover).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp(String);

impl Timestamp {
    /// Length of every timestamp, in bytes.
    pub const LEN: usize = 27;

    /// Checks the exact form and that the date and time exist (no leap seconds: PostgreSQL has none).
    pub fn parse(s: &str) -> Result<Timestamp, TimestampError> {
        let b = s.as_bytes();
        if b.len() != Self::LEN {
            return Err(TimestampError(
                "not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ",
            ));
        }
        for (i, &c) in b.iter().enumerate() {
            let ok = match i {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'.',
                26 => c == b'Z',
                _ => c.is_ascii_digit(),
            };
            if !ok {
                return Err(TimestampError(
                    "not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ",
                ));
            }
        }
        let num = |r: std::ops::Range<usize>| {
            b[r].iter()
                .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'))
        };
        let (year, month, day) = (num(0..4), num(5..7), num(8..10));
        let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
        if year == 0 {
            return Err(TimestampError("year 0000 does not exist"));
        }
        if !(1..=12).contains(&month) {
            return Err(TimestampError("month out of range"));
        }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if day == 0 || day > days {
            return Err(TimestampError("day out of range for its month"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(TimestampError("time of day out of range"));
        }
        Ok(Timestamp(s.to_string()))
    }

    /// The timestamp `micros` microseconds after 2000-01-01 00:00:00 UTC: how PostgreSQL sends a
    /// `timestamptz` in binary (`i64::MAX` and `i64::MIN` are its infinities). Proleptic Gregorian
    /// calendar, like PostgreSQL's.
    pub fn from_postgres_micros(micros: i64) -> Result<Timestamp, TimestampError> {
        // 0001-01-01 and 10000-01-01 as microseconds from 2000-01-01.
        const MIN: i64 = -63_082_281_600_000_000;
        const END: i64 = 252_455_616_000_000_000;
        if !(MIN..END).contains(&micros) {
            return Err(TimestampError("infinite or outside years 0001-9999"));
        }
        let secs = micros.div_euclid(1_000_000);
        let fraction = micros.rem_euclid(1_000_000);
        let day_secs = secs.rem_euclid(86_400);
        // Days since 0000-03-01 (Howard Hinnant's civil_from_days); 2000-01-01 is day 730_425.
        let z = secs.div_euclid(86_400) + 730_425;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let mut s = String::with_capacity(Self::LEN);
        for (n, width, then) in [
            (year, 4, '-'),
            (month, 2, '-'),
            (day, 2, 'T'),
            (day_secs / 3_600, 2, ':'),
            (day_secs / 60 % 60, 2, ':'),
            (day_secs % 60, 2, '.'),
            (fraction, 6, 'Z'),
        ] {
            push_padded(&mut s, n, width);
            s.push(then);
        }
        Ok(Timestamp(s))
    }

    /// The text, e.g. `2026-01-01T00:00:01.000137Z`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a text is not a [`Timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimestampError(&'static str);

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            id: 7,
            kind: "domain-name".into(),
            value: "lo\"gin\u{1}\n.пример".into(),
            properties: Properties::from_json(r#"{"tags": ["c2"], "confidence": 0.50}"#)
                .expect("json"),
            created_at: Timestamp::parse("2026-01-01T00:00:01.000137Z").expect("ts"),
        }
    }

    #[test]
    fn lines_have_the_documented_field_order_and_escaping() {
        assert_eq!(
            Record::Node(node()).to_line(),
            "{\"type\":\"node\",\"id\":7,\"kind\":\"domain-name\",\"value\":\"lo\\\"gin\\u0001\\n.пример\",\
             \"properties\":{\"confidence\":0.50,\"tags\":[\"c2\"]},\"created_at\":\"2026-01-01T00:00:01.000137Z\"}\n"
        );
        let edge = Edge {
            id: -3,
            source_id: 7,
            target_id: 9,
            kind: "uses".into(),
            properties: Properties::default(),
            created_at: Timestamp::parse("9999-12-31T23:59:59.999999Z").expect("ts"),
        };
        assert_eq!(
            Record::Edge(edge).to_line(),
            "{\"type\":\"edge\",\"id\":-3,\"source_id\":7,\"target_id\":9,\"kind\":\"uses\",\
             \"properties\":{},\"created_at\":\"9999-12-31T23:59:59.999999Z\"}\n"
        );
        assert_eq!(
            Record::End(End { nodes: 1, edges: 0 }).to_line(),
            "{\"type\":\"end\",\"nodes\":1,\"edges\":0}\n"
        );
    }

    #[test]
    fn serde_json_gives_the_canonical_line_and_reads_it_back() {
        let record = Record::Node(node());
        let json = serde_json::to_string(&record).expect("serialize");
        assert_eq!(format!("{json}\n"), record.to_line());
        assert_eq!(
            serde_json::from_str::<Record>(&json).expect("deserialize"),
            record
        );
        // Any layout is read; properties are canonicalised.
        let loose = r#" { "created_at" : "2026-01-01T00:00:01.000137Z", "properties": {"tags":["c2"],"confidence":5.0e-1},
            "value": "lo\"gin\u0001\n.\u043f\u0440\u0438\u043c\u0435\u0440", "kind":"domain-name", "id": 7, "type": "node" } "#;
        assert_eq!(Record::from_json(loose), Ok(record));
        let node: Node = serde_json::from_str(
            r#"{"id":1,"kind":"k","value":"v","properties":[1.0],"created_at":"2026-01-01T00:00:00.000000Z"}"#,
        )
        .expect("node");
        assert_eq!(node.properties.as_str(), "[1.0]");
    }

    #[test]
    fn records_with_wrong_fields_are_refused() {
        let ts = "\"created_at\":\"2026-01-01T00:00:00.000000Z\"";
        for (text, expected) in [
            ("[]".to_string(), "must be a JSON object"),
            ("{\"id\":1}".to_string(), "missing field \"type\""),
            ("{\"type\":\"vertex\"}".to_string(), "unknown record type"),
            (format!("{{\"type\":\"node\",\"id\":1.5,\"kind\":\"k\",\"value\":\"v\",\"properties\":{{}},{ts}}}"), "signed 64-bit"),
            (format!("{{\"type\":\"node\",\"id\":\"1\",\"kind\":\"k\",\"value\":\"v\",\"properties\":{{}},{ts}}}"), "must be an integer"),
            (format!("{{\"type\":\"node\",\"id\":1,\"kind\":\"k\",\"value\":\"v\",\"properties\":{{}},{ts},\"x\":1}}"), "unknown field \"x\""),
            (format!("{{\"type\":\"node\",\"id\":1,\"id\":2,\"kind\":\"k\",\"value\":\"v\",\"properties\":{{}},{ts}}}"), "appears twice"),
            ("{\"type\":\"node\",\"id\":1,\"kind\":\"k\",\"value\":\"v\",\"properties\":{},\"created_at\":\"2026-02-30T00:00:00.000000Z\"}".to_string(), "day out of range"),
            ("{\"type\":\"end\",\"nodes\":-1,\"edges\":0}".to_string(), "non-negative"),
        ] {
            let err = Record::from_json(&text).expect_err(&text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn postgres_microseconds_become_utc_text() {
        for (micros, text) in [
            (0, "2000-01-01T00:00:00.000000Z"),
            (-1, "1999-12-31T23:59:59.999999Z"),
            (820_540_801_000_137, "2026-01-01T00:00:01.000137Z"),
            (68_169_600_000_000, "2002-02-28T00:00:00.000000Z"),
            (131_328_000_000_000, "2004-02-29T00:00:00.000000Z"),
            (-3_155_673_600_000_000, "1900-01-01T00:00:00.000000Z"),
            (-63_082_281_600_000_000, "0001-01-01T00:00:00.000000Z"),
            (252_455_615_999_999_999, "9999-12-31T23:59:59.999999Z"),
        ] {
            let t = Timestamp::from_postgres_micros(micros).expect(text);
            assert_eq!(t.as_str(), text, "{micros}");
            assert_eq!(Timestamp::parse(text).as_ref(), Ok(&t));
        }
        for out_of_range in [
            i64::MAX,
            i64::MIN,
            -63_082_281_600_000_001,
            252_455_616_000_000_000,
        ] {
            assert!(
                Timestamp::from_postgres_micros(out_of_range).is_err(),
                "{out_of_range}"
            );
        }
    }

    #[test]
    fn timestamps_must_be_exact_and_real() {
        for ok in [
            "0001-01-01T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "2000-02-29T12:00:00.500000Z",
        ] {
            assert!(Timestamp::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.000000+00:00",
            "2026-01-01 00:00:00.000000Z",
            "2026-01-01T00:00:00.000000z",
            "0000-01-01T00:00:00.000000Z",
            "2023-02-29T00:00:00.000000Z",
            "1900-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-04-31T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T23:59:60.000000Z",
            "+2026-01-01T00:00:00.00000Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}
