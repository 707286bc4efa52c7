//! The rotation's side of the NATS bus: the JetStream stream that keeps trust messages for
//! agents that were offline, publishing with the stream's acknowledgement, and collecting agents'
//! acks with their signatures verified on every core.
//!
//! The stream is managed with plain JetStream API requests (`$JS.API.STREAM.*`) rather than
//! async-nats' typed JetStream client, whose replies do not all parse against nats-server 2.9;
//! publishing is a request on the subject, answered by JetStream with `{"stream":…,"seq":…}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use ransomeye_trust::{ack_subject, AckCheck, AckOutcome, Broadcast, RotationId};
use serde_json::{json, Value};

use crate::error::{Exit, OpsError};

/// How long a bus request (stream management, publish) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long publishing a TrustCommit or TrustAbort may take once collection has ended: a run
/// ends at most this long after `--timeout` (README, docs/TRUST_UPDATE.md).
pub const OUTCOME_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the bus for one rotation.
pub struct TrustBus {
    client: async_nats::Client,
    url: String,
}

fn unavailable(url: &str, what: impl std::fmt::Display) -> OpsError {
    OpsError::new(
        Exit::Unavailable,
        format!("bus {}: {what}", crate::utils::redact_url(url)),
    )
    .hint("check that nats-server (with JetStream) is running and [bus] url (or $RANSOMEYE_NATS_URL) is right; `ransomeye-ops health` tells more")
}

impl TrustBus {
    /// Connects, failing with 69 when the bus is unreachable.
    pub async fn connect(url: &str) -> Result<TrustBus, OpsError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(url)
            .await
            .map_err(|e| unavailable(url, format!("cannot connect: {e}")))?;
        client
            .flush()
            .await
            .map_err(|e| unavailable(url, format!("no round trip: {e}")))?;
        Ok(TrustBus {
            client,
            url: url.to_string(),
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
        stream_config_problem(&info).map_or(Ok(None), Err)
    }

    /// Makes sure the stream that keeps trust messages exists and captures the updates subject.
    pub async fn ensure_stream(&self) -> Result<(), OpsError> {
        let name = ransomeye_trust::STREAM_NAME;
        let info = self
            .api(format!("$JS.API.STREAM.INFO.{name}"), json!({}))
            .await?;
        if info.get("error").is_none() {
            return stream_config_problem(&info).map_or(Ok(()), Err);
        }
        let created = self
            .api(
                format!("$JS.API.STREAM.CREATE.{name}"),
                json!({
                    "name": name,
                    "subjects": [ransomeye_trust::UPDATES_SUBJECT],
                    "retention": "limits",
                    "storage": "file",
                    "discard": "old",
                    "max_msgs": -1,
                    "max_bytes": -1,
                    "max_age": 0,
                    "num_replicas": 1,
                }),
            )
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
    /// its sequence number in the stream.
    pub async fn publish(&self, message: &Broadcast) -> Result<u64, OpsError> {
        let ack = self
            .client
            .request(
                ransomeye_trust::UPDATES_SUBJECT,
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

/// Collects acks from `sub` until `needed` agents have acked or `deadline` passes. Signatures are
/// verified on one thread per core; counting (one per agent) happens here.
pub async fn collect(
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
