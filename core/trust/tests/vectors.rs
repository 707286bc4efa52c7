//! The test vectors of docs/TRUST_UPDATE.md: messages built from fixed seeds must match
//! `tests/vectors/v1.json` byte for byte (Ed25519 signatures are deterministic), and the file's
//! messages must pass the agent's and the operator's checks.
//!
//! `REGENERATE_VECTORS=1 cargo test -p ransomeye-trust --test vectors` rewrites the file (only
//! when the format changes on purpose; the docs quote it).

use std::collections::HashMap;

use ransomeye_trust::{
    Ack, AckCheck, AgentId, AgentTrust, Broadcast, RotationId, Signer, TrustAbort, TrustCommit,
    TrustUpdate,
};
use ring::signature::Ed25519KeyPair;
use serde_json::{json, Value};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/v1.json");

fn pair(seed: u8) -> ([u8; 32], Ed25519KeyPair) {
    let seed = [seed; 32];
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("32-byte seed");
    (seed, pair)
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("signing inputs are ASCII")
}

fn build() -> Value {
    let (old_seed, old) = pair(0x01);
    let (new_seed, new) = pair(0x02);
    let (agent_seed, agent) = pair(0x03);
    let rotation: RotationId = "00112233445566778899aabbccddeeff".parse().expect("id");
    let agent_id: AgentId = "6f9619ff-8b86-4011-b42d-00c04fc964ff".parse().expect("id");
    let update = TrustUpdate::new(rotation, 2, &old, &new, 1_795_000_000, 1_795_000_060);
    let ack = Ack::new(agent_id, &update, &agent);
    let commit = TrustCommit::new(&update, &new, 1_795_000_003);
    let abort = TrustAbort::new(&update, &old, 1_795_000_060);
    let key = |seed: [u8; 32], p: &Ed25519KeyPair| {
        json!({
            "seed": hex::encode(seed),
            "public_key": hex::encode(p.public_key()),
            "key_id": ransomeye_kernel::keys::public_key_id(&p.public_key()).to_string(),
        })
    };
    json!({
        "old_key": key(old_seed, &old),
        "new_key": key(new_seed, &new),
        "agent_key": key(agent_seed, &agent),
        "update": {
            "signing_input": text(update.signing_input()),
            "message": serde_json::from_slice::<Value>(&Broadcast::Update(update).to_json()).expect("json"),
        },
        "ack": {
            "signing_input": text(ack.signing_input()),
            "message": serde_json::from_slice::<Value>(&ack.to_json()).expect("json"),
        },
        "commit": {
            "signing_input": text(commit.signing_input()),
            "message": serde_json::from_slice::<Value>(&Broadcast::Commit(commit).to_json()).expect("json"),
        },
        "abort": {
            "signing_input": text(abort.signing_input()),
            "message": serde_json::from_slice::<Value>(&Broadcast::Abort(abort).to_json()).expect("json"),
        },
    })
}

#[test]
fn vectors_match_the_file() {
    let built = build();
    if std::env::var_os("REGENERATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&built).expect("json") + "\n";
        std::fs::write(FILE, text).expect("write vectors");
    }
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(FILE).expect("read vectors")).expect("json");
    assert_eq!(
        built, stored,
        "tests/vectors/v1.json differs from what the code builds"
    );
}

#[test]
fn the_files_messages_pass_the_agent_and_operator_checks() {
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(FILE).expect("read vectors")).expect("json");
    let bytes = |k: &str| serde_json::to_vec(&stored[k]["message"]).expect("json");
    let key = |k: &str| {
        let mut pk = [0u8; 32];
        hex::decode_to_slice(stored[k]["public_key"].as_str().expect("hex"), &mut pk).expect("hex");
        pk
    };
    let mut agent = AgentTrust::new(1, key("old_key"));
    let Broadcast::Update(update) = Broadcast::from_json(&bytes("update")).expect("update") else {
        panic!("not an update")
    };
    agent
        .on_update(&update, 1_795_000_001)
        .expect("agent accepts the update");
    assert_eq!(
        update.signing_input(),
        stored["update"]["signing_input"]
            .as_str()
            .expect("text")
            .as_bytes()
    );

    let ack = Ack::from_json(&bytes("ack")).expect("ack");
    let agents = HashMap::from([(ack.agent_id.clone(), key("agent_key").to_vec())]);
    let check = AckCheck::new(&update, agents);
    let who = check.verify(&bytes("ack")).expect("ack verifies");
    assert_eq!(check.count(who), ransomeye_trust::AckOutcome::Counted);

    let mut aborted = agent.clone();
    let abort = Broadcast::from_json(&bytes("abort")).expect("abort");
    aborted
        .on_broadcast(&abort, 1_795_000_060)
        .expect("abort applies");
    assert_eq!(aborted.pending, None);
    assert_eq!(aborted.public_key, key("old_key"));

    let commit = Broadcast::from_json(&bytes("commit")).expect("commit");
    agent
        .on_broadcast(&commit, 1_795_000_003)
        .expect("commit applies");
    assert_eq!((agent.version, agent.public_key), (2, key("new_key")));
}

#[test]
fn the_protocol_document_quotes_the_vectors() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/TRUST_UPDATE.md"
    ))
    .expect("docs/TRUST_UPDATE.md");
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(FILE).expect("read vectors")).expect("json");
    for message in ["update", "ack", "commit", "abort"] {
        let input = stored[message]["signing_input"].as_str().expect("text");
        assert!(
            doc.contains(input),
            "the document lacks the {message} signing input"
        );
        let pretty = serde_json::to_string_pretty(&stored[message]["message"]).expect("json");
        assert!(
            doc.contains(&pretty),
            "the document lacks the {message} message"
        );
    }
}

/// The catch-up scenarios of docs/TRUST_UPDATE.md ("Catch-up vectors"), over the file's
/// messages: U (the update), C (its commit), A (its abort), X (U with one bit of `old_signature`
/// flipped: a forgery); the agent trusts the old key at version 1 and acks what ends pending.
#[test]
fn catch_up_vectors() {
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(FILE).expect("read vectors")).expect("json");
    let message = |k: &str| {
        Broadcast::from_json(&serde_json::to_vec(&stored[k]["message"]).expect("json"))
            .expect("message")
    };
    let key = |k: &str| {
        let mut pk = [0u8; 32];
        hex::decode_to_slice(stored[k]["public_key"].as_str().expect("hex"), &mut pk).expect("hex");
        pk
    };
    let (u, c, a) = (message("update"), message("commit"), message("abort"));
    let Broadcast::Update(update) = u.clone() else {
        panic!("not an update")
    };
    let mut forged = update.clone();
    forged.old_signature[0] ^= 1;
    let x = Broadcast::Update(forged);
    let junk = Broadcast::from_json(b"{\"type\":\"trust_update\"}");
    assert!(junk.is_err(), "malformed messages never reach catch-up");
    // (history, now, expected version, expected pending rotation)
    let rotation = Some(update.rotation_id);
    let cases = [
        (
            "U, before the deadline",
            vec![u.clone()],
            1_795_000_030,
            1,
            rotation,
        ),
        (
            "U, at the deadline",
            vec![u.clone()],
            1_795_000_060,
            1,
            rotation,
        ),
        (
            "U, after the deadline",
            vec![u.clone()],
            1_795_000_061,
            1,
            None,
        ),
        ("U A", vec![u.clone(), a.clone()], 1_795_000_030, 1, None),
        ("U C", vec![u.clone(), c.clone()], 1_795_000_030, 2, None),
        (
            "U C, long after",
            vec![u.clone(), c.clone()],
            1_900_000_000,
            2,
            None,
        ),
        ("X", vec![x.clone()], 1_795_000_030, 1, None),
        (
            "X U",
            vec![x.clone(), u.clone()],
            1_795_000_030,
            1,
            rotation,
        ),
        (
            "U X",
            vec![u.clone(), x.clone()],
            1_795_000_030,
            1,
            rotation,
        ),
        ("X C", vec![x, c.clone()], 1_795_000_030, 1, None),
        ("C U", vec![c, u], 1_795_000_030, 1, rotation),
    ];
    for (name, history, now, version, pending) in cases {
        let mut agent = AgentTrust::new(1, key("old_key"));
        let caught = agent.catch_up(&history, now);
        assert_eq!(agent.version, version, "{name}");
        assert_eq!(caught.pending.map(|p| p.rotation_id), pending, "{name}");
        assert_eq!(
            agent.pending.as_ref().map(|p| p.rotation_id),
            pending,
            "{name}"
        );
    }
    // A running agent at version 1 that sees an update of version 3 has a gap: it catches up.
    let newer = TrustUpdate {
        version: 3,
        ..update.clone()
    };
    let agent = AgentTrust::new(1, key("old_key"));
    assert!(agent.is_gap(&newer));
    assert!(!agent.is_gap(&update));
}
