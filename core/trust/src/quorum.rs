//! The operator's side: which acks count towards a rotation's quorum, and how many are needed.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use crate::codec::{AgentId, RotationId};
use crate::message::{Ack, TrustUpdate};

/// What became of one ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckOutcome {
    /// Valid, first from this agent: counts.
    Counted,
    /// Valid, but this agent already acked.
    Duplicate,
    /// From an agent that is not registered or not `active`.
    UnknownAgent,
    /// The signature does not verify with the agent's registered key.
    BadSignature,
    /// Signed, but for another rotation, version or key: a replay or a confused agent.
    Stale,
    /// Not a well-formed ack.
    Malformed,
}

impl AckOutcome {
    /// Every outcome, in report order.
    pub const ALL: [AckOutcome; 6] = [
        AckOutcome::Counted,
        AckOutcome::Duplicate,
        AckOutcome::UnknownAgent,
        AckOutcome::BadSignature,
        AckOutcome::Stale,
        AckOutcome::Malformed,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            AckOutcome::Counted => "counted",
            AckOutcome::Duplicate => "duplicate",
            AckOutcome::UnknownAgent => "unknown_agent",
            AckOutcome::BadSignature => "bad_signature",
            AckOutcome::Stale => "stale",
            AckOutcome::Malformed => "malformed",
        }
    }
}

/// Checks acks of one update against the active agents' registered keys. [`AckCheck::verify`]
/// (the expensive part: parsing and an Ed25519 verification) holds no state, so many threads can
/// share one checker; [`AckCheck::count`] then counts each agent once.
#[derive(Debug)]
pub struct AckCheck {
    rotation_id: RotationId,
    version: u64,
    new_key_id: [u8; 8],
    agents: HashMap<AgentId, Vec<u8>>,
    seen: Mutex<HashSet<AgentId>>,
}

impl AckCheck {
    /// A checker for acks of `update` from `agents` (id and registered public key of every active
    /// agent).
    pub fn new(update: &TrustUpdate, agents: HashMap<AgentId, Vec<u8>>) -> AckCheck {
        AckCheck {
            rotation_id: update.rotation_id,
            version: update.version,
            new_key_id: update.new_key_id,
            agents,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// How many agents may ack.
    pub fn active(&self) -> usize {
        self.agents.len()
    }

    /// Parses and verifies one ack; on success returns the agent to pass to [`AckCheck::count`].
    pub fn verify(&self, bytes: &[u8]) -> Result<AgentId, AckOutcome> {
        let ack = Ack::from_json(bytes).map_err(|_| AckOutcome::Malformed)?;
        let key = self
            .agents
            .get(&ack.agent_id)
            .ok_or(AckOutcome::UnknownAgent)?;
        if !ack.verify(key) {
            return Err(AckOutcome::BadSignature);
        }
        if ack.rotation_id != self.rotation_id
            || ack.version != self.version
            || ack.new_key_id != self.new_key_id
        {
            return Err(AckOutcome::Stale);
        }
        Ok(ack.agent_id)
    }

    /// Counts a verified ack once per agent.
    pub fn count(&self, agent: AgentId) -> AckOutcome {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.insert(agent) {
            AckOutcome::Counted
        } else {
            AckOutcome::Duplicate
        }
    }

    /// How many distinct agents have acked.
    pub fn acked(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The quorum rule: a commit needs strictly more than `fraction` of the active agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    /// The fraction in millionths, so the rule is exact integer arithmetic.
    parts_per_million: u64,
}

impl Quorum {
    /// A quorum of strictly more than `fraction` (0 ≤ fraction < 1).
    pub fn new(fraction: f64) -> Result<Quorum, String> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(format!(
                "quorum {fraction} is out of range: it must be at least 0 and below 1"
            ));
        }
        Ok(Quorum {
            parts_per_million: (fraction * 1e6).round() as u64,
        })
    }

    /// The fraction.
    pub fn fraction(&self) -> f64 {
        self.parts_per_million as f64 / 1e6
    }

    /// The smallest number of acks from `active` agents that is strictly more than the fraction.
    pub fn needed(&self, active: usize) -> usize {
        let active = active as u64;
        (active * self.parts_per_million / 1_000_000 + 1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_strictly_more_than_the_fraction() {
        let q = Quorum::new(0.8).expect("valid");
        assert_eq!(q.needed(10), 9);
        assert_eq!(q.needed(100), 81);
        assert_eq!(q.needed(10_000), 8_001);
        assert_eq!(q.needed(1), 1);
        assert_eq!(q.needed(3), 3);
        assert_eq!(Quorum::new(0.0).expect("valid").needed(5), 1);
        assert!(Quorum::new(1.0).is_err());
        assert!(Quorum::new(-0.1).is_err());
        assert!(Quorum::new(f64::NAN).is_err());
    }
}
