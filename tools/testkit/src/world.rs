//! [`World`]: one test's installation of `ransomeye-ops`: a temp directory holding the
//! configuration, keys, archive and backup directories, and (once initialised) a database of
//! its own; commands run against it; and the configuration rewrites the tests make (as an
//! operator's editor would, bypassing the tool).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::db::TestDb;
use crate::run::{run, Run};
use crate::services::services;

/// One test's world: a temp directory with a config path in it, and optionally a database.
pub struct World {
    /// The temp directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// Where the configuration is (or will be).
    pub config: PathBuf,
    /// The test's own database, once created.
    pub db: Option<TestDb>,
    /// The binary under test, as the test was given it by Cargo.
    pub bin: PathBuf,
}

impl World {
    /// An empty world for the binary at `bin`: no config, no database.
    pub fn empty(bin: impl AsRef<Path>) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("etc/kernel.toml");
        World {
            dir,
            config,
            db: None,
            bin: bin.as_ref().to_path_buf(),
        }
    }

    /// A world initialised by `ransomeye-ops init` against its own database and the bus.
    pub fn initialised(bin: impl AsRef<Path>) -> World {
        let mut w = World::empty(bin);
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
        self.ops_with(Command::new(&self.bin))
    }

    /// The binary with `--config` pointing at `config` (another configuration of this world,
    /// e.g. from [`World::config_copy`]).
    pub fn ops_with_config(&self, config: &Path) -> Command {
        configured(Command::new(&self.bin), config)
    }

    /// `cmd` (the binary or a copy of it) with `--config` pointing at this world's configuration
    /// and no configuration from the test runner's environment.
    pub fn ops_with(&self, cmd: Command) -> Command {
        configured(cmd, &self.config)
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

    /// Points `[database] url` at `url` (another server: an [`crate::OwnPostgres`]).
    #[track_caller]
    pub fn set_database_url(&self, url: &str) {
        self.edit_config(|text| {
            let mut replaced = 0;
            let out: Vec<String> = text
                .lines()
                .map(|l| {
                    if l.starts_with("url = \"postgres") {
                        replaced += 1;
                        format!("url = {url:?}")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            assert_eq!(replaced, 1, "one [database] url line in:\n{text}");
            out.join("\n") + "\n"
        });
    }

    /// Writes a second configuration `etc/<name>`: this world's with `from` replaced by `to`
    /// (which must occur); returns its path. As from another host sharing the database.
    #[track_caller]
    pub fn config_copy(&self, name: &str, from: &str, to: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        assert!(
            text.contains(from),
            "{from:?} is not in the configuration:\n{text}"
        );
        let config = self.path(&format!("etc/{name}"));
        std::fs::copy(&self.config, &config).expect("copy config");
        std::fs::write(&config, text.replace(from, to)).expect("write config");
        config
    }

    /// The configuration as the tool reads it.
    pub fn parsed_config(&self) -> ransomeye_kernel::config::Config {
        let text = std::fs::read_to_string(&self.config).expect("config");
        ransomeye_kernel::config::Config::parse(&self.config, &text).expect("config parses")
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

    /// The archive files (`*.zst.enc`) in the archive directory, sorted.
    pub fn archives(&self) -> Vec<String> {
        self.list("archive")
            .into_iter()
            .filter(|n| n.ends_with(".zst.enc"))
            .collect()
    }

    /// The names of the committed backups (those with a manifest), sorted.
    pub fn backups(&self) -> Vec<String> {
        self.list("backups")
            .into_iter()
            .filter_map(|n| n.strip_suffix(".manifest.json").map(str::to_string))
            .collect()
    }
}

/// `cmd` with `--config config` and none of the runner's `RANSOMEYE_*` configuration.
fn configured(mut cmd: Command, config: &Path) -> Command {
    cmd.arg("--config").arg(config);
    cmd.env_remove("RANSOMEYE_CONFIG")
        .env_remove("RANSOMEYE_DATABASE_URL")
        .env_remove("RANSOMEYE_NATS_URL");
    cmd
}
