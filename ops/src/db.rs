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
            return Err(OpsError::new(
                Exit::Unavailable,
                format!("cannot connect to the database {}: {}", url.redacted(), first_line(&e.to_string())),
            )
            .hint("check that PostgreSQL is running and [database] url (or $RANSOMEYE_DATABASE_URL) is right; `ransomeye-ops health` tells more"))
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
    crate::failpoint::hold("db-connected");
    Ok(conn)
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

/// Maps a database error during `doing` to an operator error (69 for lost connections).
pub fn error(e: sqlx::Error, doing: &str) -> OpsError {
    let exit = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => {
            Exit::Unavailable
        }
        _ => Exit::Software,
    };
    let mut err = OpsError::new(
        exit,
        format!(
            "database error while {doing}: {}",
            first_line(&e.to_string())
        ),
    );
    if exit == Exit::Unavailable {
        err = err.hint("the database connection failed; nothing was deleted that is not in a verified archive. Rerun when the database is back");
    }
    err
}

/// `name` as a quoted SQL identifier (`a"b` → `"a""b"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The first line of a (possibly multi-line) driver error, for one-line messages.
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
