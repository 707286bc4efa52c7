//! Export, digest, check and import against a real PostgreSQL (`DATABASE_URL`), one scratch database
//! per test.

use std::path::Path;
use std::process::Command;

use ransomeye_intel::{
    check, digest, export, import, GraphDigest, IntelError, Problem, RecordKind,
};
use ransomeye_testkit::{repo_root, TestDb};
use sqlx::{Connection, PgConnection};

/// The graph of the worked example in docs/FORMAT.md, written with other key orders, number forms,
/// escapes, time zones and row order than the export uses.
const EXAMPLE_SQL: &str = r#"
insert into intel_nodes (id, kind, value, properties, created_at) values
  (5, 'campaign', 'Opération Fantôme', '{"score": 7.5e1, "first_seen": "2025-12-24"}', '2026-01-02 10:30:00+01'),
  (1, 'domain-name', 'update-3f2a.example.net',
      '{"tags": ["ransomware", "\u521d\u59cb\u8bbf\u95ee"], "source": "misp", "confidence": 0.90}',
      '2026-01-01 00:00:01.000137+00'),
  (2, 'malware', 'LockBit "Black"', '{}', '2025-12-31 19:00:02.5-05');
insert into intel_edges (id, source_id, target_id, kind, properties, created_at) values
  (2, 2, 5, 'attributed-to', '{}', '2026-01-03 00:00:00.000002+00'),
  (1, 1, 2, 'indicates', '{"confidence": 5e-1}', '2026-01-02 19:00:00.000001-05');
"#;

fn vector(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn export_bytes(conn: &mut PgConnection) -> (Vec<u8>, GraphDigest) {
    let mut out = Vec::new();
    let d = export(conn, &mut out).await.expect("export");
    (out, d)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[tokio::test]
async fn export_of_the_format_example_is_byte_exact_and_checks_with_the_same_digest() {
    let db = TestDb::new();
    db.execute(EXAMPLE_SQL);
    let mut conn = db.connect().await;
    let (bytes, d) = export_bytes(&mut conn).await;
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&vector("good.jsonl"))
    );
    assert_eq!(
        d,
        GraphDigest {
            nodes: 3,
            edges: 2,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        }
    );
    assert_eq!(check(bytes.as_slice()).expect("check"), d);
    assert_eq!(digest(&mut conn).await.expect("digest"), d);
}

#[tokio::test]
async fn a_larger_graph_exports_checks_and_digests_alike() {
    let db = TestDb::new();
    db.execute(&graph_sql(3_000, 9_000));
    let mut conn = db.connect().await;
    let (bytes, d) = export_bytes(&mut conn).await;
    assert_eq!((d.nodes, d.edges), (3_000, 9_000));
    assert_eq!(d.sha256, sha256_hex(&bytes));
    assert_eq!(check(bytes.as_slice()).expect("check"), d);
    assert_eq!(digest(&mut conn).await.expect("digest"), d);
}

#[tokio::test]
async fn import_into_an_empty_database_reproduces_the_export_and_moves_the_sequences() {
    let source = TestDb::new();
    source.execute(&graph_sql(2_000, 6_000));
    let (bytes, d) = export_bytes(&mut source.connect().await).await;

    let target = TestDb::new();
    let mut conn = target.connect().await;
    let imported = import(&mut conn, bytes.as_slice()).await.expect("import");
    assert_eq!(imported, d);
    let (again, d2) = export_bytes(&mut conn).await;
    assert_eq!(d2, d);
    assert!(again == bytes, "re-export differs from the imported export");
    // The next generated ids follow the imported ones.
    assert_eq!(
        target.int("insert into intel_nodes (kind, value) values ('host', 'new') returning id"),
        2_001
    );
    assert_eq!(
        target
            .int("insert into intel_edges (source_id, target_id, kind) values (1, 2, 'uses') returning id"),
        6_001
    );
}

#[tokio::test]
async fn import_refuses_tables_that_are_not_empty_and_changes_nothing() {
    let source = TestDb::new();
    source.execute(EXAMPLE_SQL);
    let (bytes, _) = export_bytes(&mut source.connect().await).await;

    let target = TestDb::new();
    target.execute("insert into intel_nodes (id, kind, value) values (42, 'host', 'already here')");
    let err = import(&mut target.connect().await, bytes.as_slice())
        .await
        .expect_err("non-empty tables must be refused");
    assert!(
        matches!(
            err,
            IntelError::NotEmpty {
                table: "intel_nodes"
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "intel_nodes is not empty: import only fills empty intel tables"
    );
    assert_eq!(
        target.text("select string_agg(id || ':' || value, ',') from intel_nodes"),
        "42:already here"
    );
    assert_eq!(target.int("select count(*) from intel_edges"), 0);
}

#[tokio::test]
async fn import_of_a_broken_export_imports_nothing_not_even_the_nodes_before_the_problem() {
    let source = TestDb::new();
    source.execute(&graph_sql(500, 1_500));
    let (bytes, _) = export_bytes(&mut source.connect().await).await;
    let text = String::from_utf8(bytes).expect("utf-8");
    let mut lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
    // Line 1 is the header, lines 2..=501 the nodes, 502.. the edges: break the 1000th edge.
    let n = 501 + 1_000;
    let broken = lines[n - 1].replacen("\"target_id\":", "\"target_id\":9999", 1);
    assert_ne!(broken, lines[n - 1]);
    lines[n - 1] = broken;
    let dangling = lines.concat();
    // And a copy cut at a line boundary before the end record.
    let truncated = text[..text.len() - text.lines().last().expect("end").len() - 1].to_string();

    let target = TestDb::new();
    let mut conn = target.connect().await;
    let err = import(&mut conn, dangling.as_bytes())
        .await
        .expect_err("dangling edge");
    match &err {
        IntelError::Format {
            line,
            problem: Problem::DanglingEdge { edge: 1_000, .. },
        } => assert_eq!(*line, n as u64),
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with(&format!("line {n}: edge 1000 points to missing node 9999")));

    let err = import(&mut conn, truncated.as_bytes())
        .await
        .expect_err("truncated");
    assert!(
        matches!(
            err,
            IntelError::Format {
                problem: Problem::MissingEnd,
                ..
            }
        ),
        "{err:?}"
    );

    assert_eq!(target.int("select count(*) from intel_nodes"), 0);
    assert_eq!(target.int("select count(*) from intel_edges"), 0);
    // The connection is still usable, and a good import still works after the failed ones.
    let good = import(&mut conn, text.as_bytes())
        .await
        .expect("good import");
    assert_eq!((good.nodes, good.edges), (500, 1_500));
}

#[tokio::test]
async fn export_does_not_depend_on_session_settings() {
    let db = TestDb::new();
    db.execute(&graph_sql(300, 900));
    let mut conn = db.connect().await;
    let (reference, _) = export_bytes(&mut conn).await;
    for settings in [
        "set time zone 'America/St_Johns'; set datestyle = 'SQL, DMY'",
        "set time zone 'Asia/Kathmandu'; set datestyle = 'German'; set intervalstyle = 'sql_standard'",
        "set time zone 'Pacific/Chatham'; set extra_float_digits = -15; set datestyle = 'Postgres, MDY'",
        "set time zone 'Etc/GMT+12'; set lc_monetary = 'C'; set bytea_output = 'escape'",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(settings))
            .execute(&mut conn)
            .await
            .expect(settings);
        // The settings took: the session really renders times differently now.
        let shown: String = sqlx::query_scalar("select timestamptz '2026-01-01 00:00:00+00'::text")
            .fetch_one(&mut conn)
            .await
            .expect("query");
        assert_ne!(shown, "2026-01-01 00:00:00+00", "{settings}");
        let (bytes, _) = export_bytes(&mut conn).await;
        assert!(bytes == reference, "export differs under: {settings}");
    }
}

#[tokio::test]
async fn export_does_not_depend_on_insertion_or_physical_order() {
    let graph = graph_sql(400, 1_200);
    // Same rows, inserted newest first and in hash order, then rewritten in place (new tuple positions).
    let reordered = graph
        .replace(
            "from generate_series(1, 400) as g (i);",
            "from generate_series(1, 400) as g (i) order by i desc;",
        )
        .replace(
            "from generate_series(1, 1200) as g (i);",
            "from generate_series(1, 1200) as g (i) order by md5(i::text);",
        );
    assert_eq!(reordered.matches("order by").count(), 2);
    let ascending = TestDb::new();
    ascending.execute(&graph);
    let shuffled = TestDb::new();
    shuffled.execute(&reordered);
    shuffled.execute(
        "update intel_nodes set value = value where id % 3 = 0; \
             update intel_edges set kind = kind where id % 2 = 0",
    );
    let physical = "select string_agg(id::text, ',') from (select id from intel_nodes limit 20) s";
    assert_ne!(
        ascending.text(physical),
        shuffled.text(physical),
        "the two databases store their rows in different orders"
    );
    let a = export_bytes(&mut ascending.connect().await).await;
    let b = export_bytes(&mut shuffled.connect().await).await;
    assert_eq!(a.1, b.1);
    assert!(a.0 == b.0);
}

#[tokio::test]
async fn repeatable_read_export_does_not_see_rows_committed_after_its_snapshot() {
    let db = TestDb::new();
    db.execute(&graph_sql(200, 600));
    let mut writer = db.connect().await;
    let before = digest(&mut writer).await.expect("digest");

    let mut conn = db.connect().await;
    let mut tx = conn
        .begin_with("begin isolation level repeatable read")
        .await
        .expect("begin");
    // The snapshot is taken by the transaction's first statement.
    sqlx::query("select count(*) from intel_nodes")
        .execute(&mut *tx)
        .await
        .expect("snapshot");
    sqlx::raw_sql(
        "insert into intel_nodes (id, kind, value) values (100000, 'host', 'late'); \
         insert into intel_edges (id, source_id, target_id, kind) values (100000, 100000, 1, 'uses')",
    )
    .execute(&mut writer)
    .await
    .expect("concurrent insert");

    let mut out = Vec::new();
    let seen = export(&mut tx, &mut out).await.expect("export in snapshot");
    assert_eq!(seen, before);
    assert!(!String::from_utf8_lossy(&out).contains("\"id\":100000"));
    tx.commit().await.expect("commit");

    let after = digest(&mut conn).await.expect("digest");
    assert_eq!((after.nodes, after.edges), (201, 601));
    assert_ne!(after.sha256, before.sha256);
}

#[tokio::test]
async fn export_refuses_a_read_committed_transaction_before_writing_anything() {
    let db = TestDb::new();
    db.execute(EXAMPLE_SQL);
    let mut conn = db.connect().await;
    let mut tx = conn.begin().await.expect("begin");
    let mut out = Vec::new();
    let err = export(&mut tx, &mut out)
        .await
        .expect_err("read committed must be refused");
    assert!(
        matches!(&err, IntelError::Snapshot { isolation } if isolation == "read committed"),
        "{err:?}"
    );
    assert!(out.is_empty());
}

#[tokio::test]
async fn numbers_and_strings_survive_export_and_import_exactly() {
    let source = TestDb::new();
    source
        .execute(
            r#"insert into intel_nodes (id, kind, value, properties, created_at) values
               (1, 'k', E'tab\there \\ "q" \u2028 \U0001F98A',
                '{"big": 123456789012345678901234567890.123456789, "tiny": 1e-20, "trail": 1.500,
                  "neg0": -0.0, "exp": 1.5E+3, "f64": 0.1000000000000000055511151231257827,
                  "s": "tab\t \u00e9 \ud83e\udd8a \" \\ \/ \u001f", "deep": [[[{"b": [], "a": {}}]]]}',
                '2026-01-01 00:00:00+00')"#,
        );
    let (bytes, d) = export_bytes(&mut source.connect().await).await;
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    for expected in [
        r#""big":123456789012345678901234567890.123456789"#,
        r#""tiny":0.00000000000000000001"#,
        r#""trail":1.500"#,
        r#""neg0":0.0"#,
        r#""exp":1500"#,
        r#""f64":0.1000000000000000055511151231257827"#,
        r#""s":"tab\t é 🦊 \" \\ / \u001f""#,
        r#""deep":[[[{"a":{},"b":[]}]]]"#,
        r#""value":"tab\there \\ \"q\" "#,
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    let target = TestDb::new();
    assert_eq!(
        import(&mut target.connect().await, bytes.as_slice())
            .await
            .expect("import"),
        d
    );
    let q = "select value || ' ' || properties::text from intel_nodes";
    assert_eq!(source.text(q), target.text(q));
}

#[tokio::test]
async fn properties_canonicalise_like_postgresql_jsonb_then_sorted() {
    let db = TestDb::new();
    let mut conn = db.connect().await;
    for input in [
        r#"{"b": 1, "a": 2, "b": 3}"#,
        r#"{"aa": 1, "b": 2, "é": 3, "z": 4, "A": 5, "": 6}"#,
        r#"[1e2, 1.50e1, -0, -0.00, 0e5, 1E-2, 12.340e1, 100e-2, -1.23e-5, 5e-0]"#,
        r#""\u00e9\u0041\/\b\f\n\r\t\u001f\u007f\u2028\ud83e\udd8a""#,
        r#"{"n": null, "t": true, "f": false, "o": {"y": [{}, []], "x": "\""}}"#,
        "  {\"ws\" :\t[ 1 ,\n2 ] }  ",
        "1e1000",
        "-1e-1000",
    ] {
        let via_postgres: String = sqlx::query_scalar("select $1::jsonb::text")
            .bind(input)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        let ours = ransomeye_intel::Properties::from_json(input).expect(input);
        let theirs = ransomeye_intel::Properties::from_json(&via_postgres).expect("jsonb output");
        assert_eq!(ours, theirs, "{input} (PostgreSQL: {via_postgres})");
    }
}

#[tokio::test]
async fn rows_the_format_cannot_hold_fail_the_export_naming_the_row() {
    for (when, id) in [
        ("infinity", 7),
        ("10000-01-01 00:00:00+00", 8),
        ("0044-03-15 00:00:00+00 BC", 9),
    ] {
        let db = TestDb::new();
        db.execute(&format!(
            "insert into intel_nodes (id, kind, value, created_at) values (1, 'k', 'v', now()), ({id}, 'k', 'v', '{when}')"
        ));
        let err = digest(&mut db.connect().await).await.expect_err(when);
        assert!(
            matches!(err, IntelError::Unexportable { record: RecordKind::Node, id: got, .. } if got == id),
            "{when}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "node {id} cannot be exported: created_at is infinite or outside years 0001-9999"
            )
        );
    }
}

#[tokio::test]
async fn seed_script_is_deterministic_keeps_the_schema_and_resets_the_sequences() {
    let script = repo_root().join("scripts/sql/seed-intel.sql");
    let schema_objects = "select string_agg(conname, ',' order by conname) from pg_constraint \
                          where conrelid = 'intel_edges'::regclass";
    let indexes = "select string_agg(indexdef, ',' order by indexdef) from pg_indexes where tablename = 'intel_edges'";
    let mut digests = Vec::new();
    for _ in 0..2 {
        let db = TestDb::new();
        let constraints_before = db.text(schema_objects);
        let indexes_before = db.text(indexes);
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "nodes=2000", "-v", "edges=6000", "-f"])
            .arg(&script)
            .arg(&db.url)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run psql (needed for this test; install the PostgreSQL client): {e}")
            });
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(db.text(schema_objects), constraints_before);
        assert_eq!(db.text(indexes), indexes_before);
        assert_eq!(
            db.int("insert into intel_nodes (kind, value) values ('host', 'n') returning id"),
            2_001
        );
        db.execute("delete from intel_nodes where id = 2001");
        let mut conn = db.connect().await;
        let (bytes, d) = export_bytes(&mut conn).await;
        assert_eq!((d.nodes, d.edges), (2_000, 6_000));
        assert_eq!(check(bytes.as_slice()).expect("seeded graph checks"), d);
        assert!(String::from_utf8_lossy(&bytes).contains("🦊"));
        digests.push(d);
    }
    assert_eq!(digests[0], digests[1]);
}

#[tokio::test]
async fn timestamps_render_like_postgresql_to_char_in_utc_across_the_calendar() {
    let db = TestDb::new();
    db.execute(
        "insert into intel_nodes (id, kind, value, created_at)
         select i, 't', 'v', to_timestamp(-62135596800 + i * 12345.678901 * 1000 + (i % 7) * 0.000001)
         from generate_series(0, 24000) as g (i);
         insert into intel_nodes (id, kind, value, created_at) values
           (100001, 't', 'v', '2000-02-29 23:59:59.999999+00'), (100002, 't', 'v', '1900-03-01 00:00:00+00'),
           (100003, 't', 'v', '1600-02-29 12:00:00+00'), (100004, 't', 'v', '0004-02-29 00:00:00+00'),
           (100005, 't', 'v', '9999-12-31 23:59:59.999999+00'), (100006, 't', 'v', '0001-01-01 00:00:00+00'),
           (100007, 't', 'v', '1999-12-31 23:59:59.999999+00'), (100008, 't', 'v', '1969-12-31 23:59:59.5+00')",
    );
    let mut conn = db.connect().await;
    let (bytes, d) = export_bytes(&mut conn).await;
    assert_eq!(d.nodes, 24_009);
    let expected: Vec<(i64, String)> = sqlx::query_as(
        "select id, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
         from intel_nodes order by id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("to_char");
    let text = String::from_utf8(bytes).expect("utf-8");
    let mut compared = 0;
    for (line, (id, want)) in text.lines().skip(1).zip(&expected) {
        match ransomeye_intel::Record::from_json(line).expect("record") {
            ransomeye_intel::Record::Node(n) => {
                assert_eq!((n.id, n.created_at.as_str()), (*id, want.as_str()));
                compared += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(compared, expected.len());
}

/// Inserts a synthetic graph of `nodes` nodes and `edges` edges (ids 1..=n, every edge between
/// existing nodes) with varied properties: nested objects, arrays, non-ASCII, escapes, decimals with
/// trailing zeros, large numbers.
pub fn graph_sql(nodes: i64, edges: i64) -> String {
    format!(
        r#"
insert into intel_nodes (id, kind, value, properties, created_at)
select i,
       (array['ipv4-addr', 'domain-name', 'file-sha256', 'campaign', 'malware', 'host'])[1 + i % 6],
       case when i % 9 = 0 then 'Opération «Fantôme» ' || i || E'\t"quoted"\\' else 'value-' || i end,
       jsonb_build_object('confidence', round((i % 101) / 100.0, 2), 'source', 'feed-' || (i % 7),
                          'tags', jsonb_build_array('ransomware', '初始访问', i % 3),
                          'nested', jsonb_build_object('z', i, 'a', null, 'é', true, 'big', 12345678901234567890.50))
         || case when i % 5 = 0 then jsonb_build_object('note', E'line\nbreak \u2028 \U0001F98A') else '{{}}' end,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1.000001 seconds'
from generate_series(1, {nodes}) as g (i);
insert into intel_edges (id, source_id, target_id, kind, properties, created_at)
select i, 1 + (i::bigint * 7919) % {nodes}, 1 + (i::bigint * 104729) % {nodes},
       (array['indicates', 'uses', 'attributed-to', 'communicates-with'])[1 + i % 4],
       jsonb_build_object('weight', i % 10, 'ratio', -(i % 13) / 8.0),
       timestamptz '2026-02-01 00:00:00+00' + i * interval '0.25 seconds'
from generate_series(1, {edges}) as g (i);
"#
    )
}
