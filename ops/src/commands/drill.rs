//! `drill`: a disaster-recovery drill that never touches production.
//!
//! [`run`] reads as the procedure: newest backup → remove the scratch databases of earlier
//! drills that were killed → restore the backup (which verifies it first and compares row
//! counts and the intel graph digest) into a new scratch database `ransomeye_drill_<ts>_<pid>`
//! on the same server (or an empty `--target-database-url`) → drop the scratch database, also
//! after a failure or a signal → report pass/fail and the measured restore time (RTO).
//!
//! A scratch database is marked as ours when it is created: its comment names the session that
//! created it (backend pid and start time), and that session stays open until the drill ends.
//! A later drill drops only databases named `ransomeye_drill_*` that carry such a mark and
//! whose session is gone — a killed drill's leftovers, never anything else.

use std::time::Instant;

use ransomeye_kernel::keys::{KeyDir, KeyPurpose};
use sqlx::AssertSqlSafe;

use super::{say, Context};
use crate::backup_set::check::{self, Tools};
use crate::backup_set::manifest;
use crate::cli::DrillArgs;
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::interrupt;
use crate::recovery::{self, Plan};
use crate::utils::{elapsed_ms, print_json, runtime};
use ransomeye_kernel::config::with_database;

/// Runs `drill`.
pub fn run(ctx: &Context, args: &DrillArgs) -> Result<(), OpsError> {
    let started = Instant::now();
    if let Some(url) = &args.target_database_url {
        crate::db::check_cli_url("--target-database-url", url)?;
    }
    let config = ctx.config()?;
    crate::dirs::check_readable(&config.backup.dir, "[backup] dir")?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Backup)?;
    let trust = crate::trust::verifying_keys(&config)?;
    let Some(newest) = manifest::list(&config.backup.dir)?.pop() else {
        return Err(OpsError::new(
            Exit::NoInput,
            format!("no backup in {} to drill with", config.backup.dir.display()),
        )
        .hint("take one with `ransomeye-ops backup`"));
    };
    let paths = check::locate(&newest.manifest, &config.backup.dir)?;
    let rt = runtime()?;
    interrupt::install()?;
    let mut leftovers = Vec::new();
    let mut scratch_name = None;
    let result = rt.block_on(async {
        let (target_url, scratch) = match &args.target_database_url {
            Some(url) => (url.clone(), None),
            None => {
                let mut admin = db::connect(&config.database.url, "drill").await?;
                leftovers = remove_leftovers(&mut admin).await?;
                let name = format!("ransomeye_drill_{}_{}", chrono_stamp(), std::process::id());
                create_scratch(&mut admin, &name).await?;
                scratch_name = Some(name.clone());
                (
                    with_database(&config.database.url, &name),
                    Some((admin, name)),
                )
            }
        };
        let plan = Plan {
            paths: paths.clone(),
            key: &key,
            trust_keys: trust,
            tools: Tools::new(config.backup.pg_bin_dir.clone()),
            target_url,
            files_to: None,
            clean: false,
            yes: false,
            services: None,
            exclusive: false,
            progress: ctx.progress("restoring into the scratch database", "bytes"),
        };
        let phase = Instant::now();
        let outcome = recovery::restore(&plan).await;
        let rto_ms = elapsed_ms(phase);
        if let Some((mut admin, name)) = scratch {
            // Dropped whatever happened, a signal included; a leftover would be noticed only by
            // disk usage (and removed by the next drill).
            drop_database(&mut admin, &name).await?;
            if let (Some(signal), Err(_)) = (interrupt::received(), &outcome) {
                return Err(interrupt::stopped(
                    signal,
                    format!("the drill did not finish; its scratch database {name} was dropped"),
                ));
            }
        }
        outcome.map(|o| (o, rto_ms))
    });
    rt.shutdown_background();
    let (outcome, rto_ms) = result?;
    let passed = outcome.mismatches.is_empty();
    if ctx.json {
        print_json(&serde_json::json!({
            "status": if passed { "passed" } else { "failed" },
            "backup": outcome.backup,
            "rto_ms": rto_ms,
            "scratch_database": scratch_name,
            "leftovers_removed": leftovers,
            "outcome": outcome,
            "duration_ms": elapsed_ms(started),
        }))?;
    } else {
        for name in &leftovers {
            say!(
                ctx,
                "removed {name}, the scratch database of an earlier drill that was killed"
            );
        }
        say!(ctx,
            "drill {}: backup {} (snapshot {}) restored and checked in {:.0} ms (verify {:.0} ms, restore {:.0} ms, compare {:.0} ms)",
            if passed { "PASSED" } else { "FAILED" },
            outcome.backup,
            outcome.snapshot_time,
            rto_ms,
            outcome.verify_ms,
            outcome.restore_ms,
            outcome.compare_ms
        );
        say!(
            ctx,
            "  {} tables, {} rows match; intel graph digest {}",
            outcome.tables_checked,
            outcome.rows,
            if outcome.intel_digest_matches {
                "matches"
            } else {
                "DIFFERS"
            }
        );
    }
    recovery::mismatch_error(&outcome)
}

/// The comment that marks a scratch database as a drill's, followed by the creating session's
/// backend pid and start time (microseconds since the epoch).
const MARK: &str = "ransomeye-ops drill scratch database; created by session";

/// The creating session's identity as the server reports it: pid and start time.
const SESSION: &str = "select pid, (extract(epoch from backend_start) * 1000000)::int8 \
                       from pg_stat_activity where pid = $1";

/// Creates the scratch database `name` and marks it as this session's (see the module comment).
async fn create_scratch(admin: &mut sqlx::PgConnection, name: &str) -> Result<(), OpsError> {
    sqlx::query(AssertSqlSafe(format!(
        "create database {}",
        db::quote_ident(name)
    )))
    .execute(&mut *admin)
    .answer("creating the drill's scratch database")
    .await
    .map_err(|e| match e.exit {
        Exit::NoPerm => e.hint("the role in [database] url needs CREATEDB for the scratch database (ALTER ROLE ... CREATEDB), or pass --target-database-url of an empty database"),
        _ => e,
    })?;
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *admin)
        .answer("reading this session's pid")
        .await?;
    let me: Result<(i32, Option<i64>), _> = sqlx::query_as(SESSION)
        .bind(pid)
        .fetch_one(&mut *admin)
        .answer("reading this session's start time")
        .await;
    let marked = match me {
        Ok((pid, Some(start))) => {
            // COMMENT takes no parameters; the text is ours (digits and a constant).
            sqlx::query(AssertSqlSafe(format!(
                "comment on database {} is '{MARK} {pid} {start}'",
                db::quote_ident(name)
            )))
            .execute(&mut *admin)
            .answer("marking the drill's scratch database")
            .await
        }
        Ok((_, None)) => Err(OpsError::new(
            Exit::Software,
            "the server hides this session's start time",
        )),
        Err(e) => Err(e),
    };
    if let Err(e) = marked {
        drop_database(admin, name).await?;
        return Err(e);
    }
    Ok(())
}

/// Drops `name` (terminating sessions still in it, e.g. a pg_restore of a killed run).
async fn drop_database(admin: &mut sqlx::PgConnection, name: &str) -> Result<(), OpsError> {
    sqlx::query(AssertSqlSafe(format!(
        "drop database if exists {} with (force)",
        db::quote_ident(name)
    )))
    .execute(&mut *admin)
    .answer(&format!("dropping the scratch database {name}"))
    .await?;
    Ok(())
}

/// Drops the scratch databases of earlier drills that were killed: named `ransomeye_drill_*`,
/// marked by [`create_scratch`], and whose creating session is gone. A database whose creator
/// may still be running (or cannot be seen) is left alone, as is anything without the mark.
/// Returns the names dropped; a failure to drop one is a warning, not the drill's failure.
async fn remove_leftovers(admin: &mut sqlx::PgConnection) -> Result<Vec<String>, OpsError> {
    let candidates: Vec<(String, Option<String>)> = sqlx::query_as(
        "select datname::text, shobj_description(oid, 'pg_database') from pg_database \
         where datname like 'ransomeye\\_drill\\_%' order by datname",
    )
    .fetch_all(&mut *admin)
    .answer("looking for leftover scratch databases")
    .await?;
    let mut removed = Vec::new();
    for (name, comment) in candidates {
        let Some((pid, start)) = comment.as_deref().and_then(parse_mark) else {
            tracing::info!("{name} is not marked as a drill's scratch database; left alone");
            continue;
        };
        let creator: Option<(i32, Option<i64>)> = sqlx::query_as(SESSION)
            .bind(pid)
            .fetch_optional(&mut *admin)
            .answer("looking for a scratch database's creator")
            .await?;
        let gone = match creator {
            None => true,
            // The pid was reused by a later session.
            Some((_, Some(s))) => s != start,
            // Hidden from us (another role's session): it may be alive.
            Some((_, None)) => false,
        };
        if !gone {
            continue;
        }
        match drop_database(admin, &name).await {
            Ok(()) => {
                tracing::warn!(
                    "removed {name}, the scratch database of an earlier drill that was killed"
                );
                removed.push(name);
            }
            Err(e) => tracing::warn!("cannot remove the leftover {name}: {}", e.what),
        }
    }
    Ok(removed)
}

/// The creator's (pid, start) from a scratch database's comment, if it is our mark.
fn parse_mark(comment: &str) -> Option<(i32, i64)> {
    let rest = comment.strip_prefix(MARK)?.strip_prefix(' ')?;
    let (pid, start) = rest.split_once(' ')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// UTC `YYYYMMDDTHHMMSSZ` from the system clock, for scratch database names.
fn chrono_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
        .replace(['-', ':'], "")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_exact_mark_names_a_creator() {
        assert_eq!(
            parse_mark(&format!("{MARK} 4242 1764601200123456")),
            Some((4242, 1764601200123456))
        );
        assert_eq!(parse_mark("a database of someone else"), None);
        assert_eq!(parse_mark(&format!("{MARK} 4242")), None);
        assert_eq!(parse_mark(&format!("{MARK} x 1")), None);
        assert_eq!(parse_mark(&format!("{MARK}4242 1")), None);
    }
}
