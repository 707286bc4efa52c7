//! `verify`: full verification of one backup or all of them (see `crate::backup_set::check`);
//! `--all` also fails on orphan data files (data files whose manifest was lost, see
//! `manifest::orphans`).

use ransomeye_kernel::keys::{KeyDir, KeyPurpose};
use serde::Serialize;

use super::{say, Context};
use crate::backup_set::check::{self, Tools};
use crate::backup_set::manifest;
use crate::cli::VerifyArgs;
use crate::error::{Exit, OpsError};
use crate::utils::print_json;

#[derive(Debug, Serialize)]
struct Outcome {
    backup: String,
    ok: bool,
    error: Option<String>,
}

/// Verifies the named backup, or every backup with `--all`.
pub fn run(ctx: &Context, args: &VerifyArgs) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Backup)?;
    let trust = crate::trust::verifying_keys(&config)?;
    let tools = Tools::new(config.backup.pg_bin_dir.clone());
    let (targets, orphans) = match &args.backup {
        Some(b) => (vec![check::locate(b, &config.backup.dir)?], Vec::new()),
        None => {
            crate::dirs::check_readable(&config.backup.dir, "[backup] dir")?;
            (
                manifest::list(&config.backup.dir)?,
                manifest::orphans(&config.backup.dir)?,
            )
        }
    };
    if targets.is_empty() && orphans.is_empty() {
        // Monitoring runs `verify --all` to learn that backups exist and are sound: none is a
        // failure, not a success.
        return Err(OpsError::new(
            Exit::NoInput,
            format!(
                "no backups in {}: nothing to verify",
                config.backup.dir.display()
            ),
        )
        .hint("take one with `ransomeye-ops backup`, or fix [backup] dir"));
    }
    let mut outcomes = Vec::new();
    let mut first_error = None;
    for paths in &targets {
        let result = check::verify(paths, &key, &trust, &tools);
        if !ctx.json {
            match &result {
                Ok(_) => say!(ctx, "{}: verified", paths.name),
                Err(e) => say!(ctx, "{}: FAILED: {}", paths.name, e.what),
            }
        }
        outcomes.push(Outcome {
            backup: paths.name.clone(),
            ok: result.is_ok(),
            error: result.as_ref().err().map(|e| e.what.clone()),
        });
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    for file in &orphans {
        if !ctx.json {
            say!(ctx, "{file}: {}", manifest::ORPHAN_STATE);
        }
        outcomes.push(Outcome {
            backup: file.clone(),
            ok: false,
            error: Some(manifest::ORPHAN_STATE.to_string()),
        });
    }
    if ctx.json {
        print_json(&outcomes)?;
    }
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    let first_error = first_error.or_else(|| {
        (!orphans.is_empty()).then(|| manifest::orphans_error(&config.backup.dir, &orphans))
    });
    match first_error {
        None => Ok(()),
        Some(e) if outcomes.len() == 1 || failed == orphans.len() => Err(e),
        Some(e) => Err(OpsError::new(
            if e.exit == Exit::NoPerm {
                Exit::NoPerm
            } else {
                Exit::Data
            },
            format!(
                "{failed} of {} backups and orphan data files failed verification (first: {})",
                outcomes.len(),
                e.what
            ),
        )
        .hint("do not rely on the failed backups; take a new backup")),
    }
}
