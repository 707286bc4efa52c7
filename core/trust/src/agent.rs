//! The agent's side of the protocol: what an agent checks before it acks an update, switches to
//! a new key or drops a pending one. An agent keeps one trusted key, its trust version and at most
//! one pending update.

use crate::message::{Broadcast, TrustAbort, TrustCommit, TrustUpdate};
use crate::Rejection;

/// A pending update: verified and acked, waiting for its commit or abort.
pub type Pending = TrustUpdate;

/// What an agent trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTrust {
    /// The agent's trust version.
    pub version: u64,
    /// The trusted Ed25519 public key.
    pub public_key: [u8; 32],
    /// The update acked and not yet committed or aborted.
    pub pending: Option<Pending>,
}

/// What a broadcast did to an agent's trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// An update was accepted and is pending: the agent acks it.
    Pending,
    /// The pending key is now the trusted key.
    Committed,
    /// The pending key was dropped.
    Aborted,
}

/// What [`AgentTrust::catch_up`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaughtUp {
    /// Committed versions applied.
    pub applied: u64,
    /// The undecided update now pending (the agent acks it), if any.
    pub pending: Option<TrustUpdate>,
}

impl AgentTrust {
    /// An agent trusting `public_key` at `version`, nothing pending.
    pub fn new(version: u64, public_key: [u8; 32]) -> AgentTrust {
        AgentTrust {
            version,
            public_key,
            pending: None,
        }
    }

    /// Accepts `update` as pending if its version is the next one, it has not expired at `now`
    /// (Unix seconds), it is signed by the trusted key and by its new key. A second update of the
    /// same version (a resumed or re-run rotation) replaces the pending one: only a commit signed
    /// by the pending key makes a key trusted, so the pending slot needs no protection beyond that.
    pub fn on_update(&mut self, update: &TrustUpdate, now: u64) -> Result<(), Rejection> {
        let next = self.version.checked_add(1);
        if Some(update.version) != next {
            return Err(Rejection::WrongVersion {
                expected: next.unwrap_or(u64::MAX),
                found: update.version,
            });
        }
        if update.deadline <= update.issued_at || now > update.deadline {
            return Err(Rejection::Expired {
                deadline: update.deadline,
                now,
            });
        }
        update.verify(&self.public_key)?;
        self.pending = Some(update.clone());
        Ok(())
    }

    /// Makes the pending key trusted if `commit` is for it and signed by it.
    pub fn on_commit(&mut self, commit: &TrustCommit) -> Result<(), Rejection> {
        let pending = self.pending_for(commit.rotation_id)?;
        if commit.version != pending.version || commit.key_id != pending.new_key_id {
            return Err(Rejection::Inconsistent(
                "the commit names another version or key than its update".into(),
            ));
        }
        commit.verify(&pending.new_public_key)?;
        let (version, key) = (pending.version, pending.new_public_key);
        self.version = version;
        self.public_key = key;
        self.pending = None;
        Ok(())
    }

    /// Drops the pending key if `abort` is for it and signed by the trusted key.
    pub fn on_abort(&mut self, abort: &TrustAbort) -> Result<(), Rejection> {
        self.pending_for(abort.rotation_id)?;
        abort.verify(&self.public_key)?;
        self.pending = None;
        Ok(())
    }

    /// Drops a pending update whose deadline passed at `now` without a commit; true if it did.
    pub fn expire(&mut self, now: u64) -> bool {
        match &self.pending {
            Some(p) if now > p.deadline => {
                self.pending = None;
                true
            }
            _ => false,
        }
    }

    /// Applies one message received live on the updates subject.
    pub fn on_broadcast(&mut self, message: &Broadcast, now: u64) -> Result<Applied, Rejection> {
        match message {
            Broadcast::Update(u) => self.on_update(u, now).map(|()| Applied::Pending),
            Broadcast::Commit(c) => self.on_commit(c).map(|()| Applied::Committed),
            Broadcast::Abort(a) => self.on_abort(a).map(|()| Applied::Aborted),
        }
    }

    /// Catches up after time offline (or after a version gap: an update whose `version` is
    /// beyond the next one means commits were missed): walks `history` (the stream's messages,
    /// oldest first) and applies every update that is the next version, signed by the key
    /// trusted at that point, and followed by its commit signed by the new key; TUF-style, one
    /// version at a time. Deadlines are not checked there: the commit proves the rotation
    /// completed. Then the newest *undecided* update — no commit and no abort verifying after
    /// it — that the agent would accept live at `now` ([`AgentTrust::on_update`]: next version,
    /// both signatures, deadline not passed) becomes the pending update, which the agent acks:
    /// an agent back while a rotation is collecting acks takes part in it. Anything that does not
    /// fit (forged, malformed, stale, another chain) is skipped.
    pub fn catch_up(&mut self, history: &[Broadcast], now: u64) -> CaughtUp {
        let mut applied = 0;
        for (i, message) in history.iter().enumerate() {
            let Broadcast::Update(update) = message else {
                continue;
            };
            if Some(update.version) != self.version.checked_add(1)
                || update.verify(&self.public_key).is_err()
            {
                continue;
            }
            let committed = history[i + 1..].iter().any(|later| match later {
                Broadcast::Commit(c) => {
                    c.rotation_id == update.rotation_id
                        && c.version == update.version
                        && c.key_id == update.new_key_id
                        && c.verify(&update.new_public_key).is_ok()
                }
                _ => false,
            });
            if committed {
                self.version = update.version;
                self.public_key = update.new_public_key;
                self.pending = None;
                applied += 1;
            }
        }
        let mut pending = None;
        for (i, message) in history.iter().enumerate().rev() {
            let Broadcast::Update(update) = message else {
                continue;
            };
            let decided = history[i + 1..].iter().any(|later| match later {
                Broadcast::Abort(a) => {
                    a.rotation_id == update.rotation_id && a.verify(&self.public_key).is_ok()
                }
                Broadcast::Commit(c) => {
                    c.rotation_id == update.rotation_id && c.verify(&update.new_public_key).is_ok()
                }
                Broadcast::Update(_) => false,
            });
            if !decided && self.on_update(update, now).is_ok() {
                pending = Some(update.clone());
                break;
            }
        }
        CaughtUp { applied, pending }
    }

    /// Whether `update` reveals a version gap: it is beyond the next version, so commits were
    /// missed and the agent must catch up from the stream before it can judge it.
    pub fn is_gap(&self, update: &TrustUpdate) -> bool {
        self.version
            .checked_add(1)
            .is_some_and(|next| update.version > next)
    }

    fn pending_for(&self, rotation: crate::RotationId) -> Result<&Pending, Rejection> {
        match &self.pending {
            Some(p) if p.rotation_id == rotation => Ok(p),
            Some(p) => Err(Rejection::WrongRotation {
                expected: p.rotation_id.to_string(),
                found: rotation.to_string(),
            }),
            None => Err(Rejection::WrongRotation {
                expected: "none pending".into(),
                found: rotation.to_string(),
            }),
        }
    }
}
