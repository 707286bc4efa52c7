//! Integration-test harness: a scratch PostgreSQL database per test.
//!
//! Each [`TestDb`] is `ransomeye_intel_test_<random>`, created on the server named by `DATABASE_URL`
//! with `schema/platform.sql` loaded, and dropped when the value is dropped — also when the test
//! panics. Without `DATABASE_URL` every test fails loudly; none passes silently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The superuser URL of a maintenance database; panics with instructions when unset.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: the ransomeye-intel integration tests need a real PostgreSQL. \
             Run `scripts/test` (it starts a sandbox), or \
             export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
        )
    })
}

pub use ransomeye_kernel::config::with_database;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random");
    hex::encode(b)
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// URL to connect to it.
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `ransomeye_intel_test_<random>` and loads `schema/platform.sql` into it.
    pub async fn new() -> TestDb {
        let admin_url = database_url();
        let name = format!("ransomeye_intel_test_{}", random_suffix());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL {admin_url}: {e}"));
        sqlx::raw_sql(AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        // From here on, the database is dropped even if loading the schema fails.
        let db = TestDb {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        };
        let schema = std::fs::read_to_string(repo_root().join("schema/platform.sql"))
            .expect("schema/platform.sql");
        let mut conn = db.connect().await;
        sqlx::raw_sql(AssertSqlSafe(schema))
            .execute(&mut conn)
            .await
            .expect("load schema/platform.sql");
        db
    }

    /// A new connection to this database.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name))
    }

    /// Runs SQL (one or more statements) in this database.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs a query returning one `bigint`.
    pub async fn int(&self, sql: &str) -> i64 {
        let mut conn = self.connect().await;
        sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a query returning one `text`.
    pub async fn text(&self, sql: &str) -> String {
        let mut conn = self.connect().await;
        sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside the test's runtime, which must not be blocked on: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url).await?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut admin)
                .await
                .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
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
