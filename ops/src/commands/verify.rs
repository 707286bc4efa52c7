//! `verify`: full verification of one backup or all of them (see `backup::check`).

use ransomeye_kernel::keys::{KeyDir, KeyPurpose};
use serde::Serialize;

use super::backup::check::{self, Tools};
use super::backup::manifest;
use super::Context;
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
    let targets = match &args.backup {
        Some(b) => vec![check::locate(b, &config.backup.dir)?],
        None => {
            crate::dirs::check_readable(&config.backup.dir, "[backup] dir")?;
            manifest::list(&config.backup.dir)?
        }
    };
    let mut outcomes = Vec::new();
    let mut first_error = None;
    for paths in &targets {
        let result = check::verify(paths, &key, &trust, &tools);
        if !ctx.json {
            match &result {
                Ok(_) => println!("{}: verified", paths.name),
                Err(e) => println!("{}: FAILED: {}", paths.name, e.what),
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
    if ctx.json {
        print_json(&outcomes)?;
    } else if targets.is_empty() {
        println!("no backups in {}", config.backup.dir.display());
    }
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    match first_error {
        None => Ok(()),
        Some(e) if targets.len() == 1 => Err(e),
        Some(e) => Err(OpsError::new(
            if e.exit == Exit::NoPerm {
                Exit::NoPerm
            } else {
                Exit::Data
            },
            format!(
                "{failed} of {} backups failed verification (first: {})",
                targets.len(),
                e.what
            ),
        )
        .hint("do not rely on the failed backups; take a new backup")),
    }
}
