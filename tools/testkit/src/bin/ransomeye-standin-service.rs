//! `ransomeye-standin-service`: a stand-in for a RansomEye service that logs into PostgreSQL
//! with the login its `.env` file holds, for the `rotate-db-creds` tests and the demo.
//!
//! `ransomeye-standin-service --env-file FILE --key KEY --state DIR [--pool N] [--every-ms MS]`
//!
//! It reads `KEY` (a `postgres://` URL with user and password) from the dotenv file once, at
//! start, as a service does; opens a pool of `N` connections (default 3) and exits 1 when it
//! cannot; writes `DIR/ready` (its pid) once the pool is up; then, every `MS` milliseconds
//! (default 5), opens a fresh connection, runs `select 1` on it and on one pool connection, and
//! closes it, until killed or until `DIR` is removed. Every failed login is appended to
//! `DIR/failed-logins` (time, user, SQLSTATE; never the password), and the count of successful
//! fresh logins is kept in `DIR/logins-ok`. The password is never on its command line: only the
//! file's path is.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{ConnectOptions, Connection, PgConnection};

struct Args {
    env_file: PathBuf,
    key: String,
    state: PathBuf,
    pool: usize,
    every: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut env_file = None;
    let mut key = None;
    let mut state = None;
    let mut pool = 3;
    let mut every = Duration::from_millis(5);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--env-file" => env_file = Some(PathBuf::from(value()?)),
            "--key" => key = Some(value()?),
            "--state" => state = Some(PathBuf::from(value()?)),
            "--pool" => pool = value()?.parse().map_err(|e| format!("--pool: {e}"))?,
            "--every-ms" => {
                every =
                    Duration::from_millis(value()?.parse().map_err(|e| format!("--every-ms: {e}"))?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        env_file: env_file.ok_or("--env-file is required")?,
        key: key.ok_or("--key is required")?,
        state: state.ok_or("--state is required")?,
        pool,
        every,
    })
}

/// The value of `key` in dotenv text: `KEY=value`, `KEY="value"`, `KEY='value'`, optionally
/// after `export `; comments and blank lines skipped.
fn dotenv_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let unquoted = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        Some(unquoted.to_string())
    })
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn append(path: &Path, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Writes `path` whole by rename, so that a reader never sees it half-written.
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    if std::fs::write(&temp, text).is_ok() {
        let _ = std::fs::rename(&temp, path);
    }
}

/// Records a failed connection: a login refused (SQLSTATE 28xxx) or anything else.
fn record_failure(args: &Args, user: &str, e: &sqlx::Error) {
    let code = match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    let code = code.unwrap_or_else(|| "other".into());
    append(
        &args.state.join("failed-logins"),
        &format!("{} {} {} pid {}", now_ms(), user, code, std::process::id()),
    );
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    let text = match std::fs::read_to_string(&args.env_file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", args.env_file.display());
            return ExitCode::from(66);
        }
    };
    let Some(url) = dotenv_value(&text, &args.key) else {
        eprintln!("error: {} has no {}", args.env_file.display(), args.key);
        return ExitCode::from(78);
    };
    let options: sqlx::postgres::PgConnectOptions = match url.parse() {
        Ok(o) => o,
        Err(_) => {
            eprintln!(
                "error: {} in {} is not a URL",
                args.key,
                args.env_file.display()
            );
            return ExitCode::from(78);
        }
    };
    let options = options
        .application_name("ransomeye-standin-service")
        .disable_statement_logging();
    let user = options.get_username().to_string();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(async move {
        let connect = || async {
            tokio::time::timeout(Duration::from_secs(5), options.connect())
                .await
                .unwrap_or(Err(sqlx::Error::PoolTimedOut))
        };
        let mut pool: Vec<PgConnection> = Vec::new();
        for _ in 0..args.pool {
            match connect().await {
                Ok(c) => pool.push(c),
                Err(e) => {
                    record_failure(&args, &user, &e);
                    eprintln!("error: cannot log in as {user}: {e}");
                    return ExitCode::from(69);
                }
            }
        }
        replace(
            &args.state.join("ready"),
            &format!("{}\n", std::process::id()),
        );
        let mut ok: u64 = 0;
        let mut turn = 0;
        // Runs until killed, or until its state directory is gone (its test or demo ended
        // without stopping it): a stray stand-in must not outlive what it reports to.
        while args.state.is_dir() {
            match connect().await {
                Ok(mut c) => {
                    if sqlx::query("select 1").execute(&mut c).await.is_ok() {
                        ok += 1;
                        if ok.is_multiple_of(10) {
                            replace(&args.state.join("logins-ok"), &format!("{ok}\n"));
                        }
                    }
                    let _ = c.close().await;
                }
                Err(e) => record_failure(&args, &user, &e),
            }
            if !pool.is_empty() {
                turn = (turn + 1) % pool.len();
                let _ = sqlx::query("select 1").execute(&mut pool[turn]).await;
            }
            tokio::time::sleep(args.every).await;
        }
        ExitCode::SUCCESS
    })
}
