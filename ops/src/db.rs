//! Connecting to PostgreSQL, bounding every wait for it, and turning its errors into operator
//! messages.
//!
//! A database that accepts connections but never answers (a hung server, a stopped process, a
//! dead network path that still looks open) must not hang the tool. Two bounds from
//! `[database]` cover every wait: `connect_timeout_secs` for connecting and logging in, and
//! `answer_timeout_secs` for each answer once connected (a statement's reply, the next chunk of
//! a COPY stream). The second is not a statement timeout: a long COPY that keeps streaming is
//! never cut short, only one that stops answering. Both are read once from the configuration
//! ([`configure`], called when a command loads it) and apply to every connection of the run.
//! A wait for another session's lock is bounded a little below the answer timeout by
//! `lock_timeout`, so that it reports a held lock (75), not a dead server (69).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use ransomeye_kernel::config;
use ransomeye_kernel::conn_url::PgUrl;
use sqlx::{Connection, PgConnection};

use crate::error::{Exit, OpsError};

/// How long the tool waits for the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To connect and log in.
    pub connect: Duration,
    /// For each answer once connected.
    pub answer: Duration,
}

static TIMEOUTS: OnceLock<Timeouts> = OnceLock::new();

/// Sets the run's timeouts from `[database]`. The first call wins: one run, one configuration.
pub fn configure(database: &config::Database) {
    let _ = TIMEOUTS.set(Timeouts {
        connect: Duration::from_secs(database.connect_timeout_secs.into()),
        answer: Duration::from_secs(database.answer_timeout_secs.into()),
    });
}

/// The run's timeouts (the configuration's defaults before [`configure`]).
pub fn timeouts() -> Timeouts {
    *TIMEOUTS.get_or_init(|| {
        let defaults = config::Database::new(String::new());
        Timeouts {
            connect: Duration::from_secs(defaults.connect_timeout_secs.into()),
            answer: Duration::from_secs(defaults.answer_timeout_secs.into()),
        }
    })
}

/// Parses a PostgreSQL URL (from the configuration or the command line); the error never
/// repeats the URL, which may hold a password.
pub fn parse_url(url: &str) -> Result<PgUrl, OpsError> {
    parse_url_as(url, "the database URL", Exit::Config)
}

/// Checks a URL given on the command line (`--target-database-url`): a usage error (64) that
/// names the option, never the URL.
pub fn check_cli_url(option: &str, url: &str) -> Result<(), OpsError> {
    parse_url_as(url, option, Exit::Usage).map(|_| ())
}

/// Parses `url`, naming it `what` in the error, which exits with `exit`.
fn parse_url_as(url: &str, what: &str, exit: Exit) -> Result<PgUrl, OpsError> {
    PgUrl::parse(url).map_err(|e| {
        OpsError::new(exit, format!("{what} is not a valid PostgreSQL URL: {e}"))
        .hint("write it as postgres://USER@HOST:PORT/DATABASE (the password, if any, as USER:PASSWORD@ or ?password=)")
    })
}

/// Connects to the database, naming this run in `application_name` so that other sessions can
/// see who holds a lock (`pg_stat_activity`). Gives up after the connect timeout (69).
pub async fn connect(url: &str, purpose: &str) -> Result<PgConnection, OpsError> {
    let url = parse_url(url)?;
    let mut options: sqlx::postgres::PgConnectOptions =
        url.without_password().parse().map_err(|e| {
            OpsError::new(
                Exit::Config,
                format!("the database URL is not a valid PostgreSQL URL: {e}"),
            )
        })?;
    if let Some(password) = url.password() {
        options = options.password(password);
    }
    let app = format!("ransomeye-ops {purpose} pid {}", std::process::id());
    // sqlx logs every statement slower than 1 s as a warning with its SQL: noise on an
    // operator's terminal (a vacuum or a prune batch may well take longer), never an error.
    let options = sqlx::ConnectOptions::disable_statement_logging(options);
    let limit = timeouts().connect;
    let conn = match tokio::time::timeout(limit, PgConnection::connect_with(&options.application_name(&app))).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            let class = classify(&e);
            let mut err = OpsError::new(
                class.exit,
                format!("cannot connect to the database {}: {}", url.redacted(), message(&e)),
            )
            .hint(class.hint);
            err.from_database = true;
            return Err(err);
        }
        Err(_) => {
            return Err(OpsError::new(
                Exit::Unavailable,
                format!(
                    "the database {} did not answer within {} s while connecting and logging in",
                    url.redacted(),
                    limit.as_secs()
                ),
            )
            .hint("something accepts connections there but does not answer like PostgreSQL: check the server (is it hung or stopped?) and [database] url; [database] connect_timeout_secs sets the wait"))
        }
    };
    let mut conn = conn;
    bound_lock_waits(&mut conn).await?;
    crate::failpoint::hold("db-connected");
    Ok(conn)
}

/// A wait for a lock another session holds is not a dead server: it gets a `lock_timeout` a
/// little shorter than the answer timeout, so that it ends as "a lock is held, retry later"
/// (55P03, exit 75) rather than "the database did not answer" (69). A shorter `lock_timeout`
/// the administrator set (server, database or role) is kept.
async fn bound_lock_waits(conn: &mut PgConnection) -> Result<(), OpsError> {
    let answer = timeouts().answer;
    let margin = (answer / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let limit_ms = i64::try_from(answer.saturating_sub(margin).as_millis())
        .unwrap_or(i64::MAX)
        .clamp(1, i64::from(i32::MAX));
    sqlx::query(
        "select set_config('lock_timeout', $1 || 'ms', false) \
         where (select setting::int8 from pg_settings where name = 'lock_timeout') not between 1 and $2",
    )
    .bind(limit_ms.to_string())
    .bind(limit_ms)
    .execute(&mut *conn)
    .answer("setting the lock timeout")
    .await
    .map(|_| ())
}

/// Bounds one wait for the database by the answer timeout: `query.fetch_one(&mut *conn)
/// .answer("computing the cutoff").await?`.
pub trait Answer<T>: Future<Output = Result<T, sqlx::Error>> + Sized {
    /// Awaits the database's answer while `doing` something; a database error becomes an
    /// [`OpsError`] ([`error`]), and no answer within the answer timeout becomes exit 69.
    fn answer(self, doing: &str) -> impl Future<Output = Result<T, OpsError>> + Send
    where
        Self: Send,
        T: Send;
}

impl<F, T> Answer<T> for F
where
    F: Future<Output = Result<T, sqlx::Error>> + Sized,
{
    async fn answer(self, doing: &str) -> Result<T, OpsError>
    where
        Self: Send,
        T: Send,
    {
        let limit = timeouts().answer;
        match tokio::time::timeout(limit, self).await {
            Ok(result) => result.map_err(|e| error(e, doing)),
            Err(_) => Err(no_answer(limit, doing)),
        }
    }
}

/// Bounds a wait for the database that is not a query of ours (the next chunk of a stream, a
/// commit whose result is ignored) by the answer timeout.
pub async fn bounded<T>(wait: impl Future<Output = T>, doing: &str) -> Result<T, OpsError> {
    let limit = timeouts().answer;
    tokio::time::timeout(limit, wait)
        .await
        .map_err(|_| no_answer(limit, doing))
}

/// The error for a database that stopped answering while `doing` something.
pub fn no_answer(limit: Duration, doing: &str) -> OpsError {
    OpsError::new(
        Exit::Unavailable,
        format!(
            "the database did not answer within {} s while {doing}",
            limit.as_secs()
        ),
    )
    .hint("check the server (is it hung, stopped or unreachable?); nothing was lost. Rerun when it answers; [database] answer_timeout_secs sets the wait")
}

/// Maps a database error during `doing` to an operator error: the one place that decides a
/// database failure's exit code, from the server's SQLSTATE or the connection's I/O error kind.
/// The message quotes the server's own message (not its source position); the hint says what to
/// do about that class of failure. What the failed command left intact is added by the command
/// ([`OpsError::with_guarantee`]), since only it knows.
pub fn error(e: sqlx::Error, doing: &str) -> OpsError {
    let class = classify(&e);
    let mut err = OpsError::new(
        class.exit,
        format!("database error while {doing}: {}", message(&e)),
    );
    err.from_database = true;
    err.hint(class.hint)
}

/// What the tool makes of one kind of database failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// The exit code.
    pub exit: Exit,
    /// What to do about it.
    pub hint: &'static str,
}

/// Classifies a database failure by SQLSTATE (class first, then the few single codes that
/// differ from their class) and, for a failed connection, by its I/O error kind.
pub fn classify(e: &sqlx::Error) -> Class {
    match e {
        sqlx::Error::Database(db) => classify_sqlstate(db.code().as_deref().unwrap_or("")),
        // rustls reports a refused certificate as an I/O error; its text tells it apart.
        sqlx::Error::Io(io) if is_tls_failure(&io.to_string()) => TLS_FAILED,
        sqlx::Error::Io(io) => classify_io(io.kind()),
        sqlx::Error::Tls(_) => TLS_FAILED,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => classify_io(std::io::ErrorKind::ConnectionAborted),
        _ => Class {
            exit: Exit::Software,
            hint: "this is a bug in ransomeye-ops; please report it with the message above",
        },
    }
}

/// A TLS handshake with the database that failed.
const TLS_FAILED: Class = Class {
    exit: Exit::Unavailable,
    hint: "the TLS connection to the database failed: with sslmode=verify-full the server's certificate must chain to sslrootcert and carry the host name of [database] url; check sslmode, sslrootcert, sslcert and sslkey there",
};

/// Whether an I/O error's text is a TLS handshake's failure.
fn is_tls_failure(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["certificate", "tls", "handshake"]
        .iter()
        .any(|w| text.contains(w))
}

/// The class of a SQLSTATE (PostgreSQL manual, appendix A).
pub fn classify_sqlstate(code: &str) -> Class {
    const LOST: &str = "the database connection failed or the server shut down; rerun when the database is back (`ransomeye-ops health` tells more)";
    match code {
        c if c.starts_with("28") => Class {
            exit: Exit::NoPerm,
            hint: "the server refused the login: check the user and password in [database] url (or $RANSOMEYE_DATABASE_URL) and pg_hba.conf",
        },
        "42501" => Class {
            exit: Exit::NoPerm,
            hint: "the role in [database] url lacks a privilege this needs: run it as the RansomEye database owner, or grant the privilege",
        },
        c if c.starts_with("08") => Class {
            exit: Exit::Unavailable,
            hint: LOST,
        },
        "57P01" | "57P02" | "57P03" => Class {
            exit: Exit::Unavailable,
            hint: LOST,
        },
        "55P03" | "40001" | "40P01" => Class {
            exit: Exit::TempFail,
            hint: "another session holds a lock this needs, or a concurrent change conflicted; rerun later (pg_locks shows who holds it)",
        },
        "57014" | "53300" => Class {
            exit: Exit::TempFail,
            hint: "the server cancelled the statement or has no free connection; rerun later",
        },
        "53100" => Class {
            exit: Exit::Io,
            hint: "the database server's disk is full: free space there, then rerun",
        },
        "42P01" | "42703" | "3F000" => Class {
            exit: Exit::Config,
            hint: "a table or column RansomEye needs is missing: check that [database] url points at the RansomEye database and that its schema is installed",
        },
        "3D000" => Class {
            exit: Exit::Config,
            hint: "that database does not exist: fix the database name in [database] url (or $RANSOMEYE_DATABASE_URL)",
        },
        _ => Class {
            exit: Exit::Software,
            hint: "the server refused a statement of ransomeye-ops: this is a bug; please report it with the message above",
        },
    }
}

/// The class of an I/O failure on the database connection.
pub fn classify_io(kind: std::io::ErrorKind) -> Class {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::StorageFull => Class {
            exit: Exit::Io,
            hint: "a disk is full: free space there, then rerun",
        },
        ErrorKind::ConnectionRefused => Class {
            exit: Exit::Unavailable,
            hint: "nothing accepts connections there: check that PostgreSQL is running and [database] url (or $RANSOMEYE_DATABASE_URL) is right",
        },
        _ => Class {
            exit: Exit::Unavailable,
            hint: "the database connection failed; rerun when the database is back (`ransomeye-ops health` tells more)",
        },
    }
}

/// A driver error as one line for an operator: the server's message without the server's
/// source position (`at line 334` is in PostgreSQL's C code, not in anything the user wrote).
pub fn message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => first_line(&other.to_string()).to_string(),
    }
}

/// `name` as a quoted SQL identifier (`a"b` → `"a""b"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The first line of a (possibly multi-line) driver error, for one-line messages.
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_and_io_kinds_map_to_the_documented_exit_codes() {
        for (code, exit) in [
            ("28P01", Exit::NoPerm),
            ("28000", Exit::NoPerm),
            ("42501", Exit::NoPerm),
            ("08006", Exit::Unavailable),
            ("08001", Exit::Unavailable),
            ("57P01", Exit::Unavailable),
            ("57P02", Exit::Unavailable),
            ("57P03", Exit::Unavailable),
            ("55P03", Exit::TempFail),
            ("40001", Exit::TempFail),
            ("40P01", Exit::TempFail),
            ("53100", Exit::Io),
            ("42P01", Exit::Config),
            ("42703", Exit::Config),
            ("3D000", Exit::Config),
            ("XX000", Exit::Software),
            ("22012", Exit::Software),
        ] {
            assert_eq!(classify_sqlstate(code).exit, exit, "{code}");
        }
        use std::io::ErrorKind;
        for (kind, exit) in [
            (ErrorKind::ConnectionRefused, Exit::Unavailable),
            (ErrorKind::ConnectionReset, Exit::Unavailable),
            (ErrorKind::ConnectionAborted, Exit::Unavailable),
            (ErrorKind::StorageFull, Exit::Io),
        ] {
            assert_eq!(classify_io(kind).exit, exit, "{kind:?}");
        }
    }

    #[test]
    fn only_database_failures_get_the_commands_guarantee() {
        let db = error(
            sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
            "counting rows",
        )
        .with_guarantee("nothing was deleted");
        assert_eq!(db.exit, Exit::Unavailable);
        assert!(db
            .hint
            .as_deref()
            .is_some_and(|h| h.ends_with("; nothing was deleted")));
        let other = OpsError::new(Exit::Io, "disk").with_guarantee("nothing was deleted");
        assert_eq!(other.hint, None);
    }
}
