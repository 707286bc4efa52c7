//! `drill`: a disaster-recovery drill that never touches production.
//!
//! [`run`] reads as the procedure: newest backup → restore it (which verifies it first and
//! compares row counts and the intel graph digest) into a scratch database
//! `ransomeye_drill_<ts>` on the same server (or an empty `--target-database-url`) → drop the
//! scratch database → report pass/fail and the measured restore time (RTO).

use std::time::Instant;

use ransomeye_kernel::keys::{KeyDir, KeyPurpose};
use sqlx::AssertSqlSafe;

use super::backup::check::{self, Tools};
use super::backup::manifest;
use super::restore::{self, Plan};
use super::Context;
use crate::cli::DrillArgs;
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::utils::{elapsed_ms, print_json, runtime};
use ransomeye_kernel::config::with_database;

/// Runs `drill`.
pub fn run(ctx: &Context, args: &DrillArgs) -> Result<(), OpsError> {
    let started = Instant::now();
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
    let result = rt.block_on(async {
        let (target_url, scratch) = match &args.target_database_url {
            Some(url) => (url.clone(), None),
            None => {
                let name = format!("ransomeye_drill_{}_{}", chrono_stamp(), std::process::id());
                let mut admin = db::connect(&config.database.url, "drill").await?;
                sqlx::query(AssertSqlSafe(format!("create database \"{name}\"")))
                    .execute(&mut admin)
                    .answer("creating the drill's scratch database")
                    .await?;
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
        };
        let phase = Instant::now();
        let outcome = restore::restore(&plan).await;
        let rto_ms = elapsed_ms(phase);
        if let Some((mut admin, name)) = scratch {
            // Dropped whatever happened; a leftover would be noticed only by disk usage.
            sqlx::query(AssertSqlSafe(format!(
                "drop database if exists \"{name}\" with (force)"
            )))
            .execute(&mut admin)
            .answer(&format!("dropping the scratch database {name}"))
            .await?;
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
            "outcome": outcome,
            "duration_ms": elapsed_ms(started),
        }))?;
    } else {
        println!(
            "drill {}: backup {} (snapshot {}) restored and checked in {:.0} ms (verify {:.0} ms, restore {:.0} ms, compare {:.0} ms)",
            if passed { "PASSED" } else { "FAILED" },
            outcome.backup,
            outcome.snapshot_time,
            rto_ms,
            outcome.verify_ms,
            outcome.restore_ms,
            outcome.compare_ms
        );
        println!(
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
    restore::mismatch_error(&outcome)
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
