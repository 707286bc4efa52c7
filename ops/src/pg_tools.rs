//! Finding and running PostgreSQL's own client programs (`pg_dump`, `pg_restore`).
//!
//! The programs must be at least as new as the server they talk to (pg_dump refuses a newer
//! server) and as the dump they read. Debian installs one set per major version under
//! `/usr/lib/postgresql/<major>/bin` and a wrapper in `/usr/bin`, so the matching directory is
//! tried first, then `$PATH`. Connection URLs are passed without their password, which goes in
//! `PGPASSWORD`, so it never shows in `ps` or `/proc/<pid>/cmdline`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::db;
use crate::error::{Exit, OpsError};

/// Bytes of a program's stderr kept for the error message.
const STDERR_KEEP: usize = 16 * 1024;

/// libpq's TCP keepalive settings for the pg tools' connections: first probe after 60 s idle,
/// then every 10 s, given up after 6 unanswered.
const KEEPALIVES: [(&str, &str); 4] = [
    ("keepalives", "1"),
    ("keepalives_idle", "60"),
    ("keepalives_interval", "10"),
    ("keepalives_count", "6"),
];

/// A located client program and its major version.
#[derive(Debug, Clone)]
pub struct PgTool {
    /// Path of the executable.
    pub path: PathBuf,
    /// Its `--version` line, e.g. `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)`.
    pub version: String,
    /// Major version (15).
    pub major: u32,
}

impl PgTool {
    /// Finds `name` (pg_dump, pg_restore) of at least `min_major`: in `bin_dir` if given, else
    /// `/usr/lib/postgresql/<min_major>/bin`, else the newest `/usr/lib/postgresql/*/bin`, else
    /// `$PATH`. Exit 69 with the fix when none is found or it is too old.
    pub fn find(name: &str, min_major: u32, bin_dir: Option<&Path>) -> Result<PgTool, OpsError> {
        let mut candidates = Vec::new();
        if let Some(dir) = bin_dir {
            candidates.push(dir.join(name));
        } else {
            candidates.push(PathBuf::from(format!(
                "/usr/lib/postgresql/{min_major}/bin/{name}"
            )));
            let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let major = e.file_name().to_str()?.parse().ok()?;
                    Some((major, e.path().join("bin").join(name)))
                })
                .collect();
            installed.sort();
            candidates.extend(installed.into_iter().rev().map(|(_, p)| p));
            candidates.push(PathBuf::from(name));
        }
        let fix = format!(
            "install the PostgreSQL {min_major} client programs (Debian: `apt-get install postgresql-client-{min_major}`) or set [backup] pg_bin_dir"
        );
        let mut too_old = None;
        for candidate in candidates {
            let Some(tool) = PgTool::probe(&candidate) else {
                continue;
            };
            if tool.major >= min_major {
                return Ok(tool);
            }
            too_old.get_or_insert(tool);
        }
        Err(match too_old {
            Some(tool) => OpsError::new(
                Exit::Unavailable,
                format!(
                    "{} is version {}, but PostgreSQL {min_major} needs {name} {min_major} or newer",
                    tool.path.display(),
                    tool.major
                ),
            ),
            None => OpsError::new(Exit::Unavailable, format!("{name} not found")),
        }
        .hint(fix))
    }

    fn probe(path: &Path) -> Option<PgTool> {
        let out = Command::new(path)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let major = parse_major(&version)?;
        Some(PgTool {
            path: path.to_path_buf(),
            version,
            major,
        })
    }

    /// A command for this program that connects to `url`, and the URL to pass as `--dbname`.
    /// The URL is parsed once ([`PgUrl`]); its password (from the user info or a `password=`
    /// parameter) goes into the child's environment as `PGPASSWORD`, never onto its command line,
    /// where `ps` shows it to every user. `PGCONNECT_TIMEOUT` bounds libpq's connection set-up as
    /// [`db::connect`] bounds ours, and TCP keepalives (unless the URL sets its own) make a
    /// server that vanished from the network an error after about two minutes instead of a
    /// connection that waits forever.
    pub fn command_for(&self, url: &str) -> Result<(Command, String), OpsError> {
        let url = KEEPALIVES.iter().fold(db::parse_url(url)?, |url, (k, v)| {
            url.with_default_param(k, v)
        });
        let mut cmd = Command::new(&self.path);
        if let Some(password) = url.password() {
            cmd.env("PGPASSWORD", password);
        }
        cmd.env(
            "PGCONNECT_TIMEOUT",
            db::timeouts().connect.as_secs().max(2).to_string(),
        );
        cmd.env(
            "PGAPPNAME",
            format!("ransomeye-ops pid {}", std::process::id()),
        );
        Ok((cmd, url.without_password().to_string()))
    }

    /// A command for this program that does not connect anywhere.
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }
}

/// The major version in a `--version` line (`pg_dump (PostgreSQL) 15.20 …` → 15; `9.6.1` → 9).
pub fn parse_major(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Collects up to [`STDERR_KEEP`] bytes of a child's stderr on a thread, so the child never
/// blocks on a full pipe.
pub struct StderrTail(std::thread::JoinHandle<String>);

impl StderrTail {
    /// Starts reading `child`'s stderr (which must be piped).
    pub fn start(child: &mut Child) -> StderrTail {
        let stderr = child.stderr.take();
        StderrTail(std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut stderr) = stderr {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = STDERR_KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            String::from_utf8_lossy(&kept).trim().to_string()
        }))
    }

    /// What the child wrote to stderr.
    pub fn finish(self) -> String {
        self.0.join().unwrap_or_default()
    }
}

/// Kills a pg tool whose output stops flowing for longer than the answer timeout: `pg_dump`
/// talking to a server that stopped answering would otherwise wait forever (libpq has no read
/// timeout, and a stopped server's kernel still acknowledges every keepalive).
pub struct Stall {
    state: Arc<StallState>,
    watcher: std::thread::JoinHandle<()>,
}

struct StallState {
    last: Mutex<Instant>,
    done: AtomicBool,
    killed: AtomicBool,
}

/// What the reader of the tool's output touches on every chunk.
#[derive(Clone)]
pub struct Beat(Arc<StallState>);

impl Beat {
    /// Output arrived: the tool is making progress.
    pub fn touch(&self) {
        if let Ok(mut last) = self.0.last.lock() {
            *last = Instant::now();
        }
    }
}

impl Stall {
    /// Starts watching `child`, which must make progress at least every `limit`.
    pub fn watch(child: &Child, limit: Duration) -> Stall {
        let state = Arc::new(StallState {
            last: Mutex::new(Instant::now()),
            done: AtomicBool::new(false),
            killed: AtomicBool::new(false),
        });
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let watched = Arc::clone(&state);
        let period = (limit / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let watcher = std::thread::spawn(move || {
            while !watched.done.load(Ordering::Acquire) {
                let idle = watched.last.lock().map(|l| l.elapsed()).unwrap_or_default();
                if idle > limit {
                    watched.killed.store(true, Ordering::Release);
                    let _ = kill(pid, Signal::SIGKILL);
                    return;
                }
                std::thread::park_timeout(period);
            }
        });
        Stall { state, watcher }
    }

    /// The handle the output's reader touches.
    pub fn beat(&self) -> Beat {
        Beat(Arc::clone(&self.state))
    }

    /// Stops watching (call once the child has exited); true when the watch killed it.
    pub fn stop(self) -> bool {
        self.state.done.store(true, Ordering::Release);
        self.watcher.thread().unpark();
        let _ = self.watcher.join();
        self.state.killed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("pg_restore (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("no version here"), None);
    }

    #[test]
    fn a_silent_child_is_killed_and_a_talking_one_is_not() {
        let mut silent = Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        let stall = Stall::watch(&silent, Duration::from_millis(200));
        let status = silent.wait().expect("wait");
        assert!(stall.stop(), "the watch killed the silent child");
        assert!(!status.success());

        let mut talking = Command::new("sh")
            .args(["-c", "for i in 1 2 3 4 5 6; do echo $i; sleep 0.5; done"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stall = Stall::watch(&talking, Duration::from_secs(2));
        let beat = stall.beat();
        let mut out = talking.stdout.take().expect("stdout");
        let mut buf = [0u8; 64];
        while out.read(&mut buf).expect("read") > 0 {
            beat.touch();
        }
        assert!(talking.wait().expect("wait").success());
        assert!(!stall.stop(), "a child that keeps talking is left alone");
    }
}
