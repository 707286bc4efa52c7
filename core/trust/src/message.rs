//! The four messages, their JSON form and their signing inputs.
//!
//! A signing input is a first line naming the message type and protocol version (the *domain*,
//! so that a signature over one type can never pass as another), then one `name=value` line per
//! field in a fixed order, each line ending in `\n`; integers in decimal without leading zeros,
//! byte strings in lower-case hex. See `docs/TRUST_UPDATE.md`.

use std::fmt::Write as _;

use ransomeye_kernel::keys::{public_key_id, verify_signature, SigningKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::codec::{hex_array, AgentId, RotationId};
use crate::Rejection;

/// First line of a TrustUpdate's signing input.
pub const UPDATE_DOMAIN: &str = "ransomeye-trust-update-v1";
/// First line of an Ack's signing input.
pub const ACK_DOMAIN: &str = "ransomeye-trust-ack-v1";
/// First line of a TrustCommit's signing input.
pub const COMMIT_DOMAIN: &str = "ransomeye-trust-commit-v1";
/// First line of a TrustAbort's signing input.
pub const ABORT_DOMAIN: &str = "ransomeye-trust-abort-v1";

/// Something that holds an Ed25519 private key.
pub trait Signer {
    /// The 32-byte public key.
    fn public_key(&self) -> [u8; 32];
    /// The 64-byte Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

impl Signer for SigningKey {
    fn public_key(&self) -> [u8; 32] {
        SigningKey::public_key(self)
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        SigningKey::sign(self, message)
    }
}

impl Signer for Ed25519KeyPair {
    fn public_key(&self) -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(KeyPair::public_key(self).as_ref());
        pk
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(Ed25519KeyPair::sign(self, message).as_ref());
        sig
    }
}

/// Builds a signing input: the domain line, then `name=value` lines.
struct SigningInput(String);

impl SigningInput {
    fn new(domain: &str) -> Self {
        SigningInput(format!("{domain}\n"))
    }
    fn field(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        let _ = writeln!(self.0, "{name}={value}");
        self
    }
    fn hex(self, name: &str, value: &[u8]) -> Self {
        let v = hex::encode(value);
        self.field(name, v)
    }
    fn into_bytes(self) -> Vec<u8> {
        self.0.into_bytes()
    }
}

fn key_id_of(public_key: &[u8; 32]) -> [u8; 8] {
    public_key_id(public_key).0
}

fn check(
    signer: &'static str,
    public_key: &[u8],
    input: &[u8],
    sig: &[u8; 64],
) -> Result<(), Rejection> {
    if verify_signature(public_key, input, sig) {
        Ok(())
    } else {
        Err(Rejection::BadSignature(signer))
    }
}

/// A message on [`crate::UPDATES_SUBJECT`]; the JSON member `type` says which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Broadcast {
    /// `"type": "trust_update"`
    #[serde(rename = "trust_update")]
    Update(TrustUpdate),
    /// `"type": "trust_commit"`
    #[serde(rename = "trust_commit")]
    Commit(TrustCommit),
    /// `"type": "trust_abort"`
    #[serde(rename = "trust_abort")]
    Abort(TrustAbort),
}

impl Broadcast {
    /// Parses a message received on the updates subject.
    pub fn from_json(bytes: &[u8]) -> Result<Broadcast, Rejection> {
        serde_json::from_slice(bytes).map_err(|e| Rejection::Malformed(e.to_string()))
    }

    /// The JSON bytes to publish.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail: no maps with non-string keys, no floats.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The rotation the message belongs to.
    pub fn rotation_id(&self) -> RotationId {
        match self {
            Broadcast::Update(m) => m.rotation_id,
            Broadcast::Commit(m) => m.rotation_id,
            Broadcast::Abort(m) => m.rotation_id,
        }
    }
}

/// Announces a new trust key: version `version` (the agent's version + 1) replaces key
/// `old_key_id` by `new_public_key`. Signed by the old key and by the new key over the same
/// signing input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustUpdate {
    /// This rotation's id.
    pub rotation_id: RotationId,
    /// The trust version the new key will have.
    pub version: u64,
    /// Key id of the key being replaced (the one agents trust now).
    #[serde(with = "hex_array")]
    pub old_key_id: [u8; 8],
    /// Key id of the new key (first 8 bytes of SHA-256 of `new_public_key`).
    #[serde(with = "hex_array")]
    pub new_key_id: [u8; 8],
    /// The new Ed25519 public key.
    #[serde(with = "hex_array")]
    pub new_public_key: [u8; 32],
    /// When the update was issued, Unix seconds.
    pub issued_at: u64,
    /// After this (Unix seconds) an agent drops the pending key if no commit came.
    pub deadline: u64,
    /// Ed25519 signature of the signing input by the old key.
    #[serde(with = "hex_array")]
    pub old_signature: [u8; 64],
    /// Ed25519 signature of the signing input by the new key (proof of possession).
    #[serde(with = "hex_array")]
    pub new_signature: [u8; 64],
}

impl TrustUpdate {
    /// Builds and signs an update from `old` (the trusted key) to `new`.
    pub fn new(
        rotation_id: RotationId,
        version: u64,
        old: &dyn Signer,
        new: &dyn Signer,
        issued_at: u64,
        deadline: u64,
    ) -> TrustUpdate {
        let new_public_key = new.public_key();
        let mut update = TrustUpdate {
            rotation_id,
            version,
            old_key_id: key_id_of(&old.public_key()),
            new_key_id: key_id_of(&new_public_key),
            new_public_key,
            issued_at,
            deadline,
            old_signature: [0; 64],
            new_signature: [0; 64],
        };
        let input = update.signing_input();
        update.old_signature = old.sign(&input);
        update.new_signature = new.sign(&input);
        update
    }

    /// The bytes both signatures cover.
    pub fn signing_input(&self) -> Vec<u8> {
        SigningInput::new(UPDATE_DOMAIN)
            .field("rotation_id", self.rotation_id)
            .field("version", self.version)
            .hex("old_key_id", &self.old_key_id)
            .hex("new_key_id", &self.new_key_id)
            .hex("new_public_key", &self.new_public_key)
            .field("issued_at", self.issued_at)
            .field("deadline", self.deadline)
            .into_bytes()
    }

    /// Checks everything that does not depend on the receiver's version or clock: the old key is
    /// `trusted_public_key`, the new key id matches the new key, and both signatures verify.
    pub fn verify(&self, trusted_public_key: &[u8; 32]) -> Result<(), Rejection> {
        let trusted_id = key_id_of(trusted_public_key);
        if self.old_key_id != trusted_id {
            return Err(Rejection::WrongKey {
                expected: hex::encode(trusted_id),
                found: hex::encode(self.old_key_id),
            });
        }
        let derived = key_id_of(&self.new_public_key);
        if self.new_key_id != derived {
            return Err(Rejection::KeyIdMismatch {
                derived: hex::encode(derived),
                found: hex::encode(self.new_key_id),
            });
        }
        let input = self.signing_input();
        check("old key", trusted_public_key, &input, &self.old_signature)?;
        check("new key", &self.new_public_key, &input, &self.new_signature)
    }
}

/// An agent's acceptance of a TrustUpdate, signed with the agent's own key (the `public_key` of
/// its row in the `agents` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The acking agent.
    pub agent_id: AgentId,
    /// The rotation acked.
    pub rotation_id: RotationId,
    /// The update's version.
    pub version: u64,
    /// The update's new key id: the agent has verified and stored this key as pending.
    #[serde(with = "hex_array")]
    pub new_key_id: [u8; 8],
    /// Ed25519 signature of the signing input by the agent's key.
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

impl Ack {
    /// Builds and signs the ack of `update` by agent `agent_id` holding `key`.
    pub fn new(agent_id: AgentId, update: &TrustUpdate, key: &dyn Signer) -> Ack {
        let mut ack = Ack {
            agent_id,
            rotation_id: update.rotation_id,
            version: update.version,
            new_key_id: update.new_key_id,
            signature: [0; 64],
        };
        ack.signature = key.sign(&ack.signing_input());
        ack
    }

    /// The bytes the signature covers.
    pub fn signing_input(&self) -> Vec<u8> {
        SigningInput::new(ACK_DOMAIN)
            .field("agent_id", &self.agent_id)
            .field("rotation_id", self.rotation_id)
            .field("version", self.version)
            .hex("new_key_id", &self.new_key_id)
            .into_bytes()
    }

    /// Whether the signature verifies with the agent's public key.
    pub fn verify(&self, agent_public_key: &[u8]) -> bool {
        verify_signature(agent_public_key, &self.signing_input(), &self.signature)
    }

    /// Parses an ack.
    pub fn from_json(bytes: &[u8]) -> Result<Ack, Rejection> {
        serde_json::from_slice(bytes).map_err(|e| Rejection::Malformed(e.to_string()))
    }

    /// The JSON bytes to publish.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The rotation committed: agents make the pending key their trust key. Signed by the new key,
/// which only the operator who made the update holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustCommit {
    /// The rotation committed.
    pub rotation_id: RotationId,
    /// The new trust version.
    pub version: u64,
    /// The new trust key's id.
    #[serde(with = "hex_array")]
    pub key_id: [u8; 8],
    /// When, Unix seconds.
    pub committed_at: u64,
    /// Ed25519 signature of the signing input by the new key.
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

impl TrustCommit {
    /// Builds and signs the commit of `update` with its new key.
    pub fn new(update: &TrustUpdate, new: &dyn Signer, committed_at: u64) -> TrustCommit {
        let mut commit = TrustCommit {
            rotation_id: update.rotation_id,
            version: update.version,
            key_id: update.new_key_id,
            committed_at,
            signature: [0; 64],
        };
        commit.signature = new.sign(&commit.signing_input());
        commit
    }

    /// The bytes the signature covers.
    pub fn signing_input(&self) -> Vec<u8> {
        SigningInput::new(COMMIT_DOMAIN)
            .field("rotation_id", self.rotation_id)
            .field("version", self.version)
            .hex("key_id", &self.key_id)
            .field("committed_at", self.committed_at)
            .into_bytes()
    }

    /// Checks the signature against the pending new key.
    pub fn verify(&self, new_public_key: &[u8; 32]) -> Result<(), Rejection> {
        check(
            "new key",
            new_public_key,
            &self.signing_input(),
            &self.signature,
        )
    }
}

/// The rotation was abandoned (no quorum, or the operator could not commit): agents drop the
/// pending key and keep trusting the old one. Signed by the old key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustAbort {
    /// The rotation abandoned.
    pub rotation_id: RotationId,
    /// The version that will not happen.
    pub version: u64,
    /// The key that stays trusted.
    #[serde(with = "hex_array")]
    pub old_key_id: [u8; 8],
    /// The key agents drop.
    #[serde(with = "hex_array")]
    pub new_key_id: [u8; 8],
    /// When, Unix seconds.
    pub aborted_at: u64,
    /// Ed25519 signature of the signing input by the old key.
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

impl TrustAbort {
    /// Builds and signs the abort of `update` with the old key.
    pub fn new(update: &TrustUpdate, old: &dyn Signer, aborted_at: u64) -> TrustAbort {
        let mut abort = TrustAbort {
            rotation_id: update.rotation_id,
            version: update.version,
            old_key_id: update.old_key_id,
            new_key_id: update.new_key_id,
            aborted_at,
            signature: [0; 64],
        };
        abort.signature = old.sign(&abort.signing_input());
        abort
    }

    /// The bytes the signature covers.
    pub fn signing_input(&self) -> Vec<u8> {
        SigningInput::new(ABORT_DOMAIN)
            .field("rotation_id", self.rotation_id)
            .field("version", self.version)
            .hex("old_key_id", &self.old_key_id)
            .hex("new_key_id", &self.new_key_id)
            .field("aborted_at", self.aborted_at)
            .into_bytes()
    }

    /// Checks the signature against the key the agent trusts.
    pub fn verify(&self, trusted_public_key: &[u8; 32]) -> Result<(), Rejection> {
        check(
            "old key",
            trusted_public_key,
            &self.signing_input(),
            &self.signature,
        )
    }
}
