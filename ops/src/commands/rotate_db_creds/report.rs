//! What a run prints: the per-role report of a rotation (or of a resume, or of a dry run), and
//! `rotate-db-creds status`. Never a password: the journal holds none, and nothing here reads
//! the pending file.

use serde_json::json;

use super::journal::{Journal, Rotation, State};
use super::plan::Planned;
use crate::commands::{say, Context};
use crate::error::{Exit, OpsError};
use crate::table::{Align, Table};
use crate::utils::print_json;

/// The role an entry's env files name once `rotation` is where it is.
fn active_now(rotation: &Rotation, index: usize) -> &str {
    let login = &rotation.logins[index];
    match rotation.state {
        State::Done => &login.target,
        _ => &login.active_before,
    }
}

/// The JSON of a rotation as reports and `status` show it.
fn rotation_json(r: &Rotation) -> serde_json::Value {
    let d = &r.durations;
    json!({
        "rotation_id": r.rotation_id,
        "state": r.state,
        "started_at": r.started_at,
        "updated_at": r.updated_at,
        "reason": r.reason,
        "logins": r.logins.iter().enumerate().map(|(i, l)| json!({
            "strategy": l.strategy,
            "roles": l.roles,
            "active_before": l.active_before,
            "password_set_on": l.target,
            "active": active_now(r, i),
            "files_rewritten": l.files_rewritten,
            "services_restarted": l.restarted,
        })).collect::<Vec<_>>(),
        "durations_ms": {
            "create": d.create_ms, "set": d.set_ms, "test": d.test_ms,
            "files": d.files_ms, "restart_and_check": d.restart_ms,
            "total_excluding_restart": d.create_ms + d.set_ms + d.test_ms + d.files_ms,
        },
    })
}

/// Prints the outcome of a rotation or a resume.
pub fn print_rotation(ctx: &Context, r: &Rotation) -> Result<(), OpsError> {
    if ctx.json {
        return print_json(&rotation_json(r));
    }
    let verdict = match r.state {
        State::Done => "rotated",
        State::RolledBack => "rolled back (everything as before)",
        _ => "unfinished",
    };
    say!(ctx, "rotation {}: {verdict}", r.rotation_id);
    for (i, l) in r.logins.iter().enumerate() {
        say!(
            ctx,
            "  {} ({}): active role {}, {} file(s) rewritten, {} restart command(s) run",
            l.roles.join("/"),
            l.strategy,
            active_now(r, i),
            l.files_rewritten.len(),
            l.restarted.len()
        );
    }
    let d = &r.durations;
    say!(
        ctx,
        "  took {:.0} ms excluding restarts (create {:.0}, set {:.0}, test {:.0}, files {:.0}); restarts and checks {:.0} ms",
        d.create_ms + d.set_ms + d.test_ms + d.files_ms,
        d.create_ms,
        d.set_ms,
        d.test_ms,
        d.files_ms,
        d.restart_ms
    );
    Ok(())
}

/// Prints an undone rotation before its error: in human output only, since with `--json` the
/// error is the one JSON document on stdout (the journal, `status --json`, has the rest).
pub fn print_undone(ctx: &Context, r: &Rotation) -> Result<(), OpsError> {
    if ctx.json {
        return Ok(());
    }
    print_rotation(ctx, r)
}

/// Prints what a rotation would do (`--dry-run`).
pub fn print_dry_run(ctx: &Context, planned: &[Planned]) -> Result<(), OpsError> {
    if ctx.json {
        return print_json(&json!({
            "dry_run": true,
            "logins": planned.iter().map(|p| json!({
                "strategy": p.strategy(),
                "roles": p.credential.role_names(),
                "active": p.active,
                "password_set_on": p.target,
                "env_files": p.files.iter().map(|(f, _)| f).collect::<Vec<_>>(),
                "restart": p.credential.restart,
                "check": p.credential.check,
            })).collect::<Vec<_>>(),
        }));
    }
    say!(ctx, "dry run: nothing was changed; a rotation would:");
    for p in planned {
        say!(
            ctx,
            "  {} ({}): set a new password on {}, switch {} file(s) to it{}, run {} restart command(s){}",
            p.credential.role_names().join("/"),
            p.strategy(),
            p.target,
            p.files.len(),
            if p.target != p.active { format!(" (from {})", p.active) } else { String::new() },
            p.credential.restart.len(),
            if p.credential.check.is_some() { " and the check" } else { "" }
        );
    }
    Ok(())
}

/// The error for an unfinished rotation (75).
pub fn unfinished_error(r: &Rotation) -> OpsError {
    OpsError::new(
        Exit::TempFail,
        format!("credential rotation {} is unfinished (state {})", r.rotation_id, r.state.name()),
    )
    .hint("finish it with `ransomeye-ops rotate-db-creds --resume` (it finishes a rotation whose files were switching, else undoes it)")
}

/// `rotate-db-creds status`: the journal; exit 75 while the latest rotation is unfinished.
pub fn status(ctx: &Context) -> Result<u8, OpsError> {
    let config = ctx.config()?;
    let journal = Journal::load(&config.keys.dir)?;
    let problem = journal.unfinished().map(unfinished_error);
    if ctx.json {
        print_json(&json!({
            "unfinished_rotation": journal.unfinished().map(|r| r.rotation_id.clone()),
            "rotations": journal.rotations.iter().map(rotation_json).collect::<Vec<_>>(),
        }))?;
    } else if journal.rotations.is_empty() {
        say!(ctx, "no credential rotations recorded");
    } else {
        let mut table = Table::new(&[
            ("ROTATION", Align::Left),
            ("STATE", Align::Left),
            ("STARTED", Align::Left),
            ("ROLES", Align::Left),
            ("ACTIVE", Align::Left),
            ("REASON", Align::Left),
        ]);
        for r in &journal.rotations {
            for (i, l) in r.logins.iter().enumerate() {
                table.row(vec![
                    r.rotation_id.clone(),
                    r.state.name().to_string(),
                    r.started_at.clone(),
                    l.roles.join("/"),
                    active_now(r, i).to_string(),
                    r.reason.clone().unwrap_or_default(),
                ]);
            }
        }
        say!(ctx, "{}", table.render().trim_end());
    }
    match problem {
        Some(p) => {
            crate::print_error(&p);
            Ok(p.exit.code())
        }
        None => Ok(0),
    }
}
