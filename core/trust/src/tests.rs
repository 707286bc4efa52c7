//! The protocol's rules, one test each: what an agent accepts, what it refuses, and what counts
//! towards a quorum.

use std::collections::HashMap;

use ring::signature::Ed25519KeyPair;

use crate::*;

fn key(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("seed")
}

fn public(k: &Ed25519KeyPair) -> [u8; 32] {
    Signer::public_key(k)
}

const NOW: u64 = 1_795_000_000;

fn update(version: u64, old: &Ed25519KeyPair, new: &Ed25519KeyPair) -> TrustUpdate {
    TrustUpdate::new(
        RotationId::generate().expect("random"),
        version,
        old,
        new,
        NOW,
        NOW + 90,
    )
}

#[test]
fn every_field_of_an_update_is_covered_by_both_signatures() {
    let (old, new) = (key(1), key(2));
    let good = update(2, &old, &new);
    assert_eq!(good.verify(&public(&old)), Ok(()));
    let tampered: [fn(&mut TrustUpdate); 6] = [
        |u| u.rotation_id.0[0] ^= 1,
        |u| u.version += 1,
        |u| u.issued_at += 1,
        |u| u.deadline += 1,
        |u| u.old_signature[5] ^= 1,
        |u| u.new_signature[5] ^= 1,
    ];
    for (i, change) in tampered.iter().enumerate() {
        let mut u = good.clone();
        change(&mut u);
        assert!(
            matches!(u.verify(&public(&old)), Err(Rejection::BadSignature(_))),
            "change {i} was not detected"
        );
    }
    // Swapping in another new key breaks the id binding, then the signatures.
    let mut u = good.clone();
    u.new_public_key = public(&key(3));
    assert!(matches!(
        u.verify(&public(&old)),
        Err(Rejection::KeyIdMismatch { .. })
    ));
    // An update signed by a key the agent does not trust names another old key.
    assert!(matches!(
        good.verify(&public(&key(9))),
        Err(Rejection::WrongKey { .. })
    ));
}

#[test]
fn a_signature_of_one_message_type_is_never_valid_for_another() {
    let (old, new) = (key(1), key(2));
    let u = update(2, &old, &new);
    let commit = TrustCommit::new(&u, &new, NOW + 1);
    let abort = TrustAbort::new(&u, &old, NOW + 1);
    assert_ne!(commit.signing_input(), abort.signing_input());
    let mut forged = TrustAbort::new(&u, &old, NOW + 1);
    forged.signature = commit.signature;
    assert!(forged.verify(&public(&old)).is_err());
    assert!(forged.verify(&public(&new)).is_err());
}

#[test]
fn an_agent_accepts_only_the_next_version_before_the_deadline() {
    let (old, new) = (key(1), key(2));
    let mut agent = AgentTrust::new(1, public(&old));
    assert!(matches!(
        agent.on_update(&update(3, &old, &new), NOW),
        Err(Rejection::WrongVersion {
            expected: 2,
            found: 3
        })
    ));
    assert!(matches!(
        agent.on_update(&update(1, &old, &new), NOW),
        Err(Rejection::WrongVersion { .. })
    ));
    assert!(matches!(
        agent.on_update(&update(2, &old, &new), NOW + 91),
        Err(Rejection::Expired { .. })
    ));
    assert_eq!(agent.pending, None);
    let u = update(2, &old, &new);
    agent.on_update(&u, NOW).expect("accepted");
    assert_eq!(agent.pending.as_ref(), Some(&u));
    assert!(!agent.expire(NOW + 90));
    assert!(agent.expire(NOW + 91));
    assert_eq!(agent.pending, None);
    let mut top = AgentTrust::new(u64::MAX, public(&old));
    assert!(top.on_update(&update(0, &old, &new), NOW).is_err());
}

#[test]
fn only_the_pending_key_can_commit_and_only_the_trusted_key_can_abort() {
    let (old, new) = (key(1), key(2));
    let u = update(2, &old, &new);
    let mut agent = AgentTrust::new(1, public(&old));
    agent.on_update(&u, NOW).expect("accepted");
    // A commit signed by the old key, or by a third key, does not switch.
    assert!(agent.on_commit(&TrustCommit::new(&u, &old, NOW)).is_err());
    assert!(agent
        .on_commit(&TrustCommit::new(&u, &key(7), NOW))
        .is_err());
    // An abort signed by the new key does not drop the pending key.
    assert!(agent.on_abort(&TrustAbort::new(&u, &new, NOW)).is_err());
    // A commit of another rotation is refused.
    let other = update(2, &old, &new);
    assert!(matches!(
        agent.on_commit(&TrustCommit::new(&other, &new, NOW)),
        Err(Rejection::WrongRotation { .. })
    ));
    assert!(agent.pending.is_some());
    agent
        .on_commit(&TrustCommit::new(&u, &new, NOW))
        .expect("commit");
    assert_eq!((agent.version, agent.public_key), (2, public(&new)));
    assert_eq!(agent.pending, None);
}

#[test]
fn an_agent_that_was_offline_walks_the_chain_of_committed_updates() {
    let (k1, k2, k3, k4) = (key(1), key(2), key(3), key(4));
    let u2 = update(2, &k1, &k2);
    let aborted = update(3, &k2, &key(8));
    let u3 = update(3, &k2, &k3);
    let unsigned_by_chain = update(4, &key(9), &k4);
    let uncommitted = update(4, &k3, &k4);
    let history = vec![
        Broadcast::Update(u2.clone()),
        Broadcast::Commit(TrustCommit::new(&u2, &k2, NOW)),
        Broadcast::Update(aborted.clone()),
        Broadcast::Abort(TrustAbort::new(&aborted, &k2, NOW)),
        Broadcast::Update(u3.clone()),
        Broadcast::Commit(TrustCommit::new(&u3, &k3, NOW)),
        Broadcast::Update(unsigned_by_chain.clone()),
        Broadcast::Commit(TrustCommit::new(&unsigned_by_chain, &k4, NOW)),
        Broadcast::Update(uncommitted.clone()),
    ];
    let mut agent = AgentTrust::new(1, public(&k1));
    let caught = agent.catch_up(&history, NOW + 1);
    assert_eq!(caught.applied, 2);
    assert_eq!((agent.version, agent.public_key), (3, public(&k3)));
    // The newest update is undecided and still in its window: it is pending, to be acked.
    assert_eq!(caught.pending.as_ref(), Some(&uncommitted));
    assert_eq!(agent.pending.as_ref(), Some(&uncommitted));
}

#[test]
fn junk_in_the_stream_neither_stops_nor_misleads_catch_up() {
    let (k1, k2, k3) = (key(1), key(2), key(3));
    let u2 = update(2, &k1, &k2);
    let pending = update(3, &k2, &k3);
    let mut history = Vec::new();
    for i in 0..200u8 {
        // Updates of the right versions from keys nobody trusts, commits and aborts of real
        // rotations signed by the wrong keys.
        let stranger = key(100 + (i % 50));
        history.push(Broadcast::Update(update(
            2 + u64::from(i % 2),
            &stranger,
            &k3,
        )));
        history.push(Broadcast::Commit(TrustCommit::new(&u2, &stranger, NOW)));
        history.push(Broadcast::Abort(TrustAbort::new(&pending, &stranger, NOW)));
        if i == 50 {
            history.push(Broadcast::Update(u2.clone()));
        }
        if i == 100 {
            history.push(Broadcast::Commit(TrustCommit::new(&u2, &k2, NOW)));
        }
        if i == 150 {
            history.push(Broadcast::Update(pending.clone()));
        }
    }
    let mut agent = AgentTrust::new(1, public(&k1));
    let caught = agent.catch_up(&history, NOW + 1);
    assert_eq!(caught.applied, 1);
    assert_eq!((agent.version, agent.public_key), (2, public(&k2)));
    assert_eq!(
        caught.pending.as_ref(),
        Some(&pending),
        "forged aborts do not decide it"
    );
    // A real abort does.
    history.push(Broadcast::Abort(TrustAbort::new(&pending, &k2, NOW)));
    let mut agent = AgentTrust::new(1, public(&k1));
    assert_eq!(agent.catch_up(&history, NOW + 1).pending, None);
}

#[test]
fn only_valid_first_acks_from_active_agents_count() {
    let (old, new) = (key(1), key(2));
    let u = update(2, &old, &new);
    let (a, b) = (key(11), key(12));
    let (ida, idb) = (
        AgentId::generate().expect("id"),
        AgentId::generate().expect("id"),
    );
    let agents = HashMap::from([
        (ida.clone(), public(&a).to_vec()),
        (idb.clone(), public(&b).to_vec()),
    ]);
    let check = AckCheck::new(&u, agents);
    let outcome = |bytes: &[u8]| match check.verify(bytes) {
        Ok(agent) => check.count(agent),
        Err(o) => o,
    };
    let good = Ack::new(ida.clone(), &u, &a).to_json();
    assert_eq!(outcome(&good), AckOutcome::Counted);
    assert_eq!(outcome(&good), AckOutcome::Duplicate);
    assert_eq!(
        outcome(&Ack::new(idb.clone(), &u, &a).to_json()),
        AckOutcome::BadSignature
    );
    let stranger = AgentId::generate().expect("id");
    assert_eq!(
        outcome(&Ack::new(stranger, &u, &b).to_json()),
        AckOutcome::UnknownAgent
    );
    let older = update(2, &old, &new);
    assert_eq!(
        outcome(&Ack::new(idb.clone(), &older, &b).to_json()),
        AckOutcome::Stale
    );
    assert_eq!(outcome(b"{\"agent_id\": 1}"), AckOutcome::Malformed);
    let mut escaped = String::from_utf8(Ack::new(idb.clone(), &u, &b).to_json()).expect("utf8");
    escaped = escaped.replacen("\"version\"", "\"vers\\u0069on\"", 1);
    assert_eq!(outcome(escaped.as_bytes()), AckOutcome::Counted);
    assert_eq!(check.acked(), 2);
}
