//! `check` against good and broken exports, the vector files of `core/intel/tests/vectors/`, and the
//! worked example of docs/FORMAT.md.

use std::path::{Path, PathBuf};

use super::*;

/// The worked example of docs/FORMAT.md, section 7.11: three nodes, two edges.
const GOOD: &str = concat!(
    r#"{"format":"ransomeye-intel-graph","version":1}"#,
    "\n",
    r#"{"type":"node","id":1,"kind":"domain-name","value":"update-3f2a.example.net","properties":{"confidence":0.90,"source":"misp","tags":["ransomware","初始访问"]},"created_at":"2026-01-01T00:00:01.000137Z"}"#,
    "\n",
    r#"{"type":"node","id":2,"kind":"malware","value":"LockBit \"Black\"","properties":{},"created_at":"2026-01-01T00:00:02.500000Z"}"#,
    "\n",
    r#"{"type":"node","id":5,"kind":"campaign","value":"Opération Fantôme","properties":{"first_seen":"2025-12-24","score":75},"created_at":"2026-01-02T09:30:00.000000Z"}"#,
    "\n",
    r#"{"type":"edge","id":1,"source_id":1,"target_id":2,"kind":"indicates","properties":{"confidence":0.5},"created_at":"2026-01-03T00:00:00.000001Z"}"#,
    "\n",
    r#"{"type":"edge","id":2,"source_id":2,"target_id":5,"kind":"attributed-to","properties":{},"created_at":"2026-01-03T00:00:00.000002Z"}"#,
    "\n",
    r#"{"type":"end","nodes":3,"edges":2}"#,
    "\n",
);

fn lines() -> Vec<String> {
    GOOD.lines().map(|l| format!("{l}\n")).collect()
}

fn join(lines: &[String]) -> Vec<u8> {
    lines.concat().into_bytes()
}

/// `GOOD` with line `n` (1-based) replaced.
fn with_line(n: usize, text: &str) -> Vec<u8> {
    let mut l = lines();
    l[n - 1] = format!("{text}\n");
    join(&l)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Named inputs and the outcome `check` must give: `ok:<sha256>` or the error's message.
fn cases() -> Vec<(&'static str, Vec<u8>, String)> {
    let good = GOOD.as_bytes().to_vec();
    let mut l = lines();
    let mut cases = vec![("good", good.clone(), format!("ok:{}", sha256_hex(&good)))];
    let mut case = |name: &'static str, input: Vec<u8>, outcome: &str| {
        cases.push((name, input, outcome.to_string()));
    };
    case("empty", Vec::new(), "line 1: empty input: expected the header {\"format\":\"ransomeye-intel-graph\",\"version\":1}");
    case(
        "missing-header",
        join(&l[1..]),
        "line 1: not a ransomeye intel graph export: the first line must be {\"format\":\"ransomeye-intel-graph\",\"version\":1}",
    );
    case(
        "unsupported-version",
        with_line(1, r#"{"format":"ransomeye-intel-graph","version":2}"#),
        "line 1: unsupported format version 2 (this build reads version 1)",
    );
    case(
        "header-not-canonical",
        with_line(1, r#"{"version":1,"format":"ransomeye-intel-graph"}"#),
        "line 1: not in canonical encoding: differs from it first at byte column 3 (field order, key order, whitespace, escaping or number form)",
    );
    case(
        "missing-trailing-newline",
        good[..good.len() - 1].to_vec(),
        "line 7: missing trailing newline (the export is truncated)",
    );
    let cut = l[0].len() + l[1].len() + l[2].len() + 40;
    case(
        "truncated-mid-line",
        good[..cut].to_vec(),
        "line 4: missing trailing newline (the export is truncated)",
    );
    case(
        "truncated-at-line-boundary",
        join(&l[..6]),
        "line 7: the export ends without its end record (truncated)",
    );
    case(
        "crlf-line-endings",
        GOOD.replace('\n', "\r\n").into_bytes(),
        "line 1: not in canonical encoding: differs from it first at byte column 47 (field order, key order, whitespace, escaping or number form)",
    );
    case(
        "properties-key-order",
        with_line(2, &l[1].trim_end().replace(
            r#"{"confidence":0.90,"source":"misp","tags":["ransomware","初始访问"]}"#,
            r#"{"source":"misp","confidence":0.90,"tags":["ransomware","初始访问"]}"#,
        )),
        "line 2: not in canonical encoding: differs from it first at byte column 93 (field order, key order, whitespace, escaping or number form)",
    );
    case(
        "number-form",
        with_line(5, &l[4].trim_end().replace("0.5", "5e-1")),
        "line 5: not in canonical encoding: differs from it first at byte column 97 (field order, key order, whitespace, escaping or number form)",
    );
    case(
        "escaped-non-ascii",
        with_line(4, &l[3].trim_end().replace("Opération", "Op\\u00e9ration")),
        "line 4: not in canonical encoding: differs from it first at byte column 52 (field order, key order, whitespace, escaping or number form)",
    );
    case(
        "whitespace",
        with_line(6, &l[5].trim_end().replace(",\"kind\"", ", \"kind\"")),
        "line 6: not in canonical encoding: differs from it first at byte column 51 (field order, key order, whitespace, escaping or number form)",
    );
    case(
        "dangling-edge",
        with_line(
            5,
            &l[4]
                .trim_end()
                .replace("\"target_id\":2", "\"target_id\":9"),
        ),
        "line 5: edge 1 points to missing node 9",
    );
    case(
        "dangling-edge-source",
        with_line(
            6,
            &l[5]
                .trim_end()
                .replace("\"source_id\":2", "\"source_id\":3"),
        ),
        "line 6: edge 2 points to missing node 3",
    );
    case(
        "nodes-unsorted",
        join(&[
            l[0].clone(),
            l[2].clone(),
            l[1].clone(),
            l[3].clone(),
            l[4].clone(),
            l[5].clone(),
            l[6].clone(),
        ]),
        "line 3: node id 1 after node id 2: ids must be strictly increasing",
    );
    case(
        "node-duplicated",
        join(&[
            l[0].clone(),
            l[1].clone(),
            l[2].clone(),
            l[2].clone(),
            l[3].clone(),
            l[4].clone(),
            l[5].clone(),
            l[6].clone(),
        ]),
        "line 4: duplicate node id 2",
    );
    case(
        "edges-unsorted",
        join(&[
            l[0].clone(),
            l[1].clone(),
            l[2].clone(),
            l[3].clone(),
            l[5].clone(),
            l[4].clone(),
            l[6].clone(),
        ]),
        "line 6: edge id 1 after edge id 2: ids must be strictly increasing",
    );
    case(
        "edge-duplicated",
        join(&[
            l[0].clone(),
            l[1].clone(),
            l[2].clone(),
            l[3].clone(),
            l[4].clone(),
            l[4].clone(),
            l[5].clone(),
            l[6].clone(),
        ]),
        "line 6: duplicate edge id 1",
    );
    case(
        "node-after-edges",
        join(&[
            l[0].clone(),
            l[1].clone(),
            l[2].clone(),
            l[4].clone(),
            l[3].clone(),
            l[5].clone(),
            l[6].clone(),
        ]),
        "line 5: node 5 after the edges: all nodes come before the first edge",
    );
    case(
        "end-count-wrong",
        with_line(7, r#"{"type":"end","nodes":3,"edges":3}"#),
        "line 7: end record counts 3 nodes and 3 edges, but the export has 3 and 2",
    );
    l.push(l[6].clone());
    case(
        "data-after-end",
        join(&l),
        "line 8: data after the end record",
    );
    l.pop();
    case(
        "invalid-json",
        with_line(3, r#"{"type":"node","id":2,"kind":"malware""#),
        "line 3: expected ',' or '}' in an object (at byte column 39)",
    );
    case(
        "unknown-record-type",
        with_line(3, r#"{"type":"vertex","id":2}"#),
        "line 3: not a valid record: unknown record type \"vertex\" (expected node, edge or end)",
    );
    case(
        "bad-timestamp",
        with_line(3, &l[2].trim_end().replace("2026-01-01T00:00:02.500000Z", "2026-01-01T00:00:02.5Z")),
        "line 3: not a valid record: \"created_at\" is not a valid timestamp: not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ",
    );
    let mut not_utf8 = lines();
    let mut bytes = join(&not_utf8[..2]);
    let mut bad = not_utf8.remove(2).into_bytes();
    bad[45] = 0xff;
    bytes.extend_from_slice(&bad);
    bytes.extend_from_slice(&join(&not_utf8[2..]));
    case(
        "not-utf8",
        bytes,
        "line 3: not valid UTF-8 (at byte column 46)",
    );
    cases
}

fn outcome(input: &[u8]) -> String {
    match check(input) {
        Ok(d) => format!("ok:{}", d.sha256),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_export_checks_with_the_digest_of_its_bytes() {
    let d = check(GOOD.as_bytes()).expect("good export");
    assert_eq!(
        d,
        GraphDigest {
            nodes: 3,
            edges: 2,
            bytes: GOOD.len() as u64,
            sha256: sha256_hex(GOOD.as_bytes()),
        }
    );
    // An empty graph is header + end record.
    let empty = format!("{HEADER}\n{{\"type\":\"end\",\"nodes\":0,\"edges\":0}}\n");
    assert_eq!(check(empty.as_bytes()).expect("empty graph").nodes, 0);
}

#[test]
fn each_broken_export_names_its_line_and_problem() {
    for (name, input, expected) in cases() {
        assert_eq!(outcome(&input), expected, "case {name}");
        if let Err(e) = check(input.as_slice()) {
            assert!(matches!(e, IntelError::Format { .. }), "{name}: {e:?}");
            let line = e.line().expect("format errors carry their line");
            assert!(
                e.to_string().starts_with(&format!("line {line}: ")),
                "{name}: {e}"
            );
        }
    }
}

#[test]
fn every_record_of_the_good_export_is_its_own_canonical_line() {
    for line in lines().iter().skip(1) {
        let record = Record::from_json(line).expect("record");
        assert_eq!(&record.to_line(), line);
    }
}

#[test]
fn io_errors_are_reported_as_io() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let err = check(std::io::BufReader::new(Failing)).expect_err("must fail");
    assert!(matches!(err, IntelError::Io { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "I/O error while reading the export: disk on fire"
    );
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The files in tests/vectors are `cases()` written out, with `expected.txt` listing each file's
/// outcome, for implementations in other languages. Regenerate (only when the format deliberately
/// changes) with `RANSOMEYE_REGEN_VECTORS=1 cargo test -p ransomeye-intel --lib vector`.
#[test]
fn vector_files_have_their_expected_outcomes() {
    let dir = vectors_dir();
    if std::env::var_os("RANSOMEYE_REGEN_VECTORS").is_some() {
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut expected = String::new();
        for (name, input, outcome) in cases() {
            std::fs::write(dir.join(format!("{name}.jsonl")), input).expect("write vector");
            expected.push_str(&format!("{name}.jsonl\t{outcome}\n"));
        }
        std::fs::write(dir.join("expected.txt"), expected).expect("write expected.txt");
    }
    let expected =
        std::fs::read_to_string(dir.join("expected.txt")).expect("tests/vectors/expected.txt");
    let mut seen = 0;
    for entry in expected.lines() {
        let (file, want) = entry.split_once('\t').expect("<file>\\t<outcome>");
        let input = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(outcome(&input), want, "{file}");
        seen += 1;
    }
    assert_eq!(seen, cases().len(), "expected.txt lists every case");
}

#[test]
fn format_doc_example_checks_with_its_stated_digest() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/FORMAT.md"))
            .expect("docs/FORMAT.md");
    let start = doc
        .find("```intel-export\n")
        .expect("an ```intel-export block in docs/FORMAT.md")
        + 16;
    let len = doc[start..].find("```\n").expect("end of the block");
    let example = &doc[start..start + len];
    assert_eq!(
        example, GOOD,
        "the example in docs/FORMAT.md is the one these tests use"
    );
    let marker = "SHA-256 of the example: `";
    let at = doc.find(marker).expect("the example's stated digest") + marker.len();
    let stated = &doc[at..at + 64];
    let d = check(example.as_bytes()).expect("the documented example is valid");
    assert_eq!(d.sha256, stated);
    assert!(
        doc.contains(&format!("{} bytes", d.bytes)),
        "the document states the size"
    );
}
