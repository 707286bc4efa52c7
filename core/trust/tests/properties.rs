//! Property tests of the bus messages' parsers: acks (what the operator reads from every
//! agent) and the broadcasts (what agents read: TrustUpdate, TrustCommit, TrustAbort).
//!
//! Never a panic, whatever the bytes; every message this crate can build reads back equal, and
//! its signatures still verify; and no change of a signed message's bytes passes the checks
//! unless it means the same message.

#[path = "../../kernel/tests/support/inputs.rs"]
mod inputs;

use std::collections::HashMap;

use proptest::prelude::*;
use ransomeye_trust::{
    Ack, AckCheck, AgentId, Broadcast, RotationId, Signer, TrustAbort, TrustCommit, TrustUpdate,
};
use ring::signature::Ed25519KeyPair;

fn key() -> impl Strategy<Value = Ed25519KeyPair> {
    any::<[u8; 32]>()
        .prop_map(|seed| Ed25519KeyPair::from_seed_unchecked(&seed).expect("32-byte seed"))
}

fn agent_id() -> impl Strategy<Value = AgentId> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        .prop_map(|s| s.parse().expect("a lower-case hyphenated UUID"))
}

/// A rotation: the update and the keys that signed it.
struct Rotation {
    update: TrustUpdate,
    old: Ed25519KeyPair,
    new: Ed25519KeyPair,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.update.fmt(f)
    }
}

fn rotation() -> impl Strategy<Value = Rotation> {
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        key(),
        key(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(id, version, old, new, issued_at, deadline)| Rotation {
            update: TrustUpdate::new(RotationId(id), version, &old, &new, issued_at, deadline),
            old,
            new,
        })
}

/// An agent's signed ack of an update, and the agent's public key.
#[derive(Debug, Clone)]
struct SignedAck {
    ack: Ack,
    update: TrustUpdate,
    agent_key: [u8; 32],
}

fn signed_ack() -> impl Strategy<Value = SignedAck> {
    (rotation(), agent_id(), key()).prop_map(|(r, agent, key)| SignedAck {
        ack: Ack::new(agent, &r.update, &key),
        update: r.update,
        agent_key: Signer::public_key(&key),
    })
}

/// Every broadcast a rotation can produce, with the key it must verify with.
fn broadcast() -> impl Strategy<Value = (Broadcast, [u8; 32])> {
    (rotation(), 0..3, any::<u64>()).prop_map(|(r, which, at)| {
        let (old, new) = (Signer::public_key(&r.old), Signer::public_key(&r.new));
        match which {
            0 => (Broadcast::Update(r.update), old),
            1 => (
                Broadcast::Commit(TrustCommit::new(&r.update, &r.new, at)),
                new,
            ),
            _ => (
                Broadcast::Abort(TrustAbort::new(&r.update, &r.old, at)),
                old,
            ),
        }
    })
}

/// Whether `message`'s signatures verify with `key` (the trusted key for updates and aborts,
/// the new key for commits).
fn verifies(message: &Broadcast, key: &[u8; 32]) -> bool {
    match message {
        Broadcast::Update(m) => m.verify(key).is_ok(),
        Broadcast::Commit(m) => m.verify(key).is_ok(),
        Broadcast::Abort(m) => m.verify(key).is_ok(),
    }
}

proptest! {
    #![proptest_config(inputs::config())]

    #[test]
    fn acks_round_trip_and_still_verify(s in signed_ack()) {
        let read = Ack::from_json(&s.ack.to_json());
        prop_assert_eq!(read.clone(), Ok(s.ack.clone()));
        prop_assert!(read.expect("checked").verify(&s.agent_key));
        let check = AckCheck::new(&s.update, HashMap::from([(s.ack.agent_id.clone(), s.agent_key.to_vec())]));
        prop_assert_eq!(check.verify(&s.ack.to_json()), Ok(s.ack.agent_id.clone()));
    }

    #[test]
    fn broadcasts_round_trip_and_still_verify((message, key) in broadcast()) {
        let read = Broadcast::from_json(&message.to_json());
        prop_assert_eq!(read.clone(), Ok(message));
        prop_assert!(verifies(&read.expect("checked"), &key));
    }

    #[test]
    fn any_ack_bytes_are_refused_or_are_the_signed_ack(
        (s, bytes) in signed_ack().prop_flat_map(|s| {
            let valid = Just(s.ack.to_json());
            (Just(s), inputs::hostile_bytes(valid))
        }),
    ) {
        if let Ok(ack) = Ack::from_json(&bytes) {
            prop_assert_eq!(Ack::from_json(&ack.to_json()), Ok(ack));
        }
        let check = AckCheck::new(&s.update, HashMap::from([(s.ack.agent_id.clone(), s.agent_key.to_vec())]));
        // Only bytes that say what the agent signed count (the same ack in another JSON layout).
        if check.verify(&bytes).is_ok() {
            prop_assert_eq!(Ack::from_json(&bytes), Ok(s.ack.clone()));
        }
    }

    #[test]
    fn any_broadcast_bytes_are_refused_or_are_the_signed_message(
        ((message, key), bytes) in broadcast().prop_flat_map(|(m, k)| {
            let valid = Just(m.to_json());
            (Just((m, k)), inputs::hostile_bytes(valid))
        }),
    ) {
        if let Ok(read) = Broadcast::from_json(&bytes) {
            prop_assert_eq!(Broadcast::from_json(&read.to_json()), Ok(read.clone()));
            if verifies(&read, &key) {
                prop_assert_eq!(read, message);
            }
        }
    }
}
