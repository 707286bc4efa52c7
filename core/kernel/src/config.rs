//! The kernel configuration: one TOML file, parsed strictly.
//!
//! Where it is: `--config PATH`, else `$RANSOMEYE_CONFIG`, else [`DEFAULT_PATH`]. Unknown keys and
//! values of the wrong type are errors that name the file, the line and the key. The file is only
//! ever rewritten by atomic replace, keeping its mode and owner; [`set_values`] changes only the
//! values it is given and keeps the operator's comments, order and layout ([`Config::save`],
//! which re-serialises the whole file, is for files the tool itself wrote).
//!
//! `RANSOMEYE_DATABASE_URL` and `RANSOMEYE_NATS_URL` override the URLs at run time
//! ([`Config::with_env_overrides`]); they are never written back to the file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::conn_url::{redact_url, with_database};

use crate::access::Ownership;
use crate::atomic_file::{write_atomic, Replace};
use crate::conn_url::PgUrl;
use crate::keys::{public_key_id, KeyId, PUBLIC_KEY_LEN};
use crate::{FileAction, PathError};

/// Where the configuration is when neither `--config` nor `$RANSOMEYE_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/ransomeye/kernel.toml";
/// Environment variable naming the configuration file.
pub const ENV_CONFIG: &str = "RANSOMEYE_CONFIG";
/// Environment variable overriding `[database] url`.
pub const ENV_DATABASE_URL: &str = "RANSOMEYE_DATABASE_URL";
/// Environment variable overriding `[bus] url`.
pub const ENV_NATS_URL: &str = "RANSOMEYE_NATS_URL";
/// Largest configuration file accepted.
const MAX_CONFIG_LEN: u64 = 1 << 20;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[database]`: the PostgreSQL that holds RansomEye's state.
    pub database: Database,
    /// `[bus]`: the NATS bus that services and agents talk over.
    pub bus: Bus,
    /// `[keys]`: where key files live.
    #[serde(default)]
    pub keys: Keys,
    /// `[archive]`: audit-log archival to cold storage.
    #[serde(default)]
    pub archive: Archive,
    /// `[backup]`: database and file backups.
    #[serde(default)]
    pub backup: Backup,
    /// `[services]`: commands that stop and start services around a restore.
    #[serde(default, skip_serializing_if = "Services::is_empty")]
    pub services: Services,
    /// `[logs]`: rotated log files archived by `logs archive`.
    #[serde(default, skip_serializing_if = "Logs::is_default")]
    pub logs: Logs,
    /// `[clean]`: temp and buffer directories `clean` may delete old files from.
    #[serde(default, skip_serializing_if = "Clean::is_empty")]
    pub clean: Clean,
    /// `[trust]`: the active trust root.
    pub trust: Trust,
    /// `[alerts]`: where `alerts forward` sends alerts (docs/ALERTS.md).
    #[serde(default, skip_serializing_if = "Alerts::is_empty")]
    pub alerts: Alerts,
    /// `[[credentials]]`: the services' database logins that `rotate-db-creds` rotates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
}

/// `[database]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// PostgreSQL connection URL, e.g. `postgres://ransomeye@127.0.0.1:5432/ransomeye`.
    pub url: String,
    /// Longest wait, in seconds, to connect and log in (TCP, TLS, authentication).
    #[serde(
        default = "default_connect_timeout_secs",
        skip_serializing_if = "is_default_connect_timeout"
    )]
    pub connect_timeout_secs: u32,
    /// Longest wait, in seconds, for the database's next answer once connected: a statement's
    /// reply, the next rows of a stream, `pg_dump`'s next bytes. Not a limit on a whole
    /// statement that keeps answering (a long COPY streams all along).
    #[serde(
        default = "default_answer_timeout_secs",
        skip_serializing_if = "is_default_answer_timeout"
    )]
    pub answer_timeout_secs: u32,
}

impl Database {
    /// `[database]` with this URL and the default timeouts.
    pub fn new(url: impl Into<String>) -> Database {
        Database {
            url: url.into(),
            connect_timeout_secs: default_connect_timeout_secs(),
            answer_timeout_secs: default_answer_timeout_secs(),
        }
    }
}

fn default_connect_timeout_secs() -> u32 {
    10
}

fn is_default_connect_timeout(secs: &u32) -> bool {
    *secs == default_connect_timeout_secs()
}

/// Half an hour, as pgBackRest's `db-timeout`: a VACUUM or an index build on a large table
/// can leave the connection silent for minutes without anything being wrong.
fn default_answer_timeout_secs() -> u32 {
    1800
}

fn is_default_answer_timeout(secs: &u32) -> bool {
    *secs == default_answer_timeout_secs()
}

/// `[bus]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bus {
    /// NATS URL, e.g. `nats://127.0.0.1:4222` (`tls://` to require TLS).
    pub url: String,
    /// CA certificates (PEM) the server's certificate must chain to. Set it for a bus that
    /// speaks TLS: without it the system's roots are used, which a private CA is not among.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that verifies its clients (`verify: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM): a secret, refused when others may read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Bus {
    /// A plain `[bus]`: the URL, no TLS files.
    pub fn new(url: String) -> Self {
        Bus {
            url,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[keys]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Directory holding `signing.key`, `archive.key`, `backup.key`.
    #[serde(default = "default_keys_dir")]
    pub dir: PathBuf,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            dir: default_keys_dir(),
        }
    }
}

fn default_keys_dir() -> PathBuf {
    PathBuf::from("/etc/ransomeye/keys")
}

/// `[archive]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// Cold-storage directory for encrypted archives.
    #[serde(default = "default_archive_dir")]
    pub dir: PathBuf,
    /// Table holding the audit log.
    #[serde(default = "default_archive_table")]
    pub table: String,
    /// Timestamp column that decides a row's age.
    #[serde(default = "default_time_column")]
    pub time_column: String,
    /// Rows older than this many days are archived.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Pacing of the prune: the target length of one delete transaction, in milliseconds; each
    /// is followed by a rest (`prune_rest_percent`), so that the platform's own writers keep
    /// their commit latency on a server whose disk cannot absorb the prune's WAL. 0 (the
    /// default) turns pacing off: `--batch-size` rows per transaction, no rest.
    #[serde(
        default = "default_prune_slice_ms",
        skip_serializing_if = "is_default_prune_slice_ms"
    )]
    pub prune_slice_ms: u32,
    /// Pacing of the prune: the rest after each delete transaction, in percent of the time it
    /// took (0 to 1000).
    #[serde(
        default = "default_prune_rest_percent",
        skip_serializing_if = "is_default_prune_rest_percent"
    )]
    pub prune_rest_percent: u32,
}

impl Default for Archive {
    fn default() -> Self {
        Archive {
            dir: default_archive_dir(),
            table: default_archive_table(),
            time_column: default_time_column(),
            retention_days: default_retention_days(),
            prune_slice_ms: default_prune_slice_ms(),
            prune_rest_percent: default_prune_rest_percent(),
        }
    }
}

fn default_prune_slice_ms() -> u32 {
    0
}
fn is_default_prune_slice_ms(ms: &u32) -> bool {
    *ms == default_prune_slice_ms()
}
fn default_prune_rest_percent() -> u32 {
    50
}
fn is_default_prune_rest_percent(percent: &u32) -> bool {
    *percent == default_prune_rest_percent()
}

fn default_archive_dir() -> PathBuf {
    PathBuf::from("/mnt/cold_storage")
}
fn default_archive_table() -> String {
    "audit_logs".into()
}
fn default_time_column() -> String {
    "created_at".into()
}
fn default_retention_days() -> u32 {
    30
}

/// `[backup]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Directory for encrypted backups.
    #[serde(default = "default_backup_dir")]
    pub dir: PathBuf,
    /// How many verified backups retention keeps (the newest; at least 1).
    #[serde(default = "default_backup_keep")]
    pub keep: u32,
    /// Files and directories stored in each backup's file bundle besides the kernel
    /// configuration (which is always included). Key files are not: keep them offline.
    #[serde(default)]
    pub include: Vec<PathBuf>,
    /// Forensic artifacts directory, stored incrementally (unchanged files are referenced
    /// from the backup that already holds them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts_dir: Option<PathBuf>,
    /// zstd level for backup files (1–19).
    #[serde(default = "default_backup_zstd_level")]
    pub zstd_level: i32,
    /// Directory holding `pg_dump` and `pg_restore`; by default the ones matching the
    /// server's major version under `/usr/lib/postgresql/<major>/bin`, else `$PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_bin_dir: Option<PathBuf>,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            dir: default_backup_dir(),
            keep: default_backup_keep(),
            include: Vec::new(),
            artifacts_dir: None,
            zstd_level: default_backup_zstd_level(),
            pg_bin_dir: None,
        }
    }
}

fn default_backup_dir() -> PathBuf {
    PathBuf::from("/var/backups")
}
fn default_backup_keep() -> u32 {
    7
}
fn default_backup_zstd_level() -> i32 {
    // On pg_dump's uncompressed custom format, level 1 is both faster and smaller than 3
    // (docs/PERFORMANCE.md, "Backup and restore").
    1
}

/// `[services]`: how `restore` stops and starts RansomEye's services around a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Shell commands run in order before a restore (e.g. `systemctl stop ransomeye-core`).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Shell commands run in order after a restore, also after a failed one.
    #[serde(default)]
    pub start: Vec<String>,
    /// Seconds each command may take before it is killed and counted as failed.
    #[serde(default = "default_service_timeout")]
    pub timeout_secs: u64,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            stop: Vec::new(),
            start: Vec::new(),
            timeout_secs: default_service_timeout(),
        }
    }
}

impl Services {
    /// No commands configured and the default timeout: nothing worth writing out.
    pub fn is_empty(&self) -> bool {
        self.stop.is_empty()
            && self.start.is_empty()
            && self.timeout_secs == default_service_timeout()
    }
}

fn default_service_timeout() -> u64 {
    120
}

/// `[logs]`: where `logs archive` finds rotated log files and how it stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// Directories holding log files; each gets an `archive/` subdirectory.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// Shell-style patterns (`*`, `?`) of the rotated files to archive; the live `*.log` is
    /// never matched by the defaults.
    #[serde(default = "default_logs_pattern")]
    pub pattern: Vec<String>,
    /// Encrypt archives with the archive key (`.zst.enc`); plain `.zst` when false.
    #[serde(default = "default_logs_encrypt")]
    pub encrypt: bool,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            dirs: Vec::new(),
            pattern: default_logs_pattern(),
            encrypt: default_logs_encrypt(),
        }
    }
}

impl Logs {
    /// Nothing configured: not worth writing out.
    pub fn is_default(&self) -> bool {
        *self == Logs::default()
    }
}

fn default_logs_pattern() -> Vec<String> {
    vec!["*.log.*".into(), "*.log-*".into()]
}
fn default_logs_encrypt() -> bool {
    true
}

/// `[clean]`: the directories `clean` works in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clean {
    /// Temp directories: files and symlinks older than `--older-than` are removed, then empty
    /// directories.
    #[serde(default)]
    pub temp_dirs: Vec<PathBuf>,
    /// Upload buffers: one subdirectory per upload session; chunks of a dead session older than
    /// `--orphan-age` are removed.
    #[serde(default)]
    pub buffer_dirs: Vec<PathBuf>,
}

impl Clean {
    /// Nothing configured.
    pub fn is_empty(&self) -> bool {
        self.temp_dirs.is_empty() && self.buffer_dirs.is_empty()
    }
}

/// `[alerts]`: the syslog collector `alerts forward` sends to. Every key is optional (the
/// command line can give them); values are checked by the command that uses them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// The collector, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `relp` (default), `tcp`, `tls` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// `rfc5424` (default) or `rfc3164`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Syslog facility name or number (default `local0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// CA certificates (PEM) the collector's TLS certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), when the collector asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM; a key file: 0600, or 0640 group
    /// ransomeye-admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Alerts {
    /// Nothing set: not worth writing out.
    pub fn is_empty(&self) -> bool {
        *self == Alerts::default()
    }
}

/// `[[credentials]]`: one service's login to PostgreSQL, whose password `rotate-db-creds`
/// rotates. `role` makes the strategy *single* (one role, its password changed in place);
/// `roles` (two login roles) makes it *alternating* (the role the env files do not name gets
/// the new password, then the files switch to it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The role whose password rotates (strategy single).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Two login roles used in turn (strategy alternating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The `.env` files (dotenv syntax) the service reads its login from.
    pub env_files: Vec<PathBuf>,
    /// The keys in those files holding the login: a URL-valued key gets its password (and,
    /// alternating, its user) replaced; any other key holds the bare password.
    pub env_keys: Vec<String>,
    /// Shell commands run (`sh -c`, bounded by `[services] timeout_secs`) once the files are
    /// switched, so that the service reads them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart: Vec<String>,
    /// A shell command that must succeed after the restart, else the rotation is undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

impl Credential {
    /// The roles of this entry: one (single) or two (alternating).
    pub fn role_names(&self) -> Vec<&str> {
        match (&self.role, &self.roles) {
            (Some(role), _) => vec![role.as_str()],
            (None, Some(roles)) => roles.iter().map(String::as_str).collect(),
            (None, None) => Vec::new(),
        }
    }

    /// Whether the entry alternates between two roles.
    pub fn is_alternating(&self) -> bool {
        self.role.is_none() && self.roles.is_some()
    }

    /// What is wrong with the entry, if anything (without the `[[credentials]]` prefix).
    fn problem(&self) -> Option<String> {
        let names = match (&self.role, &self.roles) {
            (Some(_), Some(_)) => {
                return Some(
                    "give either `role` (single) or `roles` (alternating), not both".into(),
                )
            }
            (None, None) => return Some("`role` or `roles` is required".into()),
            (Some(role), None) => vec![role.clone()],
            (None, Some(roles)) if roles.len() != 2 || roles[0] == roles[1] => {
                return Some(format!(
                    "`roles` must name two different roles, not {roles:?}"
                ))
            }
            (None, Some(roles)) => roles.clone(),
        };
        if let Some(bad) = names.iter().find(|n| !is_sql_identifier(n, false)) {
            return Some(format!(
                "role `{bad}` is not a plain role name (lowercase letters, digits, _)"
            ));
        }
        if self.env_files.is_empty() {
            return Some("`env_files` must name at least one file".into());
        }
        if let Some(file) = self.env_files.iter().find(|f| !f.is_absolute()) {
            return Some(format!(
                "env file {} is not an absolute path",
                file.display()
            ));
        }
        if self.env_keys.is_empty() {
            return Some("`env_keys` must name at least one key".into());
        }
        let key_ok = |k: &str| {
            let mut chars = k.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if let Some(bad) = self.env_keys.iter().find(|k| !key_ok(k)) {
            return Some(format!("`{bad}` is not an environment variable name"));
        }
        None
    }
}

/// `[trust]`: the active trust root that agents verify updates against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Trust version, starting at 1 and incremented by each rotation.
    pub version: u64,
    /// Key id of the active signing key (16 hex digits).
    pub key_id: String,
    /// The active Ed25519 public key, 64 hex digits.
    pub public_key: String,
}

/// Where the configuration file is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The path.
    pub path: PathBuf,
    /// How it was chosen: `--config`, `$RANSOMEYE_CONFIG` or the default.
    pub origin: &'static str,
}

/// Chooses the configuration path: the flag, else the environment, else the default.
pub fn resolve_path(flag: Option<&Path>, env: Option<&std::ffi::OsStr>) -> ConfigSource {
    match (flag, env) {
        (Some(p), _) => ConfigSource {
            path: p.to_path_buf(),
            origin: "--config",
        },
        (None, Some(e)) if !e.is_empty() => ConfigSource {
            path: PathBuf::from(e),
            origin: "$RANSOMEYE_CONFIG",
        },
        _ => ConfigSource {
            path: PathBuf::from(DEFAULT_PATH),
            origin: "default path",
        },
    }
}

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error("configuration file {} does not exist ({origin})", path.display())]
    Missing {
        /// The path looked at.
        path: PathBuf,
        /// How the path was chosen.
        origin: &'static str,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{}{}: {message}", path.display(), location.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line and column, when known.
        location: Option<Location>,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Reading or writing the file failed.
    #[error(transparent)]
    Io(#[from] PathError),
}

/// A 1-based line and column in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Config {
    /// Reads and validates the configuration file (no environment overrides applied).
    pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
        use std::io::Read;
        let path = &source.path;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing {
                    path: path.clone(),
                    origin: source.origin,
                })
            }
            Err(e) => return Err(PathError::new(FileAction::Open, path, e).into()),
        };
        let mut text = String::new();
        file.take(MAX_CONFIG_LEN)
            .read_to_string(&mut text)
            .map_err(PathError::at(FileAction::Read, path))?;
        Config::parse(path, &text)
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|span| location_of(text, span.start));
            let mut message = e.message().trim_end().to_string();
            if let Some(key) = location.and_then(|l| key_on_line(text, l.line)) {
                if !message.contains(&format!("`{key}`")) {
                    message = format!("key `{key}`: {message}");
                }
            }
            ConfigError::Invalid {
                path: path.to_path_buf(),
                location,
                message,
            }
        })?;
        config.validate(path, text)?;
        Ok(config)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let fail = |section: &str, key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            location: find_key(text, section, key),
            message: format!("[{section}] {key}: {message}"),
        };
        if let Err(e) = PgUrl::parse(&self.database.url) {
            return Err(fail(
                "database",
                "url",
                format!("not a valid postgres:// or postgresql:// URL: {e}"),
            ));
        }
        if !(self.bus.url.starts_with("nats://") || self.bus.url.starts_with("tls://")) {
            return Err(fail("bus", "url", "must be a nats:// or tls:// URL".into()));
        }
        for (key, value) in [
            ("tls_ca", &self.bus.tls_ca),
            ("tls_cert", &self.bus.tls_cert),
            ("tls_key", &self.bus.tls_key),
        ] {
            if value.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err(fail("bus", key, "must be an absolute path".into()));
            }
        }
        match (&self.bus.tls_cert, &self.bus.tls_key) {
            (Some(_), None) => {
                return Err(fail(
                    "bus",
                    "tls_cert",
                    "is set without tls_key (a client certificate needs its key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(fail(
                    "bus",
                    "tls_key",
                    "is set without tls_cert (a key needs its client certificate)".into(),
                ))
            }
            _ => {}
        }
        if !is_sql_identifier(&self.archive.table, true) {
            return Err(fail(
                "archive",
                "table",
                format!(
                    "`{}` is not a plain table name (letters, digits, _; optionally schema.table)",
                    self.archive.table
                ),
            ));
        }
        if !is_sql_identifier(&self.archive.time_column, false) {
            return Err(fail(
                "archive",
                "time_column",
                format!("`{}` is not a plain column name", self.archive.time_column),
            ));
        }
        for (section, key, value) in [
            (
                "database",
                "connect_timeout_secs",
                self.database.connect_timeout_secs,
            ),
            (
                "database",
                "answer_timeout_secs",
                self.database.answer_timeout_secs,
            ),
            ("archive", "retention_days", self.archive.retention_days),
            ("backup", "keep", self.backup.keep),
        ] {
            if value == 0 {
                return Err(fail(section, key, "must be at least 1".into()));
            }
        }
        if self.archive.prune_rest_percent > 1000 {
            return Err(fail(
                "archive",
                "prune_rest_percent",
                format!(
                    "{} is not a percentage from 0 to 1000",
                    self.archive.prune_rest_percent
                ),
            ));
        }
        if !(1..=19).contains(&self.backup.zstd_level) {
            return Err(fail(
                "backup",
                "zstd_level",
                format!(
                    "{} is not a zstd level from 1 to 19",
                    self.backup.zstd_level
                ),
            ));
        }
        if self.services.timeout_secs == 0 {
            return Err(fail(
                "services",
                "timeout_secs",
                "must be at least 1".into(),
            ));
        }
        for (index, credential) in self.credentials.iter().enumerate() {
            if let Some(problem) = credential.problem() {
                let role = credential.role_names().join(", ");
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    location: None,
                    message: format!("[[credentials]] entry {} ({role}): {problem}", index + 1),
                });
            }
        }
        if self.trust.version == 0 {
            return Err(fail("trust", "version", "must be at least 1".into()));
        }
        if let Some(bad) = self
            .logs
            .pattern
            .iter()
            .find(|p| p.is_empty() || p.contains('/'))
        {
            return Err(fail(
                "logs",
                "pattern",
                format!("`{bad}` is not a file-name pattern (empty, or contains /)"),
            ));
        }
        if let Some(bad) = self.logs.dirs.iter().find(|d| !d.is_absolute()) {
            return Err(fail(
                "logs",
                "dirs",
                format!("`{}` is not an absolute path", bad.display()),
            ));
        }
        let public_key = self
            .trust_public_key()
            .map_err(|m| fail("trust", "public_key", m))?;
        let derived = public_key_id(&public_key);
        if KeyId::from_hex(&self.trust.key_id) != Some(derived) {
            return Err(fail(
                "trust",
                "key_id",
                format!(
                    "`{}` does not match public_key (its key id is {derived})",
                    self.trust.key_id
                ),
            ));
        }
        Ok(())
    }

    /// The active trust root's public key, decoded.
    pub fn trust_public_key(&self) -> Result<[u8; PUBLIC_KEY_LEN], String> {
        let mut key = [0u8; PUBLIC_KEY_LEN];
        hex::decode_to_slice(&self.trust.public_key, &mut key)
            .map_err(|_| format!("must be {} hex digits", PUBLIC_KEY_LEN * 2))?;
        Ok(key)
    }

    /// Applies `RANSOMEYE_DATABASE_URL` and `RANSOMEYE_NATS_URL` from `lookup` (normally the
    /// process environment). Never save a configuration after calling this.
    pub fn with_env_overrides(mut self, lookup: impl Fn(&str) -> Option<String>) -> Config {
        if let Some(url) = lookup(ENV_DATABASE_URL).filter(|u| !u.is_empty()) {
            self.database.url = url;
        }
        if let Some(url) = lookup(ENV_NATS_URL).filter(|u| !u.is_empty()) {
            self.bus.url = url;
        }
        self
    }

    /// Serialises the configuration as TOML and checks that it parses back to the same,
    /// valid configuration, so that nothing the loader would refuse is ever written.
    /// `path` only names the file in messages.
    pub fn to_toml(&self, path: &Path) -> Result<String, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            location: None,
            message,
        };
        let text = toml::to_string_pretty(self)
            .map_err(|e| invalid(format!("cannot serialise the configuration: {e}")))?;
        if Config::parse(path, &text)? != *self {
            return Err(invalid(
                "the configuration does not read back as written".into(),
            ));
        }
        Ok(text)
    }

    /// Writes a new configuration file; refuses to replace an existing one.
    pub fn create(&self, path: &Path) -> Result<PathBuf, ConfigError> {
        let text = self.to_toml(path)?;
        Ok(write_atomic(
            path,
            text.as_bytes(),
            Ownership::secret_file(),
            Replace::Never,
        )?)
    }

    /// Atomically replaces the existing configuration file, keeping its mode and owner.
    pub fn save(&self, path: &Path) -> Result<PathBuf, ConfigError> {
        let meta = std::fs::metadata(path).map_err(PathError::at(FileAction::Read, path))?;
        let text = self.to_toml(path)?;
        Ok(write_atomic(
            path,
            text.as_bytes(),
            Ownership::of(&meta),
            Replace::Allowed,
        )?)
    }
}

/// A value [`set_values`] writes: a TOML string or integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    /// A basic string.
    String(String),
    /// An integer.
    Integer(i64),
}

impl From<&str> for ConfigValue {
    fn from(s: &str) -> Self {
        ConfigValue::String(s.to_string())
    }
}

impl From<String> for ConfigValue {
    fn from(s: String) -> Self {
        ConfigValue::String(s)
    }
}

impl From<i64> for ConfigValue {
    fn from(n: i64) -> Self {
        ConfigValue::Integer(n)
    }
}

/// Sets `[section] key = value` for each of `values` in the configuration file at `path`,
/// atomically (temp file, fsync, rename, directory fsync), keeping its mode and owner and
/// everything else in it byte for byte: comments (also one after a replaced value), key order,
/// blank lines, quoting of the other values. A key that is missing is appended to its section;
/// a missing section is appended to the file. The result must be a valid configuration
/// ([`Config::parse`]) or nothing is written. Returns the file's path.
pub fn set_values(
    path: &Path,
    values: &[(&str, &str, ConfigValue)],
) -> Result<PathBuf, ConfigError> {
    use std::io::Read;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        location: None,
        message,
    };
    let file = std::fs::File::open(path).map_err(PathError::at(FileAction::Open, path))?;
    let meta = file
        .metadata()
        .map_err(PathError::at(FileAction::Read, path))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_LEN)
        .read_to_string(&mut text)
        .map_err(PathError::at(FileAction::Read, path))?;
    // Refuse to edit a file the loader would refuse: the edit must not launder an error.
    Config::parse(path, &text)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| invalid(e.message().to_string()))?;
    for (section, key, value) in values {
        let new = match value {
            ConfigValue::String(s) => toml_edit::Value::from(s.as_str()),
            ConfigValue::Integer(n) => toml_edit::Value::from(*n),
        };
        if !doc.contains_key(section) {
            doc.insert(section, toml_edit::Item::Table(toml_edit::Table::new()));
        }
        let table = doc
            .get_mut(section)
            .and_then(toml_edit::Item::as_table_like_mut)
            .ok_or_else(|| invalid(format!("[{section}] is not a table")))?;
        match table.get_mut(key) {
            Some(toml_edit::Item::Value(old)) => {
                // The old value's decor holds the spaces around it and a trailing comment.
                let decor = old.decor().clone();
                *old = new;
                *old.decor_mut() = decor;
            }
            Some(_) => return Err(invalid(format!("[{section}] {key} is not a plain value"))),
            None => {
                table.insert(key, toml_edit::Item::Value(new));
            }
        }
    }
    let edited = doc.to_string();
    Config::parse(path, &edited)?;
    Ok(write_atomic(
        path,
        edited.as_bytes(),
        Ownership::of(&meta),
        Replace::Allowed,
    )?)
}

/// A table or column name that can be interpolated into SQL without quoting tricks.
pub fn is_sql_identifier(s: &str, allow_schema: bool) -> bool {
    let part_ok = |p: &str| {
        let mut chars = p.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && p.len() <= 63
    };
    match s.split_once('.') {
        Some((schema, table)) if allow_schema => part_ok(schema) && part_ok(table),
        Some(_) => false,
        None => part_ok(s),
    }
}

fn location_of(text: &str, offset: usize) -> Location {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    Location { line, column }
}

fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// Finds `key = …` inside `[section]`, for messages about semantically invalid values.
fn find_key(text: &str, section: &str, key: &str) -> Option<Location> {
    // The text already parsed as a configuration, so it parses here too; spans come from the
    // same TOML parser that `toml` uses.
    let doc = toml_edit::Document::parse(text).ok()?;
    let (found, _) = doc.get(section)?.as_table_like()?.get_key_value(key)?;
    Some(location_of(text, found.span()?.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn sample() -> String {
        let id = public_key_id(&hex::decode(PK).expect("hex"));
        format!(
            r#"[database]
url = "postgres://postgres@127.0.0.1:5432/ransomeye"

[bus]
url = "nats://127.0.0.1:4222"

[keys]
dir = "/etc/ransomeye/keys"

[archive]
retention_days = 30

[trust]
version = 1
key_id = "{id}"
public_key = "{PK}"
"#
        )
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/ransomeye/kernel.toml"), text)
    }

    #[test]
    fn sample_parses_with_defaults() {
        let c = parse(&sample()).expect("valid");
        assert_eq!(c.archive.table, "audit_logs");
        assert_eq!(c.archive.time_column, "created_at");
        assert_eq!(c.archive.dir, PathBuf::from("/mnt/cold_storage"));
        assert_eq!(c.backup.dir, PathBuf::from("/var/backups"));
        assert_eq!(c.trust.version, 1);
    }

    #[test]
    fn credentials_entries_decide_their_strategy_and_bad_ones_are_refused_naming_the_entry() {
        let entry = |body: &str| {
            format!("{}\n[[credentials]]\n{body}\nenv_files = [\"/etc/ransomeye/core.env\"]\nenv_keys = [\"DATABASE_URL\"]\n", sample())
        };
        let c = parse(&entry("role = \"core\"")).expect("single");
        assert!(!c.credentials[0].is_alternating());
        assert_eq!(c.credentials[0].role_names(), vec!["core"]);
        let c = parse(&entry("roles = [\"core_a\", \"core_b\"]")).expect("alternating");
        assert!(c.credentials[0].is_alternating());
        let text = c.to_toml(Path::new("x.toml")).expect("serialise");
        assert_eq!(parse(&text).expect("round trip"), c);
        for (body, says) in [
            ("role = \"a\"\nroles = [\"b\", \"c\"]", "not both"),
            ("roles = [\"a\", \"a\"]", "two different roles"),
            ("roles = [\"a\"]", "two different roles"),
            ("role = \"Core;drop\"", "not a plain role name"),
            ("", "`role` or `roles` is required"),
        ] {
            let err = parse(&entry(body)).expect_err(body).to_string();
            assert!(
                err.contains("[[credentials]] entry 1") && err.contains(says),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn serialised_config_parses_back_identically() {
        let c = parse(&sample()).expect("valid");
        let text = c.to_toml(Path::new("x.toml")).expect("serialise");
        assert_eq!(parse(&text).expect("round trip"), c);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = sample().replace("retention_days = 30", "retention_dayz = 30");
        let err = parse(&text).expect_err("typo").to_string();
        assert!(err.starts_with("/etc/ransomeye/kernel.toml:11:"), "{err}");
        assert!(err.contains("retention_dayz"), "{err}");
    }

    #[test]
    fn mistyped_value_names_the_key() {
        let text = sample().replace("retention_days = 30", "retention_days = \"thirty\"");
        let err = parse(&text).expect_err("wrong type").to_string();
        assert!(err.contains(":11:"), "{err}");
        assert!(err.contains("retention_days"), "{err}");
    }

    #[test]
    fn unsafe_table_name_is_rejected_with_its_line() {
        let text = sample().replace(
            "retention_days = 30",
            "table = \"audit_logs; drop table x\"",
        );
        let err = parse(&text).expect_err("injection").to_string();
        assert!(err.contains(":11:"), "{err}");
        assert!(err.contains("[archive] table"), "{err}");
    }

    #[test]
    fn bus_tls_files_parse_and_a_half_pair_or_relative_path_is_refused() {
        let tls = "url = \"tls://bus:4222\"\ntls_ca = \"/etc/ransomeye/tls/ca.crt\"\n\
                   tls_cert = \"/etc/ransomeye/tls/ops.crt\"\ntls_key = \"/etc/ransomeye/tls/ops.key\"";
        let c = parse(&sample().replace("url = \"nats://127.0.0.1:4222\"", tls)).expect("valid");
        assert_eq!(
            c.bus.tls_ca,
            Some(PathBuf::from("/etc/ransomeye/tls/ca.crt"))
        );
        assert_eq!(
            c.bus.tls_key,
            Some(PathBuf::from("/etc/ransomeye/tls/ops.key"))
        );
        let text = c.to_toml(Path::new("x.toml")).expect("serialise");
        assert_eq!(parse(&text).expect("round trip"), c);

        let half = sample().replace(
            "url = \"nats://127.0.0.1:4222\"",
            "url = \"tls://bus:4222\"\ntls_cert = \"/etc/ransomeye/tls/ops.crt\"",
        );
        let err = parse(&half).expect_err("cert without key").to_string();
        assert!(
            err.contains("[bus] tls_cert: is set without tls_key"),
            "{err}"
        );
        let relative = sample().replace(
            "url = \"nats://127.0.0.1:4222\"",
            "url = \"tls://bus:4222\"\ntls_ca = \"ca.crt\"",
        );
        let err = parse(&relative).expect_err("relative").to_string();
        assert!(
            err.contains("[bus] tls_ca: must be an absolute path"),
            "{err}"
        );
    }

    #[test]
    fn key_id_must_match_public_key() {
        let id = public_key_id(&hex::decode(PK).expect("hex")).to_string();
        let text = sample().replace(&id, "0000000000000000");
        let err = parse(&text).expect_err("mismatch").to_string();
        assert!(err.contains("[trust] key_id"), "{err}");
    }

    #[test]
    fn env_overrides_replace_urls() {
        let c = parse(&sample())
            .expect("valid")
            .with_env_overrides(|k| match k {
                ENV_DATABASE_URL => Some("postgres://other/db".into()),
                _ => None,
            });
        assert_eq!(c.database.url, "postgres://other/db");
        assert_eq!(c.bus.url, "nats://127.0.0.1:4222");
    }

    #[test]
    fn path_resolution_prefers_flag_then_env_then_default() {
        let env = std::ffi::OsStr::new("/from/env.toml");
        assert_eq!(
            resolve_path(Some(Path::new("/flag.toml")), Some(env)).path,
            PathBuf::from("/flag.toml")
        );
        assert_eq!(
            resolve_path(None, Some(env)).path,
            PathBuf::from("/from/env.toml")
        );
        assert_eq!(resolve_path(None, None).path, PathBuf::from(DEFAULT_PATH));
    }

    #[test]
    fn an_invalid_configuration_is_never_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kernel.toml");
        let mut c = parse(&sample()).expect("valid");
        c.create(&path).expect("create");
        let before = std::fs::read(&path).expect("read");
        c.archive.retention_days = 0;
        assert!(c.save(&path).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }

    #[test]
    fn save_replaces_atomically_and_keeps_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kernel.toml");
        let mut c = parse(&sample()).expect("valid");
        c.create(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(c.create(&path).is_err(), "create must not overwrite");
        c.archive.retention_days = 90;
        c.save(&path).expect("save");
        let source = resolve_path(Some(&path), None);
        assert_eq!(
            Config::load(&source).expect("load").archive.retention_days,
            90
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn set_values_changes_only_those_values_and_keeps_comments_and_layout() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kernel.toml");
        let id = public_key_id(&hex::decode(PK).expect("hex")).to_string();
        let original = sample()
            .replace("[bus]\n", "# the bus\n[bus]  # NATS\n")
            .replace("version = 1\n", "version = 1     # bumped by rotate-keys\n")
            .replace(&format!("key_id = \"{id}\""), &format!("key_id = '{id}'"));
        std::fs::write(&path, &original).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let other = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
        let other_id = public_key_id(&hex::decode(other).expect("hex")).to_string();
        set_values(
            &path,
            &[
                ("trust", "version", 2.into()),
                ("trust", "key_id", other_id.clone().into()),
                ("trust", "public_key", other.into()),
            ],
        )
        .expect("set");
        let edited = std::fs::read_to_string(&path).expect("read");
        let expected = original
            .replace("version = 1     #", "version = 2     #")
            .replace(
                &format!("key_id = '{id}'"),
                &format!("key_id = \"{other_id}\""),
            )
            .replace(PK, other);
        assert_eq!(edited, expected);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn set_values_never_writes_an_invalid_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kernel.toml");
        std::fs::write(&path, sample()).expect("write");
        // A key id that does not match the public key.
        let err = set_values(&path, &[("trust", "key_id", "0000000000000000".into())])
            .expect_err("mismatch");
        assert!(err.to_string().contains("[trust] key_id"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), sample());
        let err = set_values(&path, &[("archive", "retention_days", 0.into())]).expect_err("zero");
        assert!(err.to_string().contains("retention_days"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), sample());
    }

    #[test]
    fn set_values_appends_a_missing_key_to_its_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kernel.toml");
        std::fs::write(&path, sample()).expect("write");
        set_values(&path, &[("archive", "table", "audit_events".into())]).expect("set");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("retention_days = 30\ntable = \"audit_events\"\n"),
            "{text}"
        );
        assert_eq!(parse(&text).expect("valid").archive.table, "audit_events");
    }
}
