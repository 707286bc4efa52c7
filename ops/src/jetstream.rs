//! A connection to the NATS bus with every wait bounded, and JetStream's API spoken as plain
//! requests (`$JS.API.*`), for the commands that keep messages in a stream.
//!
//! The same choices as `rotate-keys`' bus (connection and request timeouts of
//! [`REQUEST_TIMEOUT`], plain API requests rather than async-nats' typed JetStream client, whose
//! replies do not all parse against nats-server 2.9), in a module of its own so that every
//! command can use them.

use std::time::Duration;

use serde_json::Value;

use crate::error::{Exit, OpsError};

/// How long connecting or one bus request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the bus.
#[derive(Clone)]
pub struct Bus {
    /// The client (cheap to clone).
    pub client: async_nats::Client,
    url: String,
}

/// The bus at `url` is unavailable (69), saying `what`; the URL is shown without its password.
pub fn unavailable(url: &str, what: impl std::fmt::Display) -> OpsError {
    OpsError::new(
        Exit::Unavailable,
        format!("bus {}: {what}", crate::utils::redact_url(url)),
    )
    .hint("check that nats-server (with JetStream) is running and [bus] url (or $RANSOMEYE_NATS_URL) is right; `ransomeye-ops health` tells more")
}

impl Bus {
    /// Connects and makes one round trip, failing with 69 when the bus is unreachable.
    pub async fn connect(url: &str) -> Result<Bus, OpsError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(url)
            .await
            .map_err(|e| unavailable(url, format!("cannot connect: {e}")))?;
        let bus = Bus {
            client,
            url: url.to_string(),
        };
        bus.flush().await?;
        Ok(bus)
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
