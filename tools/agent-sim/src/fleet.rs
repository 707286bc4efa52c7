//! The simulated agents: their ids, Ed25519 keys, roles (honest, forger, silent) and their shared
//! trust state, and what they do with each broadcast. Pure: no bus, no database, no printing, so
//! that the whole agent behaviour is unit-tested here.
//!
//! Every agent runs the checks of [`AgentTrust`] exactly as a real agent must. All agents start
//! from the same trust state and receive the same broadcasts in the same order, so their states
//! never diverge: the fleet is one group of identical states, keeps one [`AgentTrust`] for it and
//! runs each check once for the whole group (identical state and input give an identical verdict).
//! Only signing acks is per agent.

use std::fmt;

use ransomeye_trust::{
    Ack, AgentId, AgentTrust, Broadcast, Rejection, RotationId, Signer, TrustUpdate,
};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

/// How many agents do what: the first `honest` ack every accepted update, the next `forgers`
/// send forged acks instead, the remaining `silent` never ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Agents that ack accepted updates with their registered key.
    pub honest: usize,
    /// Agents that send a forged ack instead (four kinds in turn, see [`Forgery`]).
    pub forgers: usize,
    /// Agents that accept updates but never ack.
    pub silent: usize,
}

impl Partition {
    /// Splits `agents` into round(agents × `ack_fraction`) honest ackers, then
    /// round(agents × `forge_fraction`) forgers (at most what is left), then silent agents.
    /// Both fractions must lie in [0, 1] and add up to at most 1.
    pub fn new(agents: usize, ack_fraction: f64, forge_fraction: f64) -> Result<Partition, String> {
        for (name, value) in [
            ("--ack-fraction", ack_fraction),
            ("--forge-fraction", forge_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!(
                    "{name} {value} is out of range: it must be between 0 and 1"
                ));
            }
        }
        // A small tolerance so that e.g. 0.7 + 0.3 is not refused for its rounding error.
        if ack_fraction + forge_fraction > 1.0 + 1e-9 {
            return Err(format!(
                "--ack-fraction {ack_fraction} plus --forge-fraction {forge_fraction} is more than 1: \
                 an agent is either honest, a forger or silent"
            ));
        }
        let share = |fraction: f64| ((agents as f64 * fraction).round() as usize).min(agents);
        let honest = share(ack_fraction);
        let forgers = share(forge_fraction).min(agents - honest);
        Ok(Partition {
            honest,
            forgers,
            silent: agents - honest - forgers,
        })
    }

    /// All agents.
    pub fn total(&self) -> usize {
        self.honest + self.forgers + self.silent
    }
}

/// The forged ack a forger sends instead of its real one; forger number `k` uses kind `k % 4`.
#[derive(Debug)]
pub enum Forgery {
    /// Kind 0: names the real agent but is signed by a key that was never registered; the
    /// operator sees a bad signature.
    ImpostorKey(Ed25519KeyPair),
    /// Kind 1: an agent id that is not registered, with its own key; the operator sees an
    /// unknown agent.
    UnknownAgent(AgentId, Ed25519KeyPair),
    /// Kind 2: a replay, properly signed by the real agent, of an ack of another rotation; the
    /// operator sees a stale ack.
    Replay(RotationId),
    /// Kind 3: properly signed by the real agent, right rotation, but version + 1; stale.
    WrongVersion,
}

/// What an agent does with an accepted update.
#[derive(Debug)]
pub enum Role {
    /// Acks with its registered key.
    Honest,
    /// Sends a forged ack instead.
    Forger(Forgery),
    /// Does not ack.
    Silent,
}

/// One simulated agent.
#[derive(Debug)]
pub struct SimAgent {
    /// Its id (the `agents.id` it is registered under).
    pub id: AgentId,
    /// Its registered public key.
    pub public_key: [u8; 32],
    /// What it does with accepted updates.
    pub role: Role,
    key: Ed25519KeyPair,
}

impl SimAgent {
    /// A new agent with a fresh key (and fresh forgery material for forgers).
    fn generate(role: RoleKind, rng: &SystemRandom) -> Result<SimAgent, KeyGenError> {
        let key = new_key(rng)?;
        let role = match role {
            RoleKind::Honest => Role::Honest,
            RoleKind::Silent => Role::Silent,
            RoleKind::Forger(0) => Role::Forger(Forgery::ImpostorKey(new_key(rng)?)),
            RoleKind::Forger(1) => Role::Forger(Forgery::UnknownAgent(
                AgentId::generate().ok_or(KeyGenError)?,
                new_key(rng)?,
            )),
            RoleKind::Forger(2) => {
                Role::Forger(Forgery::Replay(RotationId::generate().ok_or(KeyGenError)?))
            }
            RoleKind::Forger(_) => Role::Forger(Forgery::WrongVersion),
        };
        Ok(SimAgent {
            id: AgentId::generate().ok_or(KeyGenError)?,
            public_key: Signer::public_key(&key),
            role,
            key,
        })
    }

    /// The JSON ack this agent publishes for an accepted `update`, if it acks at all.
    fn ack(&self, update: &TrustUpdate) -> Option<Vec<u8>> {
        let ack = match &self.role {
            Role::Silent => return None,
            Role::Honest => Ack::new(self.id.clone(), update, &self.key),
            Role::Forger(Forgery::ImpostorKey(impostor)) => {
                Ack::new(self.id.clone(), update, impostor)
            }
            Role::Forger(Forgery::UnknownAgent(id, key)) => Ack::new(id.clone(), update, key),
            Role::Forger(Forgery::Replay(other)) => {
                let mut rotation_id = *other;
                if rotation_id == update.rotation_id {
                    // Astronomically unlikely, but a replay must name another rotation.
                    rotation_id.0[0] ^= 1;
                }
                self.signed(Ack {
                    rotation_id,
                    ..unsigned_ack(&self.id, update)
                })
            }
            Role::Forger(Forgery::WrongVersion) => self.signed(Ack {
                version: update.version.wrapping_add(1),
                ..unsigned_ack(&self.id, update)
            }),
        };
        Some(ack.to_json())
    }

    fn signed(&self, mut ack: Ack) -> Ack {
        ack.signature = Signer::sign(&self.key, &ack.signing_input());
        ack
    }
}

fn unsigned_ack(agent_id: &AgentId, update: &TrustUpdate) -> Ack {
    Ack {
        agent_id: agent_id.clone(),
        rotation_id: update.rotation_id,
        version: update.version,
        new_key_id: update.new_key_id,
        signature: [0; 64],
    }
}

#[derive(Clone, Copy)]
enum RoleKind {
    Honest,
    Forger(usize),
    Silent,
}

fn new_key(rng: &SystemRandom) -> Result<Ed25519KeyPair, KeyGenError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| KeyGenError)?;
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyGenError)
}

/// The system's random source failed while generating keys or ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGenError;

impl fmt::Display for KeyGenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the system's secure random source failed while generating agent keys")
    }
}

impl std::error::Error for KeyGenError {}

/// What one broadcast did to the fleet: one stdout line each (see [`Event`]'s `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A TrustUpdate.
    Update {
        /// Its rotation.
        rotation: RotationId,
        /// Its version.
        version: u64,
        /// Agents that accepted it (it is now their pending update).
        accepted: usize,
        /// Honest acks sent.
        acked: usize,
        /// Forged acks sent.
        forged: usize,
        /// Agents that refused it.
        rejected: usize,
        /// Why the first refusing agent refused.
        reason: Option<String>,
    },
    /// A TrustCommit.
    Commit {
        /// Its rotation.
        rotation: RotationId,
        /// Its version.
        version: u64,
        /// Agents that now trust the new key.
        switched: usize,
        /// Agents that refused it.
        rejected: usize,
        /// Why the first refusing agent refused.
        reason: Option<String>,
    },
    /// A TrustAbort.
    Abort {
        /// Its rotation.
        rotation: RotationId,
        /// Its version.
        version: u64,
        /// Agents that dropped their pending update.
        dropped: usize,
        /// Agents that refused it.
        rejected: usize,
        /// Why the first refusing agent refused.
        reason: Option<String>,
    },
    /// Caught up from the stream on connecting (`--catch-up`).
    CatchUp {
        /// Committed versions applied.
        applied: u64,
        /// The trust version after.
        version: u64,
        /// The undecided update now pending and acked, if any.
        pending: Option<RotationId>,
        /// Acks sent for it (honest and forged).
        acks: usize,
        /// Messages read from the stream (including ones that do not parse).
        read: usize,
    },
    /// Not a broadcast this protocol knows; ignored by every agent.
    Malformed {
        /// The parser's complaint.
        reason: String,
    },
}

impl fmt::Display for Event {
    /// One line, `kind key=value …`; `reason` is always last and runs to the end of the line
    /// (`-` when there is none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Update {
                rotation,
                version,
                accepted,
                acked,
                forged,
                rejected,
                reason,
            } => write!(
                f,
                "update rotation={rotation} version={version} accepted={accepted} acked={acked} \
                 forged={forged} rejected={rejected} reason={}",
                one_line(reason.as_deref())
            ),
            Event::Commit {
                rotation,
                version,
                switched,
                rejected,
                reason,
            } => write!(
                f,
                "commit rotation={rotation} version={version} switched={switched} \
                 rejected={rejected} reason={}",
                one_line(reason.as_deref())
            ),
            Event::Abort {
                rotation,
                version,
                dropped,
                rejected,
                reason,
            } => write!(
                f,
                "abort rotation={rotation} version={version} dropped={dropped} \
                 rejected={rejected} reason={}",
                one_line(reason.as_deref())
            ),
            Event::CatchUp {
                applied,
                version,
                pending,
                acks,
                read,
            } => write!(
                f,
                "catch-up applied={applied} version={version} pending={} acks={acks} read={read}",
                pending.map_or_else(|| "-".to_string(), |r| r.to_string())
            ),
            Event::Malformed { reason } => {
                write!(f, "malformed reason={}", one_line(Some(reason)))
            }
        }
    }
}

fn one_line(reason: Option<&str>) -> String {
    match reason {
        None | Some("") => "-".into(),
        Some(r) => r.replace(['\n', '\r'], " "),
    }
}

/// The simulated agents and their (shared) trust state.
#[derive(Debug)]
pub struct Fleet {
    partition: Partition,
    agents: Vec<SimAgent>,
    /// The trust state of every agent (see the module comment).
    trust: AgentTrust,
    /// The last pending update that expired unanswered, to say so when its commit or abort
    /// comes late.
    expired: Option<TrustUpdate>,
}

impl Fleet {
    /// Generates `partition.total()` agents with fresh Ed25519 keys, all trusting `trust`, in
    /// parallel on every core.
    pub fn generate(partition: Partition, trust: AgentTrust) -> Result<Fleet, KeyGenError> {
        let roles: Vec<RoleKind> = (0..partition.total())
            .map(|i| {
                if i < partition.honest {
                    RoleKind::Honest
                } else if i < partition.honest + partition.forgers {
                    RoleKind::Forger((i - partition.honest) % 4)
                } else {
                    RoleKind::Silent
                }
            })
            .collect();
        let agents = parallel_map(&roles, SystemRandom::new, |rng, role| {
            SimAgent::generate(*role, rng)
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        Ok(Fleet {
            partition,
            agents,
            trust,
            expired: None,
        })
    }

    /// How many agents are honest, forgers and silent.
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// Every agent, in index order.
    pub fn agents(&self) -> &[SimAgent] {
        &self.agents
    }

    /// The trust state every agent is in.
    pub fn trust(&self) -> &AgentTrust {
        &self.trust
    }

    /// Catches up from `stream` (every message stored on the updates subject, oldest first, as
    /// bytes) at `now`, as a returning agent does ([`AgentTrust::catch_up`]): unparsable
    /// messages are skipped; the acks for the undecided update left pending are returned.
    pub fn catch_up(&mut self, stream: &[Vec<u8>], now: u64) -> (Event, Vec<Vec<u8>>) {
        let history: Vec<Broadcast> = stream
            .iter()
            .filter_map(|bytes| Broadcast::from_json(bytes).ok())
            .collect();
        let caught = self.trust.catch_up(&history, now);
        let acks: Vec<Vec<u8>> = match &caught.pending {
            Some(update) => parallel_map(&self.agents, || (), |(), agent| agent.ack(update))
                .into_iter()
                .flatten()
                .collect(),
            None => Vec::new(),
        };
        let event = Event::CatchUp {
            applied: caught.applied,
            version: self.trust.version,
            pending: caught.pending.map(|u| u.rotation_id),
            acks: acks.len(),
            read: stream.len(),
        };
        (event, acks)
    }

    /// Whether `bytes` is an update beyond the fleet's next version: commits were missed, and
    /// the fleet must catch up from the stream rather than judge it alone.
    pub fn is_gap(&self, bytes: &[u8]) -> bool {
        matches!(Broadcast::from_json(bytes), Ok(Broadcast::Update(u)) if self.trust.is_gap(&u))
    }

    /// Parses and applies one message received on the updates subject; returns what happened
    /// and the acks to publish on the update's ack subject. Unparsable messages change nothing.
    pub fn on_message(&mut self, bytes: &[u8], now: u64) -> (Event, Vec<Vec<u8>>) {
        match Broadcast::from_json(bytes) {
            Ok(message) => self.on_broadcast(&message, now),
            Err(e) => (
                Event::Malformed {
                    reason: e.to_string(),
                },
                Vec::new(),
            ),
        }
    }

    /// Applies one broadcast at `now` (Unix seconds) to every agent; returns what happened and
    /// the acks to publish on [`ransomeye_trust::ack_subject`] of its rotation (non-empty only
    /// for an accepted update). A pending update whose deadline has passed is dropped first, as
    /// a real agent's timer would have.
    pub fn on_broadcast(&mut self, message: &Broadcast, now: u64) -> (Event, Vec<Vec<u8>>) {
        let pending = self.trust.pending.clone();
        if self.trust.expire(now) {
            self.expired = pending;
        }
        let n = self.agents.len();
        let split = |result: &Result<(), Rejection>| match result {
            Ok(()) => (n, 0, None),
            Err(e) => (0, n, Some(e.to_string())),
        };
        match message {
            Broadcast::Update(update) => {
                let result = self.trust.on_update(update, now);
                let (accepted, rejected, reason) = split(&result);
                let acks = if result.is_ok() {
                    parallel_map(&self.agents, || (), |(), agent| agent.ack(update))
                        .into_iter()
                        .flatten()
                        .collect()
                } else {
                    Vec::new()
                };
                let (acked, forged) = match result {
                    Ok(()) => (self.partition.honest, self.partition.forgers),
                    Err(_) => (0, 0),
                };
                debug_assert_eq!(acks.len(), acked + forged);
                let event = Event::Update {
                    rotation: update.rotation_id,
                    version: update.version,
                    accepted,
                    acked,
                    forged,
                    rejected,
                    reason,
                };
                (event, acks)
            }
            Broadcast::Commit(commit) => {
                let result = self.trust.on_commit(commit);
                let (switched, rejected, reason) = split(&result);
                let event = Event::Commit {
                    rotation: commit.rotation_id,
                    version: commit.version,
                    switched,
                    rejected,
                    reason: reason.map(|r| self.explain_late(commit.rotation_id, now, r)),
                };
                (event, Vec::new())
            }
            Broadcast::Abort(abort) => {
                let result = self.trust.on_abort(abort);
                let (dropped, rejected, reason) = split(&result);
                let event = Event::Abort {
                    rotation: abort.rotation_id,
                    version: abort.version,
                    dropped,
                    rejected,
                    reason: reason.map(|r| self.explain_late(abort.rotation_id, now, r)),
                };
                (event, Vec::new())
            }
        }
    }

    /// A commit or abort refused because its update already expired says so, rather than
    /// "nothing pending".
    fn explain_late(&self, rotation: RotationId, now: u64, reason: String) -> String {
        match &self.expired {
            Some(u) if u.rotation_id == rotation && self.trust.pending.is_none() => {
                Rejection::Expired {
                    deadline: u.deadline,
                    now,
                }
                .to_string()
            }
            _ => reason,
        }
    }
}

/// Maps `f` over `items` on one thread per available core (in chunks, order kept); `init`
/// makes each thread's scratch state.
fn parallel_map<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&S, &T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let (init, f) = (&init, &f);
                scope.spawn(move || {
                    let state = init();
                    part.iter().map(|item| f(&state, item)).collect::<Vec<R>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ransomeye_trust::{AckCheck, AckOutcome, TrustAbort, TrustCommit};

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key() -> Ed25519KeyPair {
        new_key(&SystemRandom::new()).expect("key")
    }

    fn rotation() -> RotationId {
        RotationId::generate().expect("random")
    }

    /// A fleet of `n` agents trusting `root` at version 1.
    fn fleet(n: usize, ack: f64, forge: f64, root: &Ed25519KeyPair) -> Fleet {
        let partition = Partition::new(n, ack, forge).expect("valid partition");
        Fleet::generate(partition, AgentTrust::new(1, Signer::public_key(root))).expect("keys")
    }

    fn update(version: u64, old: &Ed25519KeyPair, new: &Ed25519KeyPair) -> TrustUpdate {
        TrustUpdate::new(rotation(), version, old, new, NOW, NOW + 60)
    }

    /// The operator's view: every ack checked against the fleet's registered keys.
    fn outcomes(
        fleet: &Fleet,
        update: &TrustUpdate,
        acks: &[Vec<u8>],
    ) -> HashMap<AckOutcome, usize> {
        let registered = fleet
            .agents()
            .iter()
            .map(|a| (a.id.clone(), a.public_key.to_vec()))
            .collect();
        let check = AckCheck::new(update, registered);
        let mut seen = HashMap::new();
        for ack in acks {
            let outcome = match check.verify(ack) {
                Ok(agent) => check.count(agent),
                Err(outcome) => outcome,
            };
            *seen.entry(outcome).or_insert(0) += 1;
        }
        seen
    }

    fn apply(fleet: &mut Fleet, message: Broadcast) -> (Event, Vec<Vec<u8>>) {
        fleet.on_message(&message.to_json(), NOW + 1)
    }

    #[test]
    fn partition_rounds_and_stays_disjoint() {
        let p = Partition::new(10_000, 0.85, 0.1).expect("valid");
        assert_eq!((p.honest, p.forgers, p.silent), (8_500, 1_000, 500));
        let p = Partition::new(3, 0.5, 0.5).expect("valid");
        assert_eq!(
            (p.honest, p.forgers, p.silent),
            (2, 1, 0),
            "rounding never oversubscribes"
        );
        let p = Partition::new(10, 0.7, 0.3).expect("0.7 + 0.3 is 1 despite rounding error");
        assert_eq!((p.honest, p.forgers, p.silent), (7, 3, 0));
        assert!(Partition::new(10, 0.8, 0.3).is_err());
        assert!(Partition::new(10, 1.1, 0.0).is_err());
        assert!(Partition::new(10, 0.5, -0.1).is_err());
        assert!(Partition::new(10, f64::NAN, 0.0).is_err());
    }

    #[test]
    fn an_update_from_the_trusted_key_gets_honest_acks_that_count_and_forgeries_that_do_not() {
        let (old, new) = (key(), key());
        // 20 agents: 10 honest, 8 forgers (each of the four kinds twice), 2 silent.
        let mut fleet = fleet(20, 0.5, 0.4, &old);
        let update = update(2, &old, &new);
        let (event, acks) = apply(&mut fleet, Broadcast::Update(update.clone()));
        assert_eq!(
            event,
            Event::Update {
                rotation: update.rotation_id,
                version: 2,
                accepted: 20,
                acked: 10,
                forged: 8,
                rejected: 0,
                reason: None,
            }
        );
        assert_eq!(acks.len(), 18);
        let seen = outcomes(&fleet, &update, &acks);
        assert_eq!(seen.get(&AckOutcome::Counted), Some(&10));
        assert_eq!(seen.get(&AckOutcome::BadSignature), Some(&2));
        assert_eq!(seen.get(&AckOutcome::UnknownAgent), Some(&2));
        assert_eq!(seen.get(&AckOutcome::Stale), Some(&4));
        assert_eq!(seen.values().sum::<usize>(), 18);
        assert_eq!(fleet.trust().pending.as_ref(), Some(&update));
        assert_eq!(
            fleet.trust().version,
            1,
            "nothing switches before the commit"
        );
    }

    #[test]
    fn the_honest_acks_come_from_the_first_agents() {
        let (old, new) = (key(), key());
        let mut fleet = fleet(10, 0.3, 0.0, &old);
        let update = update(2, &old, &new);
        let (_, acks) = apply(&mut fleet, Broadcast::Update(update));
        let ackers: Vec<AgentId> = acks
            .iter()
            .map(|a| Ack::from_json(a).expect("ack").agent_id)
            .collect();
        let first: Vec<AgentId> = fleet.agents()[..3].iter().map(|a| a.id.clone()).collect();
        assert_eq!(ackers, first);
    }

    #[test]
    fn refused_updates_get_no_acks_at_all() {
        let (old, new, stranger) = (key(), key(), key());
        let expired = TrustUpdate::new(rotation(), 2, &old, &new, NOW - 120, NOW - 60);
        let cases = [
            (update(3, &old, &new), "version 3, expected 2"),
            (update(1, &old, &new), "version 1, expected 2"),
            (update(2, &stranger, &new), "signed by key"),
            (expired, "expired"),
        ];
        for (update, why) in cases {
            let mut fleet = fleet(8, 0.5, 0.5, &old);
            let (event, acks) = apply(&mut fleet, Broadcast::Update(update));
            assert!(acks.is_empty(), "{why}: {event}");
            let Event::Update {
                accepted: 0,
                acked: 0,
                forged: 0,
                rejected: 8,
                reason: Some(reason),
                ..
            } = &event
            else {
                panic!("{why}: unexpected {event:?}")
            };
            assert!(reason.contains(why), "{reason:?} does not say {why:?}");
            assert_eq!(fleet.trust().pending, None);
        }
    }

    #[test]
    fn an_update_whose_new_key_signature_is_forged_is_refused() {
        let (old, new) = (key(), key());
        let mut fleet = fleet(4, 1.0, 0.0, &old);
        let mut update = update(2, &old, &new);
        update.new_signature[0] ^= 1;
        let (event, acks) = apply(&mut fleet, Broadcast::Update(update));
        assert!(acks.is_empty());
        assert!(
            event
                .to_string()
                .ends_with("rejected=4 reason=new key signature does not verify"),
            "{event}"
        );
    }

    #[test]
    fn commit_switches_every_agent_to_the_new_key_and_version() {
        let (old, new) = (key(), key());
        let mut fleet = fleet(6, 1.0, 0.0, &old);
        let update = update(2, &old, &new);
        apply(&mut fleet, Broadcast::Update(update.clone()));

        let mut forged = TrustCommit::new(&update, &old, NOW + 1);
        forged.key_id = update.new_key_id;
        let (event, acks) = apply(&mut fleet, Broadcast::Commit(forged));
        assert!(acks.is_empty());
        assert!(
            matches!(
                event,
                Event::Commit {
                    switched: 0,
                    rejected: 6,
                    ..
                }
            ),
            "{event}"
        );
        assert_eq!(
            fleet.trust().version,
            1,
            "a commit signed by the old key switches nothing"
        );

        let (event, _) = apply(
            &mut fleet,
            Broadcast::Commit(TrustCommit::new(&update, &new, NOW + 1)),
        );
        assert_eq!(
            event.to_string(),
            format!(
                "commit rotation={} version=2 switched=6 rejected=0 reason=-",
                update.rotation_id
            )
        );
        assert_eq!(fleet.trust().version, 2);
        assert_eq!(fleet.trust().public_key, Signer::public_key(&new));
        assert_eq!(fleet.trust().pending, None);
    }

    #[test]
    fn abort_drops_the_pending_key_and_a_later_commit_is_refused() {
        let (old, new) = (key(), key());
        let mut fleet = fleet(5, 0.6, 0.0, &old);
        let update = update(2, &old, &new);
        apply(&mut fleet, Broadcast::Update(update.clone()));

        let (event, _) = apply(
            &mut fleet,
            Broadcast::Abort(TrustAbort::new(&update, &new, NOW + 1)),
        );
        assert!(
            matches!(
                event,
                Event::Abort {
                    dropped: 0,
                    rejected: 5,
                    ..
                }
            ),
            "the new key cannot abort: {event}"
        );
        assert!(fleet.trust().pending.is_some());

        let (event, _) = apply(
            &mut fleet,
            Broadcast::Abort(TrustAbort::new(&update, &old, NOW + 1)),
        );
        assert_eq!(
            event.to_string(),
            format!(
                "abort rotation={} version=2 dropped=5 rejected=0 reason=-",
                update.rotation_id
            )
        );
        assert_eq!(fleet.trust().pending, None);

        let (event, _) = apply(
            &mut fleet,
            Broadcast::Commit(TrustCommit::new(&update, &new, NOW + 2)),
        );
        assert!(
            matches!(
                event,
                Event::Commit {
                    switched: 0,
                    rejected: 5,
                    ..
                }
            ),
            "{event}"
        );
        assert_eq!(
            (fleet.trust().version, fleet.trust().public_key),
            (1, Signer::public_key(&old))
        );
    }

    #[test]
    fn after_a_commit_the_next_update_must_come_from_the_new_key() {
        let (old, new, newer) = (key(), key(), key());
        let mut fleet = fleet(4, 0.5, 0.25, &old);
        let first = update(2, &old, &new);
        apply(&mut fleet, Broadcast::Update(first.clone()));
        apply(
            &mut fleet,
            Broadcast::Commit(TrustCommit::new(&first, &new, NOW + 1)),
        );

        let (event, acks) = apply(&mut fleet, Broadcast::Update(update(3, &old, &newer)));
        assert!(
            acks.is_empty(),
            "the retired key no longer signs updates: {event}"
        );

        let second = update(3, &new, &newer);
        let (event, acks) = apply(&mut fleet, Broadcast::Update(second.clone()));
        assert!(
            matches!(
                event,
                Event::Update {
                    accepted: 4,
                    acked: 2,
                    forged: 1,
                    ..
                }
            ),
            "{event}"
        );
        let seen = outcomes(&fleet, &second, &acks);
        assert_eq!(seen.get(&AckOutcome::Counted), Some(&2));
        assert_eq!(seen.get(&AckOutcome::BadSignature), Some(&1));
    }

    #[test]
    fn a_republished_update_is_acked_again() {
        let (old, new) = (key(), key());
        let mut fleet = fleet(5, 0.8, 0.0, &old);
        let update = update(2, &old, &new);
        let (_, first) = apply(&mut fleet, Broadcast::Update(update.clone()));
        let (event, again) = apply(&mut fleet, Broadcast::Update(update.clone()));
        assert!(matches!(event, Event::Update { acked: 4, .. }), "{event}");
        let both: Vec<Vec<u8>> = first.into_iter().chain(again).collect();
        let seen = outcomes(&fleet, &update, &both);
        assert_eq!(seen.get(&AckOutcome::Counted), Some(&4));
        assert_eq!(seen.get(&AckOutcome::Duplicate), Some(&4));
    }

    #[test]
    fn a_commit_after_the_deadline_finds_the_update_expired() {
        let (old, new) = (key(), key());
        let mut fleet = fleet(3, 1.0, 0.0, &old);
        let update = update(2, &old, &new);
        apply(&mut fleet, Broadcast::Update(update.clone()));
        let late = Broadcast::Commit(TrustCommit::new(&update, &new, NOW + 61));
        let (event, _) = fleet.on_message(&late.to_json(), NOW + 61);
        assert_eq!(
            event.to_string(),
            format!(
                "commit rotation={} version=2 switched=0 rejected=3 reason=update expired at {} (now {})",
                update.rotation_id,
                NOW + 60,
                NOW + 61
            )
        );
        assert_eq!(fleet.trust().version, 1);
    }

    #[test]
    fn malformed_messages_change_nothing() {
        let root = key();
        let mut fleet = fleet(3, 1.0, 0.0, &root);
        for junk in [
            &b"not json"[..],
            b"{\"type\":\"trust_update\"}",
            b"{\"type\":\"hello\"}\n",
        ] {
            let (event, acks) = fleet.on_message(junk, NOW);
            assert!(acks.is_empty());
            let line = event.to_string();
            assert!(
                line.starts_with("malformed reason=") && !line.contains('\n'),
                "{line}"
            );
        }
        assert_eq!(
            fleet.trust(),
            &AgentTrust::new(1, Signer::public_key(&root))
        );
    }

    #[test]
    fn catching_up_applies_commits_skips_junk_and_acks_the_undecided_update() {
        let (k1, k2, k3) = (key(), key(), key());
        let mut fleet = fleet(4, 0.5, 0.25, &k1);
        let first = update(2, &k1, &k2);
        let second = update(3, &k2, &k3);
        let stream = vec![
            b"junk".to_vec(),
            Broadcast::Update(first.clone()).to_json(),
            Broadcast::Commit(TrustCommit::new(&first, &k2, NOW)).to_json(),
            Broadcast::Update(update(3, &k3, &k1)).to_json(),
            Broadcast::Update(second.clone()).to_json(),
        ];
        let (event, acks) = fleet.catch_up(&stream, NOW + 1);
        assert_eq!(
            event.to_string(),
            format!(
                "catch-up applied=1 version=2 pending={} acks=3 read=5",
                second.rotation_id
            )
        );
        let seen = outcomes(&fleet, &second, &acks);
        assert_eq!(seen.get(&AckOutcome::Counted), Some(&2));
        assert_eq!(fleet.trust().pending.as_ref(), Some(&second));
    }

    #[test]
    fn an_update_beyond_the_next_version_is_a_gap_to_catch_up_from() {
        let (k1, k2, k3) = (key(), key(), key());
        let mut fleet = fleet(2, 1.0, 0.0, &k1);
        let first = update(2, &k1, &k2);
        let second = update(3, &k2, &k3);
        let live = Broadcast::Update(second.clone()).to_json();
        assert!(fleet.is_gap(&live));
        assert!(!fleet.is_gap(&Broadcast::Update(first.clone()).to_json()));
        assert!(!fleet.is_gap(b"junk"));
        // The stream has the missed commit; the live update is appended by the caller.
        let stream = vec![
            Broadcast::Update(first.clone()).to_json(),
            Broadcast::Commit(TrustCommit::new(&first, &k2, NOW)).to_json(),
            live,
        ];
        let (event, acks) = fleet.catch_up(&stream, NOW + 1);
        assert!(
            event
                .to_string()
                .starts_with("catch-up applied=1 version=2 pending="),
            "{event}"
        );
        assert_eq!(acks.len(), 2);
        assert_eq!(fleet.trust().pending.as_ref(), Some(&second));
    }

    #[test]
    fn the_update_line_has_every_field() {
        let (old, new) = (key(), key());
        let mut fleet = fleet(4, 0.5, 0.25, &old);
        let update = update(2, &old, &new);
        let (event, _) = apply(&mut fleet, Broadcast::Update(update.clone()));
        assert_eq!(
            event.to_string(),
            format!(
                "update rotation={} version=2 accepted=4 acked=2 forged=1 rejected=0 reason=-",
                update.rotation_id
            )
        );
    }
}
