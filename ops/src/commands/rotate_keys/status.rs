//! `rotate-keys status`: the journal, the active key, the retired keys. Changes nothing.

use ransomeye_kernel::keys::KeyDir;

use super::journal::Journal;
use super::report::summary;
use crate::commands::{say, Context};
use crate::error::{Exit, OpsError};
use crate::trust::{NEXT_KEY, RETIRED_DIR};
use crate::utils::print_json;

/// `rotate-keys status`: the journal, the active key, the retired keys. Changes nothing. A
/// problem it shows is also its exit code, so monitoring sees it: 75 while the latest rotation
/// is unfinished (running, interrupted, or its outcome not published), else the active key
/// file's own failure (e.g. 78 when it is not the configured trust key).
pub(super) fn status(ctx: &Context) -> Result<u8, OpsError> {
    let config = ctx.config()?;
    let keys = KeyDir::new(&config.keys.dir);
    let journal = Journal::load(keys.path())?;
    let active = crate::trust::signing_key(&config).map(|k| k.id().to_string());
    let next = keys
        .load_signing_named(NEXT_KEY)
        .ok()
        .map(|k| k.id().to_string());
    let mut retired: Vec<String> = std::fs::read_dir(keys.path().join(RETIRED_DIR))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !ransomeye_kernel::atomic_file::is_temp_name(n))
                .collect()
        })
        .unwrap_or_default();
    retired.sort();
    let unfinished = journal.unfinished().map(|r| r.rotation_id.clone());
    let problem = match journal.unfinished() {
        Some(r) => Some(unfinished_error(r)),
        None => active.as_ref().err().map(|e| {
            let mut problem = OpsError::new(e.exit, format!("active key file: {}", e.what));
            problem.hint = e.hint.clone();
            problem
        }),
    };
    let code = problem.as_ref().map_or(0, |p| p.exit.code());
    if ctx.json {
        print_json(&serde_json::json!({
            "trust_version": config.trust.version,
            "key_id": config.trust.key_id,
            "active_key_file": active.as_ref().ok().is_some(),
            "active_key_error": active.as_ref().err().map(|e| e.what.clone()),
            "staged_key_id": next,
            "retired_key_ids": retired,
            "unfinished_rotation": unfinished,
            "rotations": journal.rotations.iter().map(|r| serde_json::json!({
                "rotation_id": r.rotation_id, "kind": r.kind, "state": r.state,
                "from": r.from, "to": r.to, "counts": r.counts,
                "started_at": r.started_at, "updated_at": r.updated_at, "reason": r.reason,
                "outcome_published": r.outcome_published, "outcome_error": r.outcome_error,
            })).collect::<Vec<_>>(),
        }))?;
        if let Some(p) = &problem {
            crate::print_error(p);
        }
        return Ok(code);
    }
    say!(
        ctx,
        "trust version {}, key {}",
        config.trust.version,
        config.trust.key_id
    );
    match &active {
        Ok(_) => say!(
            ctx,
            "  active key file: present and matches the configuration"
        ),
        Err(e) => say!(ctx, "  active key file: PROBLEM: {}", e.what),
    }
    if let Some(id) = &next {
        say!(ctx, "  staged key (signing.key.next): {id}");
    }
    say!(
        ctx,
        "  retired keys: {}",
        if retired.is_empty() {
            "none".to_string()
        } else {
            retired.join(", ")
        }
    );
    match journal.latest() {
        None => say!(ctx, "no rotations recorded"),
        Some(_) => {
            say!(ctx, "rotations (newest last):");
            for r in &journal.rotations {
                say!(
                    ctx,
                    "  {} {} {}: {}, started {}{}{}",
                    r.kind,
                    r.rotation_id,
                    r.state.name(),
                    summary(r),
                    r.started_at,
                    r.reason
                        .as_ref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default(),
                    r.outcome_error
                        .as_ref()
                        .map(|m| format!("; {m}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    if let Some(p) = &problem {
        crate::print_error(p);
    }
    Ok(code)
}

/// The problem of an unfinished rotation (exit 75): what it is and how to finish it.
fn unfinished_error(r: &super::journal::Rotation) -> OpsError {
    let what = if r.outcome_error.is_some() {
        "aborted, but its TrustAbort is not published yet"
    } else {
        "unfinished"
    };
    OpsError::new(
        Exit::TempFail,
        format!(
            "rotation {} is {what} (state {})",
            r.rotation_id,
            r.state.name()
        ),
    )
    .hint(
        "finish it with `ransomeye-ops rotate-keys --resume` (see what it would do with --dry-run)",
    )
}
