//! Ack verification rate: how many acks per second `AckCheck::verify` (parse, look up the
//! agent, Ed25519 verification, rotation/version/key check) gets through, on one thread and on
//! one thread per core as `rotate-keys` runs it.
//!
//! `cargo run --release -p ransomeye-trust --example ack_rate -- [ACKS]` (default 20 000).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ransomeye_trust::{Ack, AckCheck, AgentId, RotationId, TrustUpdate};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

fn key() -> Ed25519KeyPair {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("random");
    Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("pkcs8")
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let (old, new) = (key(), key());
    let update = TrustUpdate::new(
        RotationId::generate().expect("random"),
        2,
        &old,
        &new,
        1_795_000_000,
        1_795_000_060,
    );
    let mut agents = HashMap::new();
    let mut acks = Vec::with_capacity(n);
    for _ in 0..n {
        let id = AgentId::generate().expect("random");
        let k = key();
        acks.push(Ack::new(id.clone(), &update, &k).to_json());
        agents.insert(
            id,
            ring::signature::KeyPair::public_key(&k).as_ref().to_vec(),
        );
    }
    let check = Arc::new(AckCheck::new(&update, agents));

    let start = Instant::now();
    let ok = acks.iter().filter(|a| check.verify(a).is_ok()).count();
    let one = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every ack must verify");

    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let start = Instant::now();
    let acks = Arc::new(acks);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (acks, check) = (Arc::clone(&acks), Arc::clone(&check));
            std::thread::spawn(move || {
                acks.iter()
                    .skip(t)
                    .step_by(threads)
                    .filter(|a| check.verify(a).is_ok())
                    .count()
            })
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    let all = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every ack must verify");
    println!("acks {n}: 1 thread {one:.0}/s, {threads} threads {all:.0}/s");
}
