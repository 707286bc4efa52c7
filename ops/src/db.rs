//! Connecting to PostgreSQL and turning its errors into operator messages.

use sqlx::{Connection, PgConnection};

use crate::error::{Exit, OpsError};

/// Connects to the database, naming this run in `application_name` so that other sessions can
/// see who holds a lock (`pg_stat_activity`).
pub async fn connect(url: &str, purpose: &str) -> Result<PgConnection, OpsError> {
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(|e| {
        OpsError::new(
            Exit::Config,
            format!("[database] url is not a valid PostgreSQL URL: {e}"),
        )
    })?;
    let app = format!("ransomeye-ops {purpose} pid {}", std::process::id());
    // sqlx logs every statement slower than 1 s as a warning with its SQL: noise on an
    // operator's terminal (a vacuum or a prune batch may well take longer), never an error.
    let options = sqlx::ConnectOptions::disable_statement_logging(options);
    PgConnection::connect_with(&options.application_name(&app))
        .await
        .map_err(|e| {
            OpsError::new(Exit::Unavailable, format!("cannot connect to the database: {}", first_line(&e.to_string())))
                .hint("check that PostgreSQL is running and [database] url (or $RANSOMEYE_DATABASE_URL) is right; `ransomeye-ops health` tells more")
        })
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
