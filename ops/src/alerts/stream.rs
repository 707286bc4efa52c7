//! The alerts' JetStream stream and the forwarder's durable consumer (docs/ALERTS.md, "The
//! stream").
//!
//! Alerts are published on `alerts.<severity>` and kept in stream [`STREAM`] until the
//! forwarder's consumer [`CONSUMER`] acks them, which it does only once the collector accepted
//! them. The stream refuses new alerts when full (`discard: new`) rather than dropping old ones
//! that were never forwarded; a publication carries the alert id as `Nats-Msg-Id`, so sending
//! the same alert twice within [`DUPLICATE_WINDOW`] stores it once.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::error::{Exit, OpsError};
use crate::jetstream::Bus;

/// The stream that keeps alerts.
pub const STREAM: &str = "RANSOMEYE_ALERTS";
/// The subjects it captures: `alerts.<severity>`.
pub const SUBJECTS: &str = "alerts.>";
/// The forwarder's durable consumer.
pub const CONSUMER: &str = "ransomeye-forward";

/// How long the stream keeps an alert the forwarder never acked.
const MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// The largest stream; then new alerts are refused (`discard: new`).
const MAX_BYTES: i64 = 1 << 30;
/// The largest alert.
pub const MAX_MSG_SIZE: i64 = 64 << 10;
/// How long JetStream remembers an alert id, so that a re-sent alert is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a delivered alert waits for its ack before JetStream offers it again. The forwarder
/// extends it (`+WPI`) while it retries a collector that is down.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// The stream's configuration, as JetStream spells it (nanoseconds).
fn stream_config() -> Value {
    let mut config = crate::jetstream::Limits {
        max_bytes: MAX_BYTES,
        max_age: MAX_AGE,
        max_msg_size: MAX_MSG_SIZE,
        duplicate_window: DUPLICATE_WINDOW,
    }
    .to_json();
    config["name"] = json!(STREAM);
    config["subjects"] = json!([SUBJECTS]);
    config["storage"] = json!("file");
    config["num_replicas"] = json!(1);
    config
}

/// Makes sure the stream exists (created with [`stream_config`]'s limits when missing; an
/// existing stream is used as it is, once it captures `alerts.>`).
pub async fn ensure_stream(bus: &Bus) -> Result<(), OpsError> {
    let info = bus
        .api(format!("$JS.API.STREAM.INFO.{STREAM}"), json!({}))
        .await?;
    if info.get("error").is_none() {
        let captures = info["config"]["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v == SUBJECTS));
        if !captures {
            return Err(OpsError::new(
                Exit::Config,
                format!("JetStream stream {STREAM} exists but does not capture {SUBJECTS}"),
            )
            .hint("add the subject to the stream, or delete the stream so the tool creates it"));
        }
        return Ok(());
    }
    let created = bus
        .api(format!("$JS.API.STREAM.CREATE.{STREAM}"), stream_config())
        .await?;
    match created.get("error") {
        None => Ok(()),
        Some(e) => Err(bus.unavailable(format!("cannot create JetStream stream {STREAM}: {e}"))),
    }
}

/// Where a publication was stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    /// Sequence number in the stream.
    pub seq: u64,
    /// JetStream had it already (same id within the duplicate window): stored once.
    pub duplicate: bool,
}

/// Publishes `payload` (an alert document) on `subject` with its id as `Nats-Msg-Id` and waits
/// for JetStream to store it.
pub async fn publish(
    bus: &Bus,
    subject: &str,
    id: &str,
    payload: Vec<u8>,
) -> Result<Stored, OpsError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    let ack = bus
        .client
        .request_with_headers(subject.to_string(), headers, Bytes::from(payload))
        .await
        .map_err(|e| bus.unavailable(format!("publishing the alert: {e}")))?;
    let ack: Value = serde_json::from_slice(&ack.payload).unwrap_or(Value::Null);
    match ack.get("seq").and_then(Value::as_u64) {
        Some(seq) => Ok(Stored {
            seq,
            duplicate: ack["duplicate"].as_bool().unwrap_or(false),
        }),
        None => Err(bus
            .unavailable(format!("JetStream did not store the alert: {ack}"))
            .hint("the stream may be full (it refuses new alerts rather than dropping old ones): check that `alerts forward` runs")),
    }
}

/// Makes sure the forwarder's durable consumer exists (explicit acks, every alert from the
/// first, no limit on redeliveries).
pub async fn ensure_consumer(bus: &Bus) -> Result<(), OpsError> {
    let info = bus
        .api(
            format!("$JS.API.CONSUMER.INFO.{STREAM}.{CONSUMER}"),
            json!({}),
        )
        .await?;
    if info.get("error").is_none() {
        return Ok(());
    }
    let body = json!({
        "stream_name": STREAM,
        "config": {
            "durable_name": CONSUMER,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": ACK_WAIT.as_nanos() as u64,
            "max_deliver": -1,
            "filter_subject": SUBJECTS,
            "max_ack_pending": 20_000,
            "replay_policy": "instant",
        }
    });
    let created = bus
        .api(
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.{CONSUMER}"),
            body,
        )
        .await?;
    match created.get("error") {
        None => Ok(()),
        Some(e) => Err(bus.unavailable(format!(
            "cannot create the JetStream consumer {CONSUMER} on {STREAM}: {e}"
        ))),
    }
}

/// One alert as delivered by the consumer.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The subject it was published on.
    pub subject: String,
    /// Its bytes as published.
    pub payload: Bytes,
    /// Where to ack it.
    pub reply: String,
    /// Its sequence in the stream.
    pub stream_seq: u64,
    /// When JetStream stored it (by the bus's clock, in ns since the epoch).
    pub stored_ns: i64,
    /// How many times it was delivered (1: first time).
    pub delivered: u64,
}

/// The parts of an ack subject: `$JS.ACK.[domain.hash.]<stream>.<consumer>.<delivered>.<sseq>.
/// <cseq>.<ts>.<pending>[.token]`, read from the fixed fields after the consumer.
fn parse_ack_subject(reply: &str) -> Option<(u64, u64, i64)> {
    let parts: Vec<&str> = reply.split('.').collect();
    if parts.len() < 9 || parts[0] != "$JS" || parts[1] != "ACK" {
        return None;
    }
    // The v1 form has 9 tokens; the v2 form adds domain and account hash after ACK (and may
    // end with a random token).
    let base = if parts.len() == 9 { 2 } else { 4 };
    let num = |i: usize| parts.get(base + i).and_then(|t| t.parse::<u64>().ok());
    let delivered = num(2)?;
    let sseq = num(3)?;
    let ts = parts.get(base + 5).and_then(|t| t.parse::<i64>().ok())?;
    Some((delivered, sseq, ts))
}

/// The forwarder's side of the consumer: fetches batches, acks what was delivered.
pub struct Consumer {
    bus: Bus,
    inbox: String,
    sub: async_nats::Subscriber,
}

impl Consumer {
    /// Subscribes to a reply inbox of its own.
    pub async fn open(bus: &Bus) -> Result<Consumer, OpsError> {
        let inbox = bus.client.new_inbox();
        let sub = bus
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| bus.unavailable(format!("subscribing to {inbox}: {e}")))?;
        bus.flush().await?;
        Ok(Consumer {
            bus: bus.clone(),
            inbox,
            sub,
        })
    }

    /// Up to `max` alerts, in stream order. With `wait`, waits up to that long for the first;
    /// without, returns what is pending now (possibly nothing).
    pub async fn fetch(
        &mut self,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Delivered>, OpsError> {
        let body = match wait {
            Some(w) => json!({ "batch": max, "expires": w.as_nanos() as u64 }),
            None => json!({ "batch": max, "no_wait": true }),
        };
        self.bus
            .client
            .publish_with_reply(
                format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{CONSUMER}"),
                self.inbox.clone(),
                body.to_string().into(),
            )
            .await
            .map_err(|e| self.bus.unavailable(format!("asking for alerts: {e}")))?;
        let deadline = tokio::time::Instant::now()
            + wait.unwrap_or(Duration::ZERO)
            + crate::jetstream::REQUEST_TIMEOUT;
        let mut out = Vec::new();
        while out.len() < max {
            let next = tokio::time::timeout_at(deadline, self.sub.next()).await;
            let message = match next {
                Ok(Some(m)) => m,
                Ok(None) => return Err(self.bus.unavailable("the bus connection closed")),
                // The bus did not answer in time: what came is all there is.
                Err(_) => break,
            };
            if message.status.is_some() {
                // 404 no messages, 408 request expired, 409 …: the end of this batch.
                break;
            }
            let Some(reply) = message.reply.as_ref().map(|r| r.to_string()) else {
                continue;
            };
            let Some((delivered, stream_seq, stored_ns)) = parse_ack_subject(&reply) else {
                continue;
            };
            out.push(Delivered {
                subject: message.subject.to_string(),
                payload: message.payload,
                reply,
                stream_seq,
                stored_ns,
                delivered,
            });
        }
        Ok(out)
    }

    /// Acks `message`: the collector has it, JetStream may forget it. Sent without waiting;
    /// [`Consumer::settle`] waits until the bus has them all.
    pub async fn ack(&self, message: &Delivered) -> Result<(), OpsError> {
        self.bus
            .client
            .publish(message.reply.clone(), Bytes::from_static(b"+ACK"))
            .await
            .map_err(|e| self.bus.unavailable(format!("acking an alert: {e}")))
    }

    /// Tells JetStream that `message` is still being worked on (resets its ack wait).
    pub async fn in_progress(&self, message: &Delivered) -> Result<(), OpsError> {
        self.bus
            .client
            .publish(message.reply.clone(), Bytes::from_static(b"+WPI"))
            .await
            .map_err(|e| {
                self.bus
                    .unavailable(format!("extending an alert's ack wait: {e}"))
            })
    }

    /// Hands `message` back to the bus: it is offered again at once (to this or another run).
    pub async fn nak(&self, message: &Delivered) -> Result<(), OpsError> {
        self.bus
            .client
            .publish(message.reply.clone(), Bytes::from_static(b"-NAK"))
            .await
            .map_err(|e| self.bus.unavailable(format!("handing an alert back: {e}")))
    }

    /// Waits until the bus has processed every ack sent so far.
    pub async fn settle(&self) -> Result<(), OpsError> {
        self.bus.flush().await
    }
}

/// The consumer's backlog: alerts not yet acked, and since when the oldest waits.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Backlog {
    /// Alerts in the stream not yet delivered plus those delivered and not acked.
    pub pending: u64,
    /// When the oldest of them was stored (by the bus's clock, RFC 3339), if any.
    #[serde(skip)]
    pub oldest_stored: Option<std::time::SystemTime>,
}

/// The consumer's backlog (`None` when the stream or consumer does not exist yet).
pub async fn backlog(bus: &Bus) -> Result<Option<Backlog>, OpsError> {
    let info = bus
        .api(
            format!("$JS.API.CONSUMER.INFO.{STREAM}.{CONSUMER}"),
            json!({}),
        )
        .await?;
    if info.get("error").is_some() {
        return Ok(None);
    }
    let pending =
        info["num_pending"].as_u64().unwrap_or(0) + info["num_ack_pending"].as_u64().unwrap_or(0);
    let mut oldest_stored = None;
    if pending > 0 {
        let seq = info["ack_floor"]["stream_seq"].as_u64().unwrap_or(0) + 1;
        let msg = bus
            .api(
                format!("$JS.API.STREAM.MSG.GET.{STREAM}"),
                json!({ "seq": seq }),
            )
            .await?;
        oldest_stored = msg["message"]["time"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    }
    Ok(Some(Backlog {
        pending,
        oldest_stored,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_give_delivery_count_sequence_and_time() {
        assert_eq!(
            parse_ack_subject(
                "$JS.ACK.RANSOMEYE_ALERTS.ransomeye-forward.2.17.5.1764625453000000000.3"
            ),
            Some((2, 17, 1_764_625_453_000_000_000))
        );
        assert_eq!(
            parse_ack_subject("$JS.ACK.dom.HASH.RANSOMEYE_ALERTS.ransomeye-forward.1.9.9.1764625453000000000.0.tok"),
            Some((1, 9, 1_764_625_453_000_000_000))
        );
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
    }
}
