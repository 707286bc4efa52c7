//! A connection to the NATS bus with every wait bounded, and JetStream's API spoken as plain
//! requests (`$JS.API.*`), for the commands that keep messages in a stream.
//!
//! The same choices as `rotate-keys`' bus (connection and request timeouts of
//! [`REQUEST_TIMEOUT`], plain API requests rather than async-nats' typed JetStream client, whose
//! replies do not all parse against nats-server 2.9), in a module of its own so that every
//! command can use them.

use std::time::Duration;

use ransomeye_kernel::config;
use serde_json::Value;

use crate::error::OpsError;

/// How long connecting or one bus request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the bus.
#[derive(Clone)]
pub struct Bus {
    /// The client (cheap to clone).
    pub client: async_nats::Client,
    url: String,
}

pub use crate::bus::unavailable;

impl Bus {
    /// Connects as `[bus]` says (TLS included) and makes one round trip, failing with 69 when
    /// the bus is unreachable.
    pub async fn connect(bus: &config::Bus) -> Result<Bus, OpsError> {
        let client = crate::bus::connect(bus, REQUEST_TIMEOUT).await?;
        Ok(Bus {
            client,
            url: bus.url.clone(),
        })
    }

    /// A bus over a client connected elsewhere (`health` connects with its own options).
    pub fn from_client(client: async_nats::Client, url: &str) -> Bus {
        Bus {
            client,
            url: url.to_string(),
        }
    }

    /// The bus is unavailable (69), saying `what`.
    pub fn unavailable(&self, what: impl std::fmt::Display) -> OpsError {
        unavailable(&self.url, what)
    }

    /// Waits until the server has processed everything sent so far (a round trip), at most
    /// [`REQUEST_TIMEOUT`].
    pub async fn flush(&self) -> Result<(), OpsError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.unavailable(format!("no round trip: {e}"))),
            Err(_) => Err(self.unavailable(format!(
                "no round trip within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A JetStream API request and its JSON reply (an `error` member when JetStream refused).
    pub async fn api(&self, subject: String, body: Value) -> Result<Value, OpsError> {
        let reply = self
            .client
            .request(subject.clone(), body.to_string().into())
            .await
            .map_err(|e| self.unavailable(format!("{subject}: {e}")))?;
        serde_json::from_slice(&reply.payload)
            .map_err(|e| self.unavailable(format!("{subject}: reply is not JSON: {e}")))
    }
}

/// A stream's limits: bounded in bytes, age and message size, with a duplicate window, and
/// refusing new messages when full rather than dropping old ones (`discard: new`): a message
/// still needed (an unforwarded alert, a pending trust update) is never discarded for room.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_bytes`.
    pub max_bytes: i64,
    /// `max_age`.
    pub max_age: Duration,
    /// `max_msg_size`.
    pub max_msg_size: i64,
    /// `duplicate_window`: a message id seen within it is stored once.
    pub duplicate_window: Duration,
}

impl Limits {
    /// The limits as JetStream's stream configuration spells them (durations in nanoseconds).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "retention": "limits",
            "discard": "new",
            "max_msgs": -1,
            "max_bytes": self.max_bytes,
            "max_age": self.max_age.as_nanos() as u64,
            "max_msg_size": self.max_msg_size,
            "duplicate_window": self.duplicate_window.as_nanos() as u64,
        })
    }
}
