//! The rotation journal, `rotation-journal.json` in `[keys] dir`: where every rotation is
//! recorded before each step that changes anything, so that a rerun after a crash knows what was
//! decided and what is left to do.
//!
//! It is rewritten whole, atomically (temp file, fsync, rename, directory fsync), `0640` with
//! group `ransomeye-admin` when that group exists, else `0600`. The last entry is the current or
//! latest rotation; older entries are kept (up to [`KEEP`]) for `rotate-keys status` and to find
//! the key a rollback returns to. It holds public keys and signed messages only, never private
//! key material.

use std::path::{Path, PathBuf};

use ransomeye_trust::TrustUpdate;
use serde::{Deserialize, Serialize};

use crate::error::{Exit, OpsError};
use crate::journal_file;

/// File name of the journal in the keys directory.
pub const FILE_NAME: &str = "rotation-journal.json";
/// Rotations kept in the journal.
const KEEP: usize = 50;

/// Where a rotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The new key is in `signing.key.next`; the update may have been published; acks are being
    /// collected. A crash here is resumed by re-publishing the same update until its deadline.
    Pending,
    /// Quorum was reached: the rotation rolls forward (config, retired copy, key swap, commit).
    Committing,
    /// Done: the new key is active and TrustCommit was published.
    Committed,
    /// No quorum (or the commit could not be written): the rotation rolls back. Also where it
    /// stays, with the staged key removed, while its TrustAbort could not be published.
    Aborting,
    /// Done: the pending key is gone and the old key stays active.
    Aborted,
}

impl State {
    /// The name the journal and reports use.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Committing => "committing",
            State::Committed => "committed",
            State::Aborting => "aborting",
            State::Aborted => "aborted",
        }
    }

    /// Whether nothing is left to do.
    pub fn is_final(self) -> bool {
        matches!(self, State::Committed | State::Aborted)
    }
}

/// A trust version and its key, as the journal records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    /// Trust version.
    pub version: u64,
    /// Key id (16 hex digits).
    pub key_id: String,
    /// Ed25519 public key (64 hex digits).
    pub public_key: String,
}

/// Ack counts of a rotation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Active agents when the rotation started.
    pub active: usize,
    /// Acks needed (strictly more than the quorum fraction of `active`).
    pub needed: usize,
    /// Distinct agents whose valid ack counted.
    pub acked: usize,
    /// Acks that did not count, by reason.
    pub ignored: std::collections::BTreeMap<String, u64>,
}

/// One rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotation {
    /// The rotation id (32 hex digits).
    pub rotation_id: String,
    /// `rotation` (a new key) or `rollback` (back to a retired key).
    pub kind: String,
    /// Where it is.
    pub state: State,
    /// The trust root before.
    pub from: Side,
    /// The trust root after a commit.
    pub to: Side,
    /// The exact TrustUpdate published, so a resume re-publishes the same bytes.
    pub update: TrustUpdate,
    /// The quorum fraction the rotation was started with (a resume keeps it).
    pub quorum: f64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Ack counts, once collected.
    #[serde(default)]
    pub counts: Counts,
    /// Milliseconds from publishing the update to quorum, when reached.
    #[serde(default)]
    pub time_to_quorum_ms: Option<f64>,
    /// Whether TrustCommit / TrustAbort reached the bus.
    #[serde(default)]
    pub outcome_published: bool,
    /// Why it aborted, when it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// Why the TrustCommit / TrustAbort could not be published, while it is not. A rotation
    /// whose abort is unpublished stays `aborting` (agents would keep its update pending until
    /// the deadline), so `status` shows it and `--resume` publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_error: Option<String>,
}

/// The journal file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Journal {
    /// Rotations, oldest first; the last is the current or latest one.
    pub rotations: Vec<Rotation>,
    #[serde(skip)]
    path: PathBuf,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Journal {
    /// Reads the journal in `keys_dir`; an absent file is an empty journal.
    pub fn load(keys_dir: &Path) -> Result<Journal, OpsError> {
        let path = keys_dir.join(FILE_NAME);
        let journal: Option<Journal> = journal_file::read(
            &path,
            "rotation journal",
            "restore it from backup, or move it away if no rotation is in progress (`rotate-keys status` shows the keys)",
        )?;
        let mut journal = journal.unwrap_or(Journal {
            rotations: Vec::new(),
            path: PathBuf::new(),
        });
        journal.path = path;
        Ok(journal)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latest rotation, if any.
    pub fn latest(&self) -> Option<&Rotation> {
        self.rotations.last()
    }

    /// The latest rotation if it is unfinished.
    pub fn unfinished(&self) -> Option<&Rotation> {
        self.latest().filter(|r| !r.state.is_final())
    }

    /// Appends a new rotation and writes the journal.
    pub fn begin(&mut self, rotation: Rotation) -> Result<(), OpsError> {
        self.rotations.push(rotation);
        if self.rotations.len() > KEEP {
            let excess = self.rotations.len() - KEEP;
            self.rotations.drain(..excess);
        }
        self.write()
    }

    /// Changes the latest rotation (its state, counts…) and writes the journal durably.
    pub fn update(&mut self, change: impl FnOnce(&mut Rotation)) -> Result<(), OpsError> {
        let Some(latest) = self.rotations.last_mut() else {
            return Err(OpsError::new(
                Exit::Software,
                "the rotation journal has no rotation to update",
            ));
        };
        change(latest);
        latest.updated_at = now_rfc3339();
        self.write()
    }

    fn write(&self) -> Result<(), OpsError> {
        journal_file::write(&self.path, self)
    }
}

/// A new rotation record in state `pending`.
pub fn pending(kind: &str, from: Side, to: Side, update: TrustUpdate, quorum: f64) -> Rotation {
    let now = now_rfc3339();
    Rotation {
        rotation_id: update.rotation_id.to_string(),
        kind: kind.to_string(),
        state: State::Pending,
        from,
        to,
        update,
        quorum,
        started_at: now.clone(),
        updated_at: now,
        counts: Counts::default(),
        time_to_quorum_ms: None,
        outcome_published: false,
        reason: None,
        outcome_error: None,
    }
}
