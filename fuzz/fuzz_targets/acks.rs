//! Fuzz target: arbitrary bytes through the bus messages' parsers: an ack, as the operator
//! reads it from any agent ([`Ack::from_json`], [`AckCheck::verify`]), and a broadcast, as an
//! agent reads it ([`Broadcast::from_json`]).
//!
//! None may panic. What they accept must read back the same from its own JSON; no ack verifies
//! (the agent key below signed nothing the fuzzer can find).
//! The property tests in core/trust/tests/properties.rs check the same on every `scripts/test`.
//!
//! Run (from the repository root):
//!
//! ```sh
//! mkdir -p fuzz/corpus/acks
//! for m in update ack commit abort; do jq -c .$m.message core/trust/tests/vectors/v1.json >fuzz/corpus/acks/$m.json; done
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run acks -- -max_total_time=60
//! ```
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use ransomeye_trust::{Ack, AckCheck, AgentId, Broadcast, RotationId, Signer, TrustUpdate};
use ring::signature::Ed25519KeyPair;

fuzz_target!(|data: &[u8]| {
    if let Ok(ack) = Ack::from_json(data) {
        assert_eq!(Ack::from_json(&ack.to_json()).as_ref(), Ok(&ack));
    }
    if let Ok(message) = Broadcast::from_json(data) {
        assert_eq!(
            Broadcast::from_json(&message.to_json()).as_ref(),
            Ok(&message)
        );
    }
    let key = |seed: u8| Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("32-byte seed");
    let (old, new, agent) = (key(1), key(2), key(3));
    let update = TrustUpdate::new(RotationId([0; 16]), 2, &old, &new, 0, 60);
    let agent_id: AgentId = "6f9619ff-8b86-4011-b42d-00c04fc964ff"
        .parse()
        .expect("a UUID");
    let check = AckCheck::new(
        &update,
        HashMap::from([(agent_id, agent.public_key().to_vec())]),
    );
    assert!(check.verify(data).is_err(), "an ack nobody signed verified");
});
