//! The credential rotation journal, `db-creds-journal.json` in `[keys] dir`: the state of every
//! rotation, written before each step that changes something, so that `--resume` knows what was
//! done and `status` can show it.
//!
//! It records the roles, which role gets the new password, which one was in use, and each
//! target role's SCRAM verifier as it was (what a rollback restores, exactly, without knowing
//! the old password), never a password. A verifier is not a password but is worth an offline
//! guessing attack, so the journal has the key files' modes. Rewritten whole, atomically.

use std::path::{Path, PathBuf};

use ransomeye_kernel::config::Credential;
use serde::{Deserialize, Serialize};

use crate::error::OpsError;
use crate::journal_file;

/// File name of the journal in `[keys] dir`.
pub const FILE_NAME: &str = "db-creds-journal.json";
/// Rotations kept.
const KEEP: usize = 50;

/// Where a rotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The pending file holds (or is about to hold) the new passwords; the server may have some
    /// of them set. `--resume` undoes: old verifiers back.
    Created,
    /// Every new password is set and worked on a fresh login. `--resume` finishes.
    Tested,
    /// The env files are being switched and services restarted. `--resume` finishes.
    Switching,
    /// Being undone: verifiers, env files and services go back. `--resume` continues.
    RollingBack,
    /// Done: the env files hold the new passwords, and only them.
    Done,
    /// Undone: everything as before the rotation.
    RolledBack,
}

impl State {
    /// The name the journal and reports use.
    pub fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Tested => "tested",
            State::Switching => "switching",
            State::RollingBack => "rolling_back",
            State::Done => "done",
            State::RolledBack => "rolled_back",
        }
    }

    /// Whether nothing is left to do.
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::RolledBack)
    }
}

/// One `[[credentials]]` entry in a rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// `single` or `alternating`.
    pub strategy: String,
    /// The entry's roles (one, or two when alternating).
    pub roles: Vec<String>,
    /// The role the env files named before.
    pub active_before: String,
    /// The role that gets the new password and that the env files name after.
    pub target: String,
    /// The target's verifier before (`None`: it had no password).
    pub old_verifier: Option<String>,
    /// The `[[credentials]]` entry as it was when the rotation started: a resume finishes
    /// with the same files, keys and commands even if the configuration changed since.
    pub credential: Credential,
    /// Env files rewritten so far.
    #[serde(default)]
    pub files_rewritten: Vec<PathBuf>,
    /// Restart commands run so far.
    #[serde(default)]
    pub restarted: Vec<String>,
}

/// Milliseconds each step took.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Durations {
    /// Creating the passwords and the pending file.
    pub create_ms: f64,
    /// Setting the verifiers.
    pub set_ms: f64,
    /// The fresh logins.
    pub test_ms: f64,
    /// Rewriting the env files.
    pub files_ms: f64,
    /// The restart and check commands.
    pub restart_ms: f64,
}

/// One rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rotation {
    /// Its id (16 hex digits).
    pub rotation_id: String,
    /// Where it is.
    pub state: State,
    /// The logins it rotates.
    pub logins: Vec<Login>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Why it was rolled back, when it was.
    #[serde(default)]
    pub reason: Option<String>,
    /// Step durations.
    #[serde(default)]
    pub durations: Durations,
}

/// The journal file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Journal {
    /// Oldest first; the last one is the current or latest rotation.
    pub rotations: Vec<Rotation>,
    #[serde(skip)]
    path: PathBuf,
}

impl Journal {
    /// Reads the journal in `dir` (empty when there is none).
    pub fn load(dir: &Path) -> Result<Journal, OpsError> {
        let path = dir.join(FILE_NAME);
        let journal: Option<Journal> = journal_file::read(
            &path,
            "credential rotation journal",
            "restore it from a backup, or move it aside once `status` of every service shows it works",
        )?;
        let mut journal = journal.unwrap_or(Journal {
            rotations: Vec::new(),
            path: PathBuf::new(),
        });
        journal.path = path;
        Ok(journal)
    }

    /// The latest rotation, if any.
    pub fn last(&self) -> Option<&Rotation> {
        self.rotations.last()
    }

    /// The latest rotation when it is unfinished.
    pub fn unfinished(&self) -> Option<&Rotation> {
        self.last().filter(|r| !r.state.is_final())
    }

    /// Records `rotation` (replacing the entry with its id, else appending) and writes the file.
    pub fn record(&mut self, rotation: &Rotation) -> Result<(), OpsError> {
        let mut rotation = rotation.clone();
        rotation.updated_at = now_rfc3339();
        match self
            .rotations
            .iter_mut()
            .find(|r| r.rotation_id == rotation.rotation_id)
        {
            Some(slot) => *slot = rotation,
            None => self.rotations.push(rotation),
        }
        let excess = self.rotations.len().saturating_sub(KEEP);
        self.rotations.drain(..excess);
        journal_file::write(&self.path, &self)
    }
}

/// Now, as RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
