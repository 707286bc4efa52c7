//! [`TestDb`]: a PostgreSQL database of its own for each test.
//!
//! Each is `ransomeye_test_<random>` on the server named by `DATABASE_URL`, copied from a
//! template that holds `schema/platform.sql` (built once per schema version, by whichever test
//! gets there first), so tests run in parallel and never see each other's rows. It is dropped
//! when the value is dropped, also when the test panics.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::runtime::block_on_anywhere;
use crate::services::{database_url, repo_root};

pub use ransomeye_kernel::config::with_database;

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// URL to connect to it.
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `ransomeye_test_<random>` from the schema template.
    // No `Default`: creating a database on a server is not a default value.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TestDb {
        let admin_url = database_url();
        let schema = platform_schema();
        let digest = ring::digest::digest(&ring::digest::SHA256, schema.as_bytes());
        let template = format!("ransomeye_tpl_{}", &hex::encode(digest.as_ref())[..12]);
        // One process creates the template; the others wait on this lock, then copy it.
        let lock_key = i64::from_be_bytes(digest.as_ref()[..8].try_into().expect("8 bytes"));
        block_on_anywhere(async {
            let mut admin = connect_admin(&admin_url).await;
            sqlx::query("select pg_advisory_lock($1)")
                .bind(lock_key)
                .execute(&mut admin)
                .await
                .expect("lock");
            let exists: bool =
                sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
                    .bind(&template)
                    .fetch_one(&mut admin)
                    .await
                    .expect("query");
            if !exists {
                build_template(&mut admin, &admin_url, &template, &schema).await;
            }
            let db = TestDb::create(&mut admin, &admin_url, &template).await;
            sqlx::query("select pg_advisory_unlock($1)")
                .bind(lock_key)
                .execute(&mut admin)
                .await
                .expect("unlock");
            db
        })
    }

    /// Creates an empty `ransomeye_test_<random>` (from template0: no tables at all).
    pub fn empty() -> TestDb {
        let admin_url = database_url();
        block_on_anywhere(async {
            TestDb::create(
                &mut connect_admin(&admin_url).await,
                &admin_url,
                "template0",
            )
            .await
        })
    }

    /// Creates `ransomeye_test_<random>` as a copy of `template`.
    async fn create(admin: &mut PgConnection, admin_url: &str, template: &str) -> TestDb {
        let name = format!("ransomeye_test_{}", random_hex(6));
        sqlx::raw_sql(AssertSqlSafe(format!(
            "create database {name} template {template}"
        )))
        .execute(admin)
        .await
        .unwrap_or_else(|e| panic!("create test database {name} from {template}: {e}"));
        TestDb {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_string(),
        }
    }

    /// A new connection to this database.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.name))
    }

    /// Runs SQL (one or more statements) in this database.
    pub fn execute(&self, sql: &str) {
        block_on_anywhere(async {
            sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                .execute(&mut self.connect().await)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// Runs a query returning one text value (use `::text` casts).
    pub fn text(&self, sql: &str) -> String {
        self.scalar(sql)
    }

    /// Runs a query returning one integer (use `::int8` casts).
    pub fn int(&self, sql: &str) -> i64 {
        self.scalar(sql)
    }

    /// Names of the databases on the server that start with `prefix`, sorted.
    pub fn databases(&self, prefix: &str) -> Vec<String> {
        databases_via(prefix, |sql| self.text(sql))
    }

    /// Runs a query returning one value of type `T`.
    fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        block_on_anywhere(async {
            sqlx::query_scalar::<_, T>(AssertSqlSafe(sql.to_string()))
                .fetch_one(&mut self.connect().await)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let dropped = block_on_anywhere(async {
            let mut admin = PgConnection::connect(&self.admin_url).await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "drop database if exists {} with (force)",
                self.name
            )))
            .execute(&mut admin)
            .await
            .map(|_| ())
        });
        if let Err(e) = dropped {
            if !std::thread::panicking() {
                panic!("could not drop test database {}: {e}", self.name);
            }
        }
    }
}

/// Loads `schema` into a new database and renames it to `template` once complete, so a
/// half-built template is never copied.
async fn build_template(admin: &mut PgConnection, admin_url: &str, template: &str, schema: &str) {
    let building = format!("{template}_build");
    sqlx::raw_sql(AssertSqlSafe(format!("drop database if exists {building}")))
        .execute(&mut *admin)
        .await
        .expect("drop");
    sqlx::raw_sql(AssertSqlSafe(format!("create database {building}")))
        .execute(&mut *admin)
        .await
        .expect("create template");
    let mut conn = PgConnection::connect(&with_database(admin_url, &building))
        .await
        .expect("connect template");
    sqlx::raw_sql(AssertSqlSafe(schema.to_string()))
        .execute(&mut conn)
        .await
        .expect("load schema");
    conn.close().await.expect("close");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "alter database {building} rename to {template}"
    )))
    .execute(&mut *admin)
    .await
    .expect("rename template");
}

async fn connect_admin(admin_url: &str) -> PgConnection {
    PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL {admin_url}: {e}"))
}

/// `bytes` random bytes, hex-encoded: unique names for databases and users.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random");
    hex::encode(b)
}

/// The platform's schema, `schema/platform.sql`.
pub(crate) fn platform_schema() -> String {
    std::fs::read_to_string(repo_root().join("schema/platform.sql")).expect("schema/platform.sql")
}

/// Names of the databases starting with `prefix`, sorted, asked through `text` (one text value
/// from a query, on whichever server).
pub(crate) fn databases_via(prefix: &str, text: impl FnOnce(&str) -> String) -> Vec<String> {
    let names = text(&format!(
        "select coalesce(string_agg(datname, ',' order by datname), '') from pg_database \
         where starts_with(datname, '{prefix}')"
    ));
    names
        .split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}
