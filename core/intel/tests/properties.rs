//! Property tests of the intel graph's parsers of outside input: JSON properties, records,
//! timestamps and whole exports (what `restore` and `verify` read back from a backup).
//!
//! Never a panic, whatever the text; canonical output is a fixed point that `serde_json` reads;
//! every record and every export this crate can write reads back as written.

#[path = "../../kernel/tests/support/inputs.rs"]
mod inputs;

use proptest::prelude::*;
use ransomeye_intel::json::MAX_DEPTH;
use ransomeye_intel::{check, Edge, End, Node, Properties, Record, Timestamp, HEADER};

/// Whitespace JSON allows between tokens.
fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("\n\t "), 1 => Just("\r\n")]
}

/// A string without NUL (PostgreSQL text cannot hold it, so the parser refuses `\u0000`).
fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.replace('\0', ""))
}

/// `s` as a JSON string literal, either as `serde_json` writes it or with every character
/// outside printable ASCII as a `\u` escape (UTF-16 surrogate pairs above U+FFFF).
fn json_string() -> impl Strategy<Value = String> {
    (text(), any::<bool>()).prop_map(|(s, escape_all)| {
        if !escape_all {
            return serde_json::to_string(&s).expect("a string serialises");
        }
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ' '..='~' => out.push(c),
                _ => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04X}"));
                    }
                }
            }
        }
        out.push('"');
        out
    })
}

/// A JSON number in any of the spellings RFC 8259 allows.
fn json_number() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        "0|[1-9][0-9]{0,24}",
        proptest::option::of("[0-9]{1,12}"),
        proptest::option::of(("[eE]", "[+-]?", "[0-9]{1,3}")),
    )
        .prop_map(|(negative, int, frac, exp)| {
            let mut n = String::new();
            if negative {
                n.push('-');
            }
            n.push_str(&int);
            if let Some(f) = frac {
                n.push('.');
                n.push_str(&f);
            }
            if let Some((e, sign, digits)) = exp {
                n.push_str(&format!("{e}{sign}{digits}"));
            }
            n
        })
}

/// Valid JSON text in varied layouts: any nesting, repeated object keys, escapes, whitespace.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        json_number(),
        json_string(),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let item = move || (ws(), inner.clone(), ws()).prop_map(|(a, v, b)| format!("{a}{v}{b}"));
        // Keys from a small set as often as not, so that repeated keys occur.
        let key = prop_oneof![
            prop_oneof![Just("\"a\""), Just("\"b\""), Just("\"\\u0061\"")].prop_map(str::to_string),
            json_string(),
        ];
        prop_oneof![
            proptest::collection::vec(item(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            proptest::collection::vec((key, ws(), item()), 0..6).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, w, v)| format!("{k}{w}:{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// Arrays nested `depth` deep: accepted up to [`MAX_DEPTH`], refused (not a stack overflow) beyond.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // 0001-01-01 to 9999-12-31, as microseconds from 2000-01-01 (PostgreSQL's binary form).
    (-63_082_281_600_000_000i64..252_455_616_000_000_000)
        .prop_map(|m| Timestamp::from_postgres_micros(m).expect("in range"))
}

fn properties() -> impl Strategy<Value = Properties> {
    json_text().prop_map(|t| Properties::from_json(&t).expect("generated JSON is valid"))
}

fn node(id: i64) -> impl Strategy<Value = Node> {
    (text(), text(), properties(), timestamp()).prop_map(
        move |(kind, value, properties, created_at)| Node {
            id,
            kind,
            value,
            properties,
            created_at,
        },
    )
}

fn edge(ids: [i64; 3]) -> impl Strategy<Value = Edge> {
    (text(), properties(), timestamp()).prop_map(move |(kind, properties, created_at)| Edge {
        id: ids[0],
        source_id: ids[1],
        target_id: ids[2],
        kind,
        properties,
        created_at,
    })
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        any::<i64>().prop_flat_map(node).prop_map(Record::Node),
        any::<[i64; 3]>().prop_flat_map(edge).prop_map(Record::Edge),
        any::<(u64, u64)>().prop_map(|(nodes, edges)| Record::End(End { nodes, edges })),
    ]
}

/// A complete canonical export: nodes by increasing id, then edges by increasing id between
/// those nodes, then the end record.
fn export() -> impl Strategy<Value = (Vec<u8>, u64, u64)> {
    (
        proptest::collection::btree_set(any::<i64>(), 0..5),
        proptest::collection::btree_set(any::<i64>(), 0..5),
    )
        .prop_flat_map(|(node_ids, edge_ids)| {
            let node_ids: Vec<i64> = node_ids.into_iter().collect();
            let nodes: Vec<_> = node_ids.iter().map(|&id| node(id)).collect();
            let edge_ids: Vec<i64> = if node_ids.is_empty() {
                Vec::new()
            } else {
                edge_ids.into_iter().collect()
            };
            let edges: Vec<_> = edge_ids
                .iter()
                .map(|&id| {
                    let ends = (any::<prop::sample::Index>(), any::<prop::sample::Index>());
                    let node_ids = node_ids.clone();
                    ends.prop_flat_map(move |(s, t)| {
                        edge([id, *s.get(&node_ids), *t.get(&node_ids)])
                    })
                })
                .collect();
            (nodes, edges)
        })
        .prop_map(|(nodes, edges)| {
            let mut out = format!("{HEADER}\n");
            let end = End {
                nodes: nodes.len() as u64,
                edges: edges.len() as u64,
            };
            for n in nodes {
                Record::Node(n).write_line(&mut out);
            }
            for e in edges {
                Record::Edge(e).write_line(&mut out);
            }
            Record::End(end).write_line(&mut out);
            (out.into_bytes(), end.nodes, end.edges)
        })
}

/// Whether `serde_json` reads `text` as JSON. It checks syntax only (`IgnoredAny`): its `f64`
/// numbers cannot hold every `numeric`, and its recursion limit stops short of [`MAX_DEPTH`], so
/// texts with that many brackets (a bound on their depth) are left out.
fn serde_json_reads(text: &str) -> bool {
    let depth = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    depth >= MAX_DEPTH || serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

proptest! {
    #![proptest_config(inputs::config())]

    #[test]
    fn valid_json_canonicalises_to_a_fixed_point_serde_json_reads(t in json_text()) {
        let canonical = Properties::from_json(&t);
        prop_assert!(canonical.is_ok(), "{:?}: {:?}", t, canonical);
        let canonical = canonical.expect("checked");
        prop_assert_eq!(Properties::from_json(canonical.as_str()), Ok(canonical.clone()));
        prop_assert!(serde_json_reads(canonical.as_str()), "{:?}", canonical);
    }

    #[test]
    fn any_json_text_is_canonicalised_or_refused_inside_it(
        t in prop_oneof![
            inputs::hostile_text(json_text()),
            (0..2 * MAX_DEPTH).prop_map(nested),
        ],
    ) {
        match Properties::from_json(&t) {
            Ok(canonical) => {
                prop_assert!(serde_json_reads(canonical.as_str()), "{:?}", canonical);
                prop_assert_eq!(Properties::from_json(canonical.as_str()), Ok(canonical.clone()));
            }
            Err(e) => prop_assert!(e.offset <= t.len(), "{} is past the end of {:?}", e, t),
        }
    }

    #[test]
    fn nesting_is_accepted_exactly_up_to_the_limit(depth in 1..2 * MAX_DEPTH) {
        prop_assert_eq!(Properties::from_json(&nested(depth)).is_ok(), depth <= MAX_DEPTH);
    }

    #[test]
    fn records_round_trip_through_their_line(r in record()) {
        let line = r.to_line();
        prop_assert_eq!(Record::from_json(&line), Ok(r.clone()));
        prop_assert_eq!(serde_json::from_str::<Record>(&line).ok(), Some(r));
    }

    #[test]
    fn any_record_text_is_read_or_refused_and_reads_back_the_same(
        t in inputs::hostile_text(record().prop_map(|r| r.to_line())),
    ) {
        if let Ok(r) = Record::from_json(&t) {
            prop_assert_eq!(Record::from_json(&r.to_line()), Ok(r));
        }
    }

    #[test]
    fn timestamps_read_back_and_any_text_is_checked(
        t in timestamp(),
        s in inputs::hostile_text(timestamp().prop_map(|t| t.as_str().to_string())),
    ) {
        prop_assert_eq!(Timestamp::parse(t.as_str()), Ok(t));
        if let Ok(parsed) = Timestamp::parse(&s) {
            prop_assert_eq!(parsed.as_str(), s.as_str());
            prop_assert_eq!(s.len(), Timestamp::LEN);
        }
    }

    #[test]
    fn exports_check_with_the_digest_of_their_bytes((bytes, nodes, edges) in export()) {
        let digest = check(&bytes[..]);
        prop_assert!(digest.is_ok(), "{:?}", digest);
        let digest = digest.expect("checked");
        prop_assert_eq!((digest.nodes, digest.edges), (nodes, edges));
        prop_assert_eq!(digest.bytes, bytes.len() as u64);
        prop_assert_eq!(digest.sha256, sha256_hex(&bytes));
    }

    #[test]
    fn any_export_bytes_check_or_are_refused(
        bytes in inputs::hostile_bytes(export().prop_map(|(b, _, _)| b)),
    ) {
        // A change can make another valid export (an edited string): then it is that one's digest.
        if let Ok(digest) = check(&bytes[..]) {
            prop_assert_eq!(digest.bytes, bytes.len() as u64);
            prop_assert_eq!(digest.sha256, sha256_hex(&bytes));
        }
    }
}
