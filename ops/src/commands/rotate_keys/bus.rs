//! The rotation's side of the NATS bus: the JetStream stream that keeps trust messages for
//! agents that were offline, publishing with the stream's acknowledgement, and collecting agents'
//! acks with their signatures verified on every core.
//!
//! The stream is managed with plain JetStream API requests (`$JS.API.STREAM.*`) rather than
//! async-nats' typed JetStream client, whose replies do not all parse against nats-server 2.9;
//! publishing is a request on the subject, answered by JetStream with `{"stream":…,"seq":…}`.
//!
//! The stream's retention is bounded without ever dropping what an agent still needs
//! (docs/TRUST_UPDATE.md, "The stream"): messages live [`MAX_AGE`] (far beyond any deadline,
//! which is at most a day and a half), and when the stream is full it refuses new messages
//! (`discard: new`) rather than evicting old ones. While acks are collected the update is
//! re-published every [`REPUBLISH_EVERY`] for agents that (re)connected after the first
//! publication; its `Nats-Msg-Id` header makes JetStream store it once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use ransomeye_kernel::config;
use ransomeye_trust::{ack_subject, AckCheck, AckOutcome, Broadcast, RotationId, TrustUpdate};
use serde_json::{json, Value};

use crate::error::{Exit, OpsError};

/// How long a bus request (stream management, publish) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the stream keeps a message: a year, far beyond any update's deadline (at most
/// `--timeout` 86 400 s + 30 s); an agent offline longer is re-enrolled with the current root.
const MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest message the stream stores: trust messages are under 1 KiB.
const MAX_MSG_SIZE: i64 = 4096;
/// Largest stream: with `discard: new`, a full stream refuses new messages instead of dropping
/// the chain agents catch up with.
const MAX_BYTES: i64 = 64 << 20;
/// How long JetStream remembers a message id, so that re-publications are stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// How often the pending update is re-published while acks are collected.
pub const REPUBLISH_EVERY: Duration = Duration::from_secs(5);

/// The stream's limits, as JetStream's stream configuration spells them (nanoseconds).
fn stream_limits() -> Value {
    crate::jetstream::Limits {
        max_bytes: MAX_BYTES,
        max_age: MAX_AGE,
        max_msg_size: MAX_MSG_SIZE,
        duplicate_window: DUPLICATE_WINDOW,
    }
    .to_json()
}

/// Whether an existing stream's configuration lacks the limits of [`stream_limits`].
fn lacks_limits(config: &Value) -> bool {
    stream_limits()
        .as_object()
        .is_some_and(|limits| limits.iter().any(|(k, v)| config.get(k) != Some(v)))
}

/// Why an existing stream's contents exceed the limits (from its `STREAM.INFO` state), if they do.
fn over_limits(state: &Value) -> Option<String> {
    let bytes = state["bytes"].as_u64().unwrap_or(0);
    if bytes > MAX_BYTES as u64 {
        return Some(format!("holds {bytes} bytes, more than {MAX_BYTES}"));
    }
    let first = state["first_ts"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())?;
    let age = std::time::SystemTime::now()
        .duration_since(first)
        .unwrap_or_default();
    (state["messages"].as_u64().unwrap_or(0) > 0 && age > MAX_AGE).then(|| {
        format!(
            "holds messages older than {} days",
            MAX_AGE.as_secs() / 86_400
        )
    })
}

/// The message id every publication of `update` carries, so JetStream stores it once.
fn update_msg_id(update: &TrustUpdate) -> String {
    format!("trust-update-{}", update.rotation_id)
}

/// How long publishing a TrustCommit or TrustAbort may take once collection has ended: a run
/// ends at most this long after `--timeout` (README, docs/TRUST_UPDATE.md).
pub const OUTCOME_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the bus for one rotation.
pub struct TrustBus {
    client: async_nats::Client,
    url: String,
}

use crate::bus::unavailable;

impl TrustBus {
    /// Connects as `[bus]` says (TLS included), failing with 69 when the bus is unreachable.
    pub async fn connect(bus: &config::Bus) -> Result<TrustBus, OpsError> {
        let client = crate::bus::connect(bus, REQUEST_TIMEOUT).await?;
        Ok(TrustBus {
            client,
            url: bus.url.clone(),
        })
    }

    async fn api(&self, subject: String, body: Value) -> Result<Value, OpsError> {
        let reply = self
            .client
            .request(subject.clone(), body.to_string().into())
            .await
            .map_err(|e| unavailable(&self.url, format!("{subject}: {e}")))?;
        serde_json::from_slice(&reply.payload)
            .map_err(|e| unavailable(&self.url, format!("{subject}: reply is not JSON: {e}")))
    }

    /// For a dry run: what [`TrustBus::ensure_stream`] would change (`None`: nothing), without
    /// changing it.
    pub async fn check_stream(&self) -> Result<Option<String>, OpsError> {
        let name = ransomeye_trust::STREAM_NAME;
        let info = self
            .api(format!("$JS.API.STREAM.INFO.{name}"), json!({}))
            .await?;
        if info.get("error").is_some() {
            return Ok(Some(format!(
                "create the JetStream stream {name} on {}",
                ransomeye_trust::UPDATES_SUBJECT
            )));
        }
        if let Some(problem) = stream_config_problem(&info) {
            return Err(problem);
        }
        Ok(lacks_limits(&info["config"]).then(|| {
            format!(
                "set the retention limits of docs/TRUST_UPDATE.md on the JetStream stream {name}"
            )
        }))
    }

    /// Makes sure the stream that keeps trust messages exists and captures the updates subject.
    pub async fn ensure_stream(&self) -> Result<(), OpsError> {
        let name = ransomeye_trust::STREAM_NAME;
        let info = self
            .api(format!("$JS.API.STREAM.INFO.{name}"), json!({}))
            .await?;
        if info.get("error").is_none() {
            if let Some(problem) = stream_config_problem(&info) {
                return Err(problem);
            }
            if !lacks_limits(&info["config"]) {
                return Ok(());
            }
            if let Some(over) = over_limits(&info["state"]) {
                // Applying the limits now would make JetStream drop the oldest messages, which
                // may be the chain agents catch up with: leave the stream as it is.
                tracing::warn!(
                    "JetStream stream {name} {over}: not applying the retention limits of docs/TRUST_UPDATE.md, which would drop messages"
                );
                return Ok(());
            }
            // A stream made before the limits existed: add them, keeping the rest of its
            // configuration.
            let mut config = info["config"].clone();
            if let (Some(config), Some(limits)) =
                (config.as_object_mut(), stream_limits().as_object())
            {
                for (k, v) in limits {
                    config.insert(k.clone(), v.clone());
                }
            }
            let updated = self
                .api(format!("$JS.API.STREAM.UPDATE.{name}"), config)
                .await?;
            return match updated.get("error") {
                None => Ok(()),
                Some(e) => Err(unavailable(
                    &self.url,
                    format!("cannot set the retention limits of JetStream stream {name}: {e}"),
                )),
            };
        }
        let mut config = json!({
            "name": name,
            "subjects": [ransomeye_trust::UPDATES_SUBJECT],
            "storage": "file",
            "num_replicas": 1,
        });
        if let (Some(config), Some(limits)) = (config.as_object_mut(), stream_limits().as_object())
        {
            for (k, v) in limits {
                config.insert(k.clone(), v.clone());
            }
        }
        let created = self
            .api(format!("$JS.API.STREAM.CREATE.{name}"), config)
            .await?;
        match created.get("error") {
            None => Ok(()),
            Some(e) => Err(unavailable(
                &self.url,
                format!("cannot create JetStream stream {name}: {e}"),
            )),
        }
    }

    /// Publishes `message` on the updates subject and waits for JetStream to store it; returns
    /// its sequence number in the stream. An update carries its message id, so publishing it
    /// again (a resume, a re-publication) stores it once.
    pub async fn publish(&self, message: &Broadcast) -> Result<u64, OpsError> {
        let mut headers = async_nats::HeaderMap::new();
        if let Broadcast::Update(update) = message {
            headers.insert("Nats-Msg-Id", update_msg_id(update).as_str());
        }
        let ack = self
            .client
            .request_with_headers(
                ransomeye_trust::UPDATES_SUBJECT,
                headers,
                Bytes::from(message.to_json()),
            )
            .await
            .map_err(|e| unavailable(&self.url, format!("publishing the trust message: {e}")))?;
        let ack: Value = serde_json::from_slice(&ack.payload).unwrap_or(Value::Null);
        match ack.get("seq").and_then(Value::as_u64) {
            Some(seq) => Ok(seq),
            None => Err(unavailable(
                &self.url,
                format!("JetStream did not store the trust message: {ack}"),
            )),
        }
    }

    /// Sends `update` again to the agents listening now (core NATS, no acknowledgement; its
    /// message id keeps JetStream from storing it twice). Best effort, on a task of its own so
    /// that a dead bus never delays collection: a failure only means agents that came back late
    /// miss this copy and get the next.
    fn republish(&self, update: &TrustUpdate) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", update_msg_id(update).as_str());
        let message = Bytes::from(Broadcast::Update(update.clone()).to_json());
        let client = self.client.clone();
        tokio::spawn(async move {
            let sent = tokio::time::timeout(
                Duration::from_secs(1),
                client.publish_with_headers(ransomeye_trust::UPDATES_SUBJECT, headers, message),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!("re-publishing the update failed; the next tick tries again");
            }
        });
    }

    /// [`TrustBus::publish`] bounded by [`OUTCOME_TIMEOUT`]: for the commit or abort, which
    /// must not stretch the run far beyond `--timeout` when the bus is gone.
    pub async fn publish_outcome(&self, message: &Broadcast) -> Result<u64, OpsError> {
        match tokio::time::timeout(OUTCOME_TIMEOUT, self.publish(message)).await {
            Ok(result) => result,
            Err(_) => Err(unavailable(
                &self.url,
                format!(
                    "publishing the trust message: no answer within {} s",
                    OUTCOME_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// Subscribes to the acks of `rotation` (before the update is published, so none is missed).
    pub async fn subscribe_acks(
        &self,
        rotation: &RotationId,
    ) -> Result<async_nats::Subscriber, OpsError> {
        let sub = self
            .client
            .subscribe(ack_subject(rotation))
            .await
            .map_err(|e| unavailable(&self.url, format!("subscribing to acks: {e}")))?;
        self.client
            .flush()
            .await
            .map_err(|e| unavailable(&self.url, format!("subscribing to acks: {e}")))?;
        Ok(sub)
    }
}

/// Why an existing stream cannot serve (from its `STREAM.INFO` reply), if it cannot.
fn stream_config_problem(info: &Value) -> Option<OpsError> {
    let name = ransomeye_trust::STREAM_NAME;
    let captures = info["config"]["subjects"]
        .as_array()
        .is_some_and(|s| s.iter().any(|v| v == ransomeye_trust::UPDATES_SUBJECT));
    (!captures).then(|| {
        OpsError::new(
            Exit::Config,
            format!(
                "JetStream stream {name} exists but does not capture {}",
                ransomeye_trust::UPDATES_SUBJECT
            ),
        )
        .hint("add the subject to the stream, or delete the stream so rotate-keys creates it")
    })
}

/// What collecting acks found.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Distinct agents whose ack counted.
    pub acked: usize,
    /// Acks that did not count, by reason.
    pub ignored: std::collections::BTreeMap<String, u64>,
    /// Time from the start of collection to quorum, if reached.
    pub time_to_quorum: Option<Duration>,
}

/// Collects acks from `sub` until `needed` agents have acked or `deadline` passes, re-publishing
/// `update` every [`REPUBLISH_EVERY`] for agents that were not listening before. Signatures are
/// verified on one thread per core; counting (one per agent) happens here.
pub async fn collect(
    bus: &TrustBus,
    update: &TrustUpdate,
    mut sub: async_nats::Subscriber,
    check: Arc<AckCheck>,
    needed: usize,
    deadline: Instant,
    progress: &indicatif::ProgressBar,
) -> Tally {
    let started = Instant::now();
    let (raw_tx, raw_rx) = mpsc::channel::<Bytes>();
    let raw_rx = Arc::new(Mutex::new(raw_rx));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    // Set once collection ends, so the workers do not verify acks nobody will count while the
    // commit needs the CPU.
    let stop = Arc::new(AtomicBool::new(false));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 0..workers {
        let raw_rx = Arc::clone(&raw_rx);
        let done_tx = done_tx.clone();
        let check = Arc::clone(&check);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || loop {
            let next = raw_rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
            let Ok(payload) = next else { break };
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if done_tx.send(check.verify(&payload)).is_err() {
                break;
            }
        });
    }
    drop(done_tx);

    let mut tally = Tally::default();
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    let mut republish =
        tokio::time::interval_at((Instant::now() + REPUBLISH_EVERY).into(), REPUBLISH_EVERY);
    while tally.acked < needed {
        tokio::select! {
            message = sub.next() => match message {
                Some(m) => { let _ = raw_tx.send(m.payload); }
                None => break,
            },
            Some(verdict) = done_rx.recv() => {
                let outcome = match verdict {
                    Ok(agent) => check.count(agent),
                    Err(outcome) => outcome,
                };
                if outcome == AckOutcome::Counted {
                    tally.acked += 1;
                    progress.set_position(tally.acked as u64);
                } else {
                    *tally.ignored.entry(outcome.name().to_string()).or_default() += 1;
                }
            }
            _ = republish.tick() => bus.republish(update),
            () = &mut sleep => break,
        }
    }
    if tally.acked >= needed {
        tally.time_to_quorum = Some(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    drop(raw_tx);
    let _ = sub.unsubscribe().await;
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_not_applied_where_they_would_drop_messages() {
        let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let small = json!({ "messages": 3, "bytes": 900, "first_ts": now });
        assert_eq!(over_limits(&small), None);
        let big = json!({ "messages": 3, "bytes": 70_000_000u64, "first_ts": now });
        assert!(over_limits(&big).is_some_and(|m| m.contains("70000000 bytes")));
        let old = json!({ "messages": 3, "bytes": 900, "first_ts": "2020-01-01T00:00:00.5Z" });
        assert!(over_limits(&old).is_some_and(|m| m.contains("older than 365 days")));
        let empty = json!({ "messages": 0, "bytes": 0, "first_ts": "0001-01-01T00:00:00Z" });
        assert_eq!(over_limits(&empty), None);
    }

    #[test]
    fn a_stream_without_the_limits_is_noticed() {
        let mut config = stream_limits();
        assert!(!lacks_limits(&config));
        config["discard"] = json!("old");
        assert!(lacks_limits(&config));
        assert!(lacks_limits(&json!({ "max_age": 0 })));
    }
}
