//! Integration-test harness: real PostgreSQL, real nats-server, the real binary.
//!
//! Each test gets its own database (`ransomeye_test_<random>`, copied from a template that holds
//! `schema/platform.sql`) and its own temp directory, so tests run in parallel and never see each
//! other's rows or files. Services come from `DATABASE_URL` / `NATS_URL` (`scripts/test` starts a
//! sandbox and sets them); without them a test fails loudly — it never passes silently.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ransomeye-ops");

/// URLs of the services the tests use.
pub struct Services {
    /// A superuser URL to a maintenance database (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
    pub database_url: String,
    /// The nats-server (JetStream on).
    pub nats_url: String,
}

/// The services from the environment; panics with instructions when they are not given.
pub fn services() -> Services {
    let get = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: integration tests need a real PostgreSQL and nats-server. \
                 Run `scripts/test` (it starts a sandbox), or export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
                 and NATS_URL=nats://127.0.0.1:4222"
            )
        })
    };
    Services {
        database_url: get("DATABASE_URL"),
        nats_url: get("NATS_URL"),
    }
}

/// Runs an async block on a small runtime (the harness itself is synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

pub use ransomeye_kernel::config::with_database;

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
    /// Creates `ransomeye_test_<random>` from the schema template.
    pub fn new() -> TestDb {
        let admin_url = services().database_url;
        let schema = std::fs::read_to_string(repo_root().join("schema/platform.sql"))
            .expect("schema/platform.sql");
        let digest = ring::digest::digest(&ring::digest::SHA256, schema.as_bytes());
        let template = format!("ransomeye_tpl_{}", &hex::encode(digest.as_ref())[..12]);
        let name = format!("ransomeye_test_{}", random_suffix());
        block_on(async {
            let mut admin = PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL {admin_url}: {e}"));
            // One process creates the template; the others wait on the lock, then copy it.
            let lock_key = i64::from_be_bytes(digest.as_ref()[..8].try_into().expect("8 bytes"));
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
                let building = format!("{template}_build");
                sqlx::raw_sql(AssertSqlSafe(format!("drop database if exists {building}")))
                    .execute(&mut admin)
                    .await
                    .expect("drop");
                sqlx::raw_sql(AssertSqlSafe(format!("create database {building}")))
                    .execute(&mut admin)
                    .await
                    .expect("create template");
                let mut conn = PgConnection::connect(&with_database(&admin_url, &building))
                    .await
                    .expect("connect template");
                sqlx::raw_sql(AssertSqlSafe(schema.clone()))
                    .execute(&mut conn)
                    .await
                    .expect("load schema");
                conn.close().await.expect("close");
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "alter database {building} rename to {template}"
                )))
                .execute(&mut admin)
                .await
                .expect("rename template");
            }
            sqlx::raw_sql(AssertSqlSafe(format!(
                "create database {name} template {template}"
            )))
            .execute(&mut admin)
            .await
            .expect("create test database");
            sqlx::query("select pg_advisory_unlock($1)")
                .bind(lock_key)
                .execute(&mut admin)
                .await
                .expect("unlock");
        });
        TestDb {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// Creates an empty `ransomeye_test_<random>` (from template0: no tables at all).
    pub fn empty() -> TestDb {
        let admin_url = services().database_url;
        let name = format!("ransomeye_test_{}", random_suffix());
        block_on(async {
            let mut admin = PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL {admin_url}: {e}"));
            sqlx::raw_sql(AssertSqlSafe(format!(
                "create database {name} template template0"
            )))
            .execute(&mut admin)
            .await
            .expect("create empty test database");
        });
        TestDb {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// Runs SQL in this database.
    pub fn execute(&self, sql: &str) {
        block_on(async {
            let mut conn = PgConnection::connect(&self.url).await.expect("connect");
            sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .expect("sql");
        });
    }
}

impl TestDb {
    /// Runs a query returning one value of type `T`.
    fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        block_on(async {
            let mut conn = PgConnection::connect(&self.url).await.expect("connect");
            sqlx::query_scalar::<_, T>(AssertSqlSafe(sql.to_string()))
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// Runs a query returning one text value (use `::text` casts).
    pub fn text(&self, sql: &str) -> String {
        self.scalar(sql)
    }

    /// Runs a query returning one integer (use `::int8` casts).
    pub fn int(&self, sql: &str) -> i64 {
        self.scalar(sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        block_on(async move {
            if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut admin)
                .await;
            }
        });
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`-1` if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs a command that must succeed and returns its raw stdout (binary or large output).
#[track_caller]
pub fn stdout_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("run ransomeye-ops");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Starts `cmd` with its output discarded and SIGKILLs it after `delay`. The kill moment is the
/// crash tests' variable, not a synchronisation.
pub fn kill_after(cmd: &mut Command, delay: std::time::Duration) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(delay);
    let _ = child.kill();
    child.wait().expect("wait");
}

/// Runs a prepared command and collects its output.
pub fn run(cmd: &mut Command) -> Run {
    Run::from(cmd.output().expect("run ransomeye-ops"))
}

/// One test's world: a temp directory with a config path in it, and optionally a database.
pub struct World {
    /// The temp directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// Where the configuration is (or will be).
    pub config: PathBuf,
    /// The test's own database, once created.
    pub db: Option<TestDb>,
}

impl World {
    /// An empty world: no config, no database.
    pub fn empty() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("etc/kernel.toml");
        World {
            dir,
            config,
            db: None,
        }
    }

    /// A world initialised by `ransomeye-ops init` against its own database and the bus.
    pub fn initialised() -> World {
        let mut w = World::empty();
        let db = TestDb::new();
        let nats = services().nats_url;
        w.init_with(&db.url, &nats).expect_code(0);
        w.db = Some(db);
        w
    }

    /// Runs `init` with the given URLs and this world's directories.
    pub fn init_with(&self, database_url: &str, nats_url: &str) -> Run {
        run(&mut self.init_command(self.ops(), database_url, nats_url))
    }

    /// `cmd` (the binary or a copy, with `--config`) plus `init` with the given URLs and this
    /// world's `keys`, `archive` and `backups` directories.
    pub fn init_command(&self, mut cmd: Command, database_url: &str, nats_url: &str) -> Command {
        cmd.args([
            "init",
            "--database-url",
            database_url,
            "--nats-url",
            nats_url,
        ]);
        for (flag, dir) in [
            ("--keys-dir", "keys"),
            ("--archive-dir", "archive"),
            ("--backup-dir", "backups"),
        ] {
            cmd.arg(flag).arg(self.path(dir));
        }
        cmd
    }

    /// A path inside the world's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The binary with `--config` pointing at this world's configuration.
    pub fn ops(&self) -> Command {
        self.ops_with(Command::new(BIN))
    }

    /// `cmd` (the binary or a copy of it) with `--config` pointing at this world's configuration
    /// and no configuration from the test runner's environment.
    pub fn ops_with(&self, mut cmd: Command) -> Command {
        cmd.arg("--config").arg(&self.config);
        cmd.env_remove("RANSOMEYE_CONFIG")
            .env_remove("RANSOMEYE_DATABASE_URL")
            .env_remove("RANSOMEYE_NATS_URL");
        cmd
    }

    /// The world's database (panics for an empty world).
    pub fn db(&self) -> &TestDb {
        self.db.as_ref().expect("world has a database")
    }

    /// Rewrites the configuration text with `edit` (bypassing the tool, as an operator's editor would).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, edit(text)).expect("write config");
    }

    /// Makes the world's directory traversable by other users (for the privilege tests).
    pub fn open_to_others(&self) {
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }

    /// Entries of a directory in the world, sorted.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.path(rel)) {
            Ok(rd) => rd
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}

/// The gid of group `ransomeye-admin`; the privilege tests need it (`scripts/test` creates it).
pub fn admin_gid() -> u32 {
    ransomeye_kernel::access::admin_gid().expect(
        "group ransomeye-admin does not exist: run `scripts/test` (it creates it) or `groupadd --system ransomeye-admin`",
    )
}

/// True when the tests run as root (needed to switch to other users).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A copy of the binary that any user can execute, for tests that run it as another user
/// (the checkout itself may sit below a directory only root can traverse).
pub struct PublicBinary {
    _dir: tempfile::TempDir,
    /// Path of the executable copy.
    pub path: PathBuf,
}

impl PublicBinary {
    /// Copies the binary into a fresh world-traversable directory.
    pub fn new() -> PublicBinary {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod dir");
        let path = dir.path().join("ransomeye-ops");
        std::fs::copy(BIN, &path).expect("copy binary");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod binary");
        PublicBinary { _dir: dir, path }
    }

    /// A command running the copy.
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }
}

/// A tiny tmpfs mounted over a directory for the life of the guard.
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. "64k") over `dir`; needs root.
    pub fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        assert!(
            is_root(),
            "mounting a tmpfs needs root (scripts/test runs as root)"
        );
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0750"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed");
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
