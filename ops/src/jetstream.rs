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
