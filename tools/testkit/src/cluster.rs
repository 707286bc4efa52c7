//! [`OwnPostgres`]: a throwaway PostgreSQL cluster of the test's own, for what the shared server
//! (trust authentication) cannot show: password logins (`scram-sha-256` for every TCP login), a
//! `pg_hba.conf` the test rewrites, and the server's own log (`log_statement = all` by default),
//! which a test reads to prove what never reached it.
//!
//! As root the server runs as user `postgres` (`runuser`), in a temp directory under `/tmp` that
//! user can reach; otherwise as the caller. The binaries are found as `scripts/lib/sandbox.sh`
//! finds them: `$SANDBOX_PG_BINDIR`, else the highest `/usr/lib/postgresql/<major>/bin`, else
//! `pg_config --bindir`. The cluster is stopped (immediate) and removed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

use crate::db::random_hex;
use crate::net::closed_port;
use crate::root::is_root;
use crate::runtime::block_on_anywhere;

/// How to set the cluster up. `Default` is a cluster with `log_statement = all` and
/// `scram-sha-256` for every TCP login.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `log_statement = all`: every statement in the server log.
    pub log_statement_all: bool,
    /// Lines appended to `postgresql.conf` (e.g. `ssl = on` and its files).
    pub extra_conf: Vec<String>,
    /// `pg_hba.conf` lines placed before the catch-all `host all all 127.0.0.1/32
    /// scram-sha-256` (e.g. a `reject` rule for one role).
    pub hba_before: Vec<String>,
    /// `ssl = on` with this certificate and key (copied into the data directory, owned by the
    /// server's user, key 0600 as PostgreSQL demands).
    pub ssl: Option<crate::tls::Issued>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            log_statement_all: true,
            extra_conf: Vec::new(),
            hba_before: Vec::new(),
            ssl: None,
        }
    }
}

/// A running cluster of the test's own; stopped and removed on drop.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    password: String,
    options: ClusterOptions,
}

impl OwnPostgres {
    /// A cluster with the default options.
    pub fn start() -> OwnPostgres {
        OwnPostgres::start_with(ClusterOptions::default())
    }

    /// Initialises and starts a cluster; returns once it accepts password logins.
    pub fn start_with(options: ClusterOptions) -> OwnPostgres {
        let bindir = pg_bindir();
        let dir = tempfile::Builder::new()
            .prefix("ransomeye-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir for the cluster");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the cluster dir");
        let password = random_hex(16);
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write the password file");
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the password file");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster dir to postgres");
        }
        let mut cluster = OwnPostgres {
            dir,
            bindir,
            port: 0,
            password,
            options,
        };
        cluster.as_server_user(
            Command::new(cluster.bindir.join("initdb"))
                .arg("-D")
                .arg(cluster.data())
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        std::fs::remove_file(&pwfile).expect("remove the password file");
        cluster.install_ssl_files();
        cluster.write_conf();
        cluster.write_hba();
        for _attempt in 0..5 {
            cluster.port = closed_port();
            cluster.write_port();
            if cluster.try_start() {
                return cluster;
            }
        }
        panic!("PostgreSQL did not start; its log:\n{}", cluster.log_text());
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// The superuser (`postgres`, password login) URL of database `postgres`.
    pub fn superuser_url(&self) -> String {
        self.url("postgres", &self.password, "postgres")
    }

    /// A URL for `user` with `password` to `database`.
    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The server log (everything the server wrote since it started).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server log's text.
    pub fn log_text(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Runs SQL as the superuser (one or more statements).
    pub fn execute(&self, sql: &str) {
        let url = self.superuser_url();
        block_on_anywhere(async move {
            let mut conn = PgConnection::connect(&url).await.expect("superuser login");
            sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// Loads the platform's schema (`schema/platform.sql`) into database `postgres`, for a
    /// world whose `[database] url` is this cluster's.
    pub fn load_platform_schema(&self) {
        self.execute(&crate::db::platform_schema());
    }

    /// The databases whose names start with `prefix`, sorted.
    pub fn databases(&self, prefix: &str) -> Vec<String> {
        crate::db::databases_via(prefix, |sql| self.text(sql))
    }

    /// One text value from a query run as the superuser.
    pub fn text(&self, sql: &str) -> String {
        let url = self.superuser_url();
        block_on_anywhere(async move {
            let mut conn = PgConnection::connect(&url).await.expect("superuser login");
            sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_string()))
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// Whether `user` can log in with `password` over TCP (a fresh connection).
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(user)
            .password(password)
            .database("postgres")
            .disable_statement_logging();
        block_on_anywhere(async move {
            match options.connect().await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    true
                }
                Err(_) => false,
            }
        })
    }

    /// Replaces the `pg_hba.conf` lines before the catch-all and reloads the server; returns
    /// once new connections get the new rules (the server's configuration load time moved).
    pub fn set_hba_before(&mut self, lines: &[&str]) {
        let loaded = "select pg_conf_load_time()::text";
        let before = self.text(loaded);
        self.options.hba_before = lines.iter().map(|l| l.to_string()).collect();
        self.write_hba();
        self.pg_ctl(&["reload"], "pg_ctl reload");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.text(loaded) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not reload pg_hba.conf within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Copies the `ssl` certificate and key into the data directory as the server's user.
    fn install_ssl_files(&self) {
        let Some(ssl) = &self.options.ssl else { return };
        for (from, name) in [(&ssl.cert, "server.crt"), (&ssl.key, "server.key")] {
            let to = self.data().join(name);
            std::fs::copy(from, &to).expect("copy the server's TLS file");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the server's TLS file");
            if is_root() {
                let status = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&to)
                    .status()
                    .expect("chown");
                assert!(status.success(), "chown {} to postgres", to.display());
            }
        }
    }

    fn write_conf(&self) {
        let mut conf = format!(
            "\n# --- ransomeye-testkit OwnPostgres ---\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             password_encryption = 'scram-sha-256'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             logging_collector = off\n\
             log_line_prefix = '%m [%p] %q%u@%d '\n\
             log_connections = on\n\
             include_if_exists = 'testkit_port.conf'\n",
            self.dir.path().display()
        );
        if self.options.log_statement_all {
            conf.push_str("log_statement = 'all'\n");
        }
        if self.options.ssl.is_some() {
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        for line in &self.options.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        self.append_server_file("postgresql.conf", &conf);
    }

    fn write_hba(&self) {
        let mut hba = String::from("local all all trust\n");
        for line in &self.options.hba_before {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str("host all all 127.0.0.1/32 scram-sha-256\n");
        self.write_server_file("pg_hba.conf", &hba);
    }

    fn write_port(&self) {
        self.write_server_file("testkit_port.conf", &format!("port = {}\n", self.port));
    }

    /// Starts the server on the current port; false when it did not start (port taken).
    fn try_start(&self) -> bool {
        self.server_user_command(
            Command::new(self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "start"]),
        )
    }

    fn pg_ctl(&self, args: &[&str], what: &str) {
        self.as_server_user(
            Command::new(self.bindir.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(args),
            what,
        );
    }

    fn as_server_user(&self, command: &mut Command, what: &str) {
        assert!(
            self.server_user_command(command),
            "{what} failed; the cluster's log:\n{}",
            self.log_text()
        );
    }

    /// Runs `command` as the server's user (postgres when we are root); whether it succeeded.
    fn server_user_command(&self, command: &Command) -> bool {
        let mut actual = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(command.get_program());
            c
        } else {
            Command::new(command.get_program())
        };
        actual
            .args(command.get_args())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn write_server_file(&self, name: &str, text: &str) {
        let path = self.data().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.give_to_server_user(&path);
    }

    fn append_server_file(&self, name: &str, text: &str) {
        use std::io::Write;
        let path = self.data().join(name);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        file.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
    }

    fn give_to_server_user(&self, path: &Path) {
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {}", path.display());
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self.server_user_command(
                Command::new(self.bindir.join("pg_ctl"))
                    .arg("-D")
                    .arg(self.data())
                    .args(["-m", "immediate", "-w", "-t", "30", "stop"]),
            );
        }
    }
}

/// The PostgreSQL server binaries: `$SANDBOX_PG_BINDIR`, else the highest
/// `/usr/lib/postgresql/<major>/bin`, else `pg_config --bindir` (as `scripts/lib/sandbox.sh`).
fn pg_bindir() -> PathBuf {
    let usable = |d: &Path| d.join("initdb").exists() && d.join("pg_ctl").exists();
    if let Some(dir) = std::env::var_os("SANDBOX_PG_BINDIR").map(PathBuf::from) {
        assert!(
            usable(&dir),
            "SANDBOX_PG_BINDIR={} has no initdb/pg_ctl",
            dir.display()
        );
        return dir;
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let Some(major) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if usable(&bin) && best.as_ref().is_none_or(|(m, _)| major > *m) {
                best = Some((major, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return bin;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("no PostgreSQL server in /usr/lib/postgresql/<major>/bin and no pg_config: install postgresql (scripts/lib/sandbox.sh: sandbox_install_deps)");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        usable(&dir),
        "pg_config --bindir ({}) has no initdb/pg_ctl",
        dir.display()
    );
    dir
}
