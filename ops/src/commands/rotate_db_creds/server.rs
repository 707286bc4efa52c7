//! What the rotation asks of PostgreSQL: whether a role may be rotated by us, its stored
//! verifier, setting a verifier (never a password), and a fresh login with the new password.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection};

use super::secret::is_verifier;
use crate::db::{self, quote_ident, Answer};
use crate::error::{Exit, OpsError};

/// Checks that `role` exists, is not a superuser, is not the role we are logged in as, and that
/// we may alter it (superuser, or CREATEROLE) and read its verifier; returns the verifier
/// (`None` when the role has no password).
pub async fn check_role(conn: &mut PgConnection, role: &str) -> Result<Option<String>, OpsError> {
    let me: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&mut *conn)
        .answer("reading current_user")
        .await?;
    if me == role {
        return Err(OpsError::new(
            Exit::Config,
            format!("role `{role}` is the role [database] url logs in as: the tool does not rotate its own login"),
        )
        .hint("rotate it by hand, or have [database] url use another role with CREATEROLE"));
    }
    let found: Option<bool> =
        sqlx::query_scalar("select rolsuper from pg_roles where rolname = $1")
            .bind(role)
            .fetch_optional(&mut *conn)
            .answer("looking up the role")
            .await?;
    match found {
        None => {
            return Err(OpsError::new(
                Exit::Config,
                format!("role `{role}` does not exist on the database server"),
            )
            .hint("create it (CREATE ROLE … LOGIN) or fix [[credentials]] in the configuration"))
        }
        Some(true) => {
            return Err(OpsError::new(
                Exit::Config,
                format!(
                    "role `{role}` is a superuser: the tool does not rotate superuser passwords"
                ),
            )
            .hint("services should not log in as a superuser; give the service a role of its own"))
        }
        Some(false) => {}
    }
    let may_alter: bool = sqlx::query_scalar(
        "select rolsuper or rolcreaterole from pg_roles where rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .answer("checking our own privileges")
    .await?;
    if !may_alter {
        return Err(OpsError::new(
            Exit::NoPerm,
            format!("role `{me}` may not change the password of `{role}` (it has neither SUPERUSER nor CREATEROLE)"),
        )
        .hint("have [database] url log in as a role allowed to ALTER ROLE the configured roles"));
    }
    let verifier: Result<Option<String>, OpsError> =
        sqlx::query_scalar("select rolpassword from pg_authid where rolname = $1")
            .bind(role)
            .fetch_one(&mut *conn)
            .answer("reading the role's stored verifier")
            .await;
    let verifier = verifier.map_err(|e| {
        OpsError::new(
            Exit::NoPerm,
            format!("role `{me}` cannot read the stored verifier of `{role}` (pg_authid): {}", e.what),
        )
        .hint("a rollback restores the exact old verifier, which needs read access to pg_authid (a superuser, or GRANT SELECT ON pg_authid)")
    })?;
    match verifier {
        Some(v) if !is_verifier(&v) => Err(OpsError::new(
            Exit::Data,
            format!("role `{role}` has a stored password that is neither SCRAM-SHA-256 nor md5"),
        )),
        v => Ok(v),
    }
}

/// Stores `verifier` (a SCRAM-SHA-256 or md5 verifier, or `None`: no password) as the password
/// of `role`. PostgreSQL stores a verifier given as the password as it is, so no password is
/// ever sent; utility statements take no parameters, so the (checked) verifier is a literal.
pub async fn set_verifier(
    conn: &mut PgConnection,
    role: &str,
    verifier: Option<&str>,
) -> Result<(), OpsError> {
    let literal = match verifier {
        Some(v) if is_verifier(v) => format!("'{v}'"),
        Some(_) => {
            return Err(OpsError::new(
                Exit::Software,
                "refusing to send something that is not a verifier as a password",
            ))
        }
        None => "NULL".to_string(),
    };
    let sql = format!("ALTER ROLE {} PASSWORD {literal}", quote_ident(role));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .answer(&format!("setting the password of role {role}"))
        .await?;
    Ok(())
}

/// A fresh login as `role` with `password` on the server and database of `url`, asking
/// `select current_user`; `Err` says why it failed (without the password).
pub async fn test_login(url: &str, role: &str, password: &str) -> Result<(), String> {
    let base = db::parse_url(url).map_err(|e| e.what)?;
    let options: sqlx::postgres::PgConnectOptions = base
        .without_password()
        .parse()
        .map_err(|e| format!("the database URL: {e}"))?;
    let options = options
        .username(role)
        .password(password)
        .application_name(&format!(
            "ransomeye-ops rotate-db-creds test pid {}",
            std::process::id()
        ))
        .disable_statement_logging();
    let limit = db::timeouts().connect.max(Duration::from_secs(1));
    let mut conn = match tokio::time::timeout(limit, options.connect()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(format!("login as {role} failed: {}", db::message(&e))),
        Err(_) => {
            return Err(format!(
                "login as {role} did not complete within {} s",
                limit.as_secs()
            ))
        }
    };
    let user: Result<String, sqlx::Error> = match tokio::time::timeout(
        db::timeouts().answer,
        sqlx::query_scalar("select current_user::text").fetch_one(&mut conn),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => {
            return Err(format!(
                "logged in as {role}, but `select current_user` got no answer"
            ))
        }
    };
    let _ = conn.close().await;
    match user {
        Ok(u) if u == role => Ok(()),
        Ok(u) => Err(format!("logged in as {role} but current_user is {u}")),
        Err(e) => Err(format!(
            "logged in as {role}, but `select current_user` failed: {}",
            db::message(&e)
        )),
    }
}
