//! The trust-update wire protocol of RansomEye: how the Ed25519 trust root moves to a new key
//! across every agent, specified in `docs/TRUST_UPDATE.md` (this crate is its reference
//! implementation; the test vectors there are checked by `tests/vectors.rs`).
//!
//! Four messages, each a JSON object whose signature covers a canonical, line-oriented text (the
//! *signing input*) rather than the JSON itself, so that any implementation can rebuild the exact
//! bytes without a canonical-JSON library:
//!
//! - [`TrustUpdate`] on [`UPDATES_SUBJECT`]: the new public key, signed by the old key (agents
//!   trust it) and by the new key (proof of possession);
//! - [`Ack`] on [`ack_subject`]: an agent's acceptance, signed by the agent's own key;
//! - [`TrustCommit`] (signed by the new key) and [`TrustAbort`] (signed by the old key) on
//!   [`UPDATES_SUBJECT`]: the outcome.
//!
//! [`AgentTrust`] is the agent's side: exactly the checks an agent must make before it acks,
//! switches or drops a pending key. [`AckCheck`] is the operator's side: which acks count.
//!
//! This crate never prints, never touches files and never talks to the bus; callers do.

mod agent;
mod codec;
mod message;
mod quorum;
#[cfg(test)]
mod tests;

pub use agent::{AgentTrust, Applied, CaughtUp, Pending};
pub use codec::{AgentId, RotationId};
pub use message::{
    Ack, Broadcast, Signer, TrustAbort, TrustCommit, TrustUpdate, ABORT_DOMAIN, ACK_DOMAIN,
    COMMIT_DOMAIN, UPDATE_DOMAIN,
};
pub use quorum::{AckCheck, AckOutcome, Quorum};

/// The subject every TrustUpdate, TrustCommit and TrustAbort is published on.
pub const UPDATES_SUBJECT: &str = "broadcast.updates";

/// The JetStream stream that keeps every message published on [`UPDATES_SUBJECT`], so an agent
/// that was offline can fetch what it missed.
pub const STREAM_NAME: &str = "RANSOMEYE_TRUST";

/// The subject agents publish their acks for `rotation` on: `ops.rotation.<rotation id>.ack`.
pub fn ack_subject(rotation: &RotationId) -> String {
    format!("ops.rotation.{rotation}.ack")
}

/// Why a message is refused. Agents and the operator tool both report these; none of them carries
/// key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The bytes are not a well-formed message of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message is well formed but contradicts the update it refers to.
    #[error("{0}")]
    Inconsistent(String),
    /// A signature does not verify with the key it must verify with.
    #[error("{0} signature does not verify")]
    BadSignature(&'static str),
    /// The message names a key other than the one the receiver trusts.
    #[error("signed by key {found}, but the trusted key is {expected}")]
    WrongKey {
        /// Key id the receiver trusts.
        expected: String,
        /// Key id the message names.
        found: String,
    },
    /// `new_key_id` is not the key id of `new_public_key`.
    #[error("new_key_id {found} is not the id of new_public_key ({derived})")]
    KeyIdMismatch {
        /// What the public key's id is.
        derived: String,
        /// What the message says.
        found: String,
    },
    /// The version is not the one expected (a replay, or a skipped version).
    #[error("version {found}, expected {expected}")]
    WrongVersion {
        /// The version the receiver expects.
        expected: u64,
        /// The version in the message.
        found: u64,
    },
    /// The message belongs to another rotation.
    #[error("message of rotation {found}, expected {expected}")]
    WrongRotation {
        /// The rotation the receiver is in (or "none").
        expected: String,
        /// The rotation the message names.
        found: String,
    },
    /// The update's deadline has passed (or it is not after its issue time).
    #[error("update expired at {deadline} (now {now})")]
    Expired {
        /// Deadline, Unix seconds.
        deadline: u64,
        /// The receiver's clock, Unix seconds.
        now: u64,
    },
}
