//! A decided rotation rolled forward (commit) or back (abort), each step journaled and each
//! checking whether it was already done, so that `--resume` after a crash finishes the same way.

use std::time::{Duration, UNIX_EPOCH};

use ransomeye_trust::{Broadcast, TrustAbort, TrustCommit};

use super::bus::TrustBus;
use super::files::{key_named, load_config, write_trust_config};
use super::journal::State;
use super::{now_unix, Kind, Session};
use crate::error::{Exit, OpsError};
use crate::failpoint;
use crate::trust::{NEXT_KEY, RETIRED_DIR};

/// Rolls the rotation in the journal forward. Every step checks whether it was already done, so
/// a rerun after a crash at any point finishes the same way.
pub(super) async fn commit(s: &mut Session, bus: &TrustBus) -> Result<(), OpsError> {
    let Some(rotation) = s.journal.latest().cloned() else {
        return Ok(());
    };
    // 1. The configuration: the commit point.
    if let Err(err) = write_trust_config(&s.config_path, &rotation.to) {
        let on_disk = load_config(&s.config_path).ok();
        if on_disk.is_none_or(|c| c.trust.key_id != rotation.to.key_id) {
            let reason = format!("the configuration could not be written: {}", err.what);
            s.journal.update(|r| {
                r.state = State::Aborting;
                r.reason = Some(reason.clone());
            })?;
            return abort(s, bus, reason, err.exit).await;
        }
        tracing::warn!(
            "the configuration was written but reported an error: {}",
            err.what
        );
    }
    failpoint::hit("rotate-after-config");
    // 2. The old key into retired/, before signing.key is replaced.
    let retired = format!("{RETIRED_DIR}/{}", rotation.from.key_id);
    if key_named(&s.keys, &rotation.from, &[&retired]).is_none() {
        let old = key_named(&s.keys, &rotation.from, &["signing.key"]).ok_or_else(|| {
            OpsError::new(
                Exit::Data,
                format!(
                    "the old trust key {} is neither signing.key nor in {RETIRED_DIR}/ of {}",
                    rotation.from.key_id,
                    s.keys.path().display()
                ),
            )
            .hint("restore the keys directory from backup before resuming")
        })?;
        ransomeye_kernel::access::create_private_dir(&s.keys.path().join(RETIRED_DIR))?;
        s.keys.create_signing(&old, &retired)?;
        key_named(&s.keys, &rotation.from, &[&retired]).ok_or_else(|| {
            OpsError::new(
                Exit::Io,
                format!(
                    "{retired} does not read back as key {}",
                    rotation.from.key_id
                ),
            )
        })?;
    }
    failpoint::hit("rotate-after-retire");
    // 3. The staged key becomes signing.key.
    if key_named(&s.keys, &rotation.to, &["signing.key"]).is_none() {
        if key_named(&s.keys, &rotation.to, &[NEXT_KEY]).is_none() {
            return Err(OpsError::new(
                Exit::Data,
                format!(
                    "the new trust key {} is neither signing.key nor {NEXT_KEY} in {}",
                    rotation.to.key_id,
                    s.keys.path().display()
                ),
            )
            .hint("restore the keys directory from backup; the configuration already names the new key"));
        }
        s.keys.promote_signing(NEXT_KEY)?;
    }
    if rotation.kind == Kind::Rollback.name() {
        // The key rolled back to is active again; it is no longer a retired key.
        s.keys
            .remove(&format!("{RETIRED_DIR}/{}", rotation.to.key_id))?;
    }
    failpoint::hit("rotate-after-promote");
    // 4. Tell the agents.
    let new = key_named(&s.keys, &rotation.to, &["signing.key"]).ok_or_else(|| {
        OpsError::new(
            Exit::Io,
            format!(
                "signing.key does not read back as key {}",
                rotation.to.key_id
            ),
        )
    })?;
    let published = bus
        .publish_outcome(&Broadcast::Commit(TrustCommit::new(
            &rotation.update,
            &new,
            now_unix(),
        )))
        .await;
    if let Err(e) = published {
        // Stays `committing`: `status` shows it, `--resume` publishes the commit.
        s.journal.update(|r| {
            r.outcome_error = Some(format!("TrustCommit not published: {}", e.what));
        })?;
        return Err(e.hint("the new key is active locally but agents were not told; run `rotate-keys --resume` when the bus is back"));
    }
    s.journal.update(|r| {
        r.state = State::Committed;
        r.outcome_published = true;
        r.outcome_error = None;
    })
}

/// Rolls the rotation in the journal back and returns the error that ends the run (`exit`, with
/// the counts). Refuses to roll back once the configuration names the new key.
pub(super) async fn abort(
    s: &mut Session,
    bus: &TrustBus,
    reason: String,
    exit: Exit,
) -> Result<(), OpsError> {
    let Some(rotation) = s.journal.latest().cloned() else {
        return Ok(());
    };
    if load_config(&s.config_path).is_ok_and(|c| c.trust.key_id == rotation.to.key_id) {
        // Removing the staged key now would leave the configuration naming a key nobody holds.
        return Err(OpsError::new(
            Exit::Software,
            format!(
                "rotation {} cannot be aborted: the configuration already names its new key {}",
                rotation.rotation_id, rotation.to.key_id
            ),
        )
        .hint("nothing was removed; `rotate-keys status` shows the keys, and the journal must be repaired by hand"));
    }
    if rotation.state != State::Aborting {
        s.journal.update(|r| {
            r.state = State::Aborting;
            r.reason = Some(reason.clone());
        })?;
    }
    let old = key_named(&s.keys, &rotation.from, &["signing.key"]).ok_or_else(|| {
        OpsError::new(
            Exit::Data,
            format!(
                "signing.key is not the old trust key {}: cannot abort",
                rotation.from.key_id
            ),
        )
        .hint("`rotate-keys status` shows the keys; restore the keys directory from backup")
    })?;
    let published = bus
        .publish_outcome(&Broadcast::Abort(TrustAbort::new(
            &rotation.update,
            &old,
            now_unix(),
        )))
        .await;
    failpoint::hit("rotate-after-abort-publish");
    s.keys.remove(NEXT_KEY)?;
    if let Err(e) = published {
        // Agents would keep the pending update until its deadline: the rotation stays
        // `aborting` (so `status` shows it and `--resume` publishes the abort), with the key
        // already gone. Not only a log line.
        s.journal.update(|r| {
            r.outcome_published = false;
            r.outcome_error = Some(format!("TrustAbort not published: {}", e.what));
        })?;
        return Err(OpsError::new(
            exit,
            format!(
                "rotation {} aborted ({reason}), but its TrustAbort was not published: {}",
                rotation.rotation_id, e.what
            ),
        )
        .hint(format!(
            "the old key is still the trust root and the staged key is removed; run `ransomeye-ops rotate-keys --resume` when the bus is back, so agents drop the pending update before its deadline ({})",
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(rotation.update.deadline))
        )));
    }
    s.journal.update(|r| {
        r.state = State::Aborted;
        r.outcome_published = true;
        r.outcome_error = None;
    })?;
    Err(OpsError::new(exit, format!("rotation {} aborted: {reason}", rotation.rotation_id))
        .hint("the old key is still the trust root and nothing else changed; check agents with `ransomeye-ops health`, then rotate again"))
}
