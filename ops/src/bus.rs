//! Connecting to the NATS bus as `[bus]` says: its URL and, for a bus that requires TLS, the CA
//! the server's certificate must chain to and the client certificate a `verify: true` server
//! asks for. Every command that talks to the bus connects here.
//!
//! The TLS files are checked before connecting ([`crate::tls_files`]). A handshake the server
//! refuses (wrong CA, expired or unknown client certificate, a name the
//! server's certificate does not carry) is 69, with the files to check.

use std::time::Duration;

use ransomeye_kernel::config;

use crate::error::{Exit, OpsError};
use crate::tls_files;
use crate::utils::redact_url;

/// Connect options for `bus`: TLS files checked and added, connecting and every request bounded
/// by `timeout`.
pub fn options(
    bus: &config::Bus,
    timeout: Duration,
) -> Result<async_nats::ConnectOptions, OpsError> {
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .request_timeout(Some(timeout));
    if let Some(ca) = &bus.tls_ca {
        tls_files::check_certificates(ca, "[bus] tls_ca")?;
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&bus.tls_cert, &bus.tls_key) {
        tls_files::check_certificates(cert, "[bus] tls_cert")?;
        tls_files::check_private_key(key, "[bus] tls_key")?;
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok(options)
}

/// Connects to the bus and makes one round trip; 69 when it cannot, saying what to check.
pub async fn connect(bus: &config::Bus, timeout: Duration) -> Result<async_nats::Client, OpsError> {
    let client = options(bus, timeout)?
        .connect(&bus.url)
        .await
        .map_err(|e| connect_error(bus, &e))?;
    tokio::time::timeout(timeout, client.flush())
        .await
        .map_err(|_| {
            unavailable(
                &bus.url,
                format!("no round trip within {} s", timeout.as_secs()),
            )
        })?
        .map_err(|e| unavailable(&bus.url, format!("no round trip: {e}")))?;
    Ok(client)
}

/// The error for the bus at `url` that could not be reached or used, `what` saying how; the
/// URL is shown without its password.
pub fn unavailable(url: &str, what: impl std::fmt::Display) -> OpsError {
    OpsError::new(Exit::Unavailable, format!("bus {}: {what}", redact_url(url)))
    .hint("check that nats-server (with JetStream) is running and [bus] url (or $RANSOMEYE_NATS_URL) is right; `ransomeye-ops health` tells more")
}

/// A failed connection, in the operator's terms: a TLS failure names the files to check.
fn connect_error(bus: &config::Bus, e: &async_nats::ConnectError) -> OpsError {
    // The client reports most handshake failures as I/O errors; their text tells them apart.
    let text = e.to_string().to_ascii_lowercase();
    let tls = match e.kind() {
        async_nats::ConnectErrorKind::Tls => true,
        async_nats::ConnectErrorKind::Io => ["certificate", "tls", "handshake", "alert"]
            .iter()
            .any(|w| text.contains(w)),
        _ => false,
    };
    if !tls {
        return unavailable(&bus.url, format!("cannot connect: {e}"));
    }
    let files = [
        bus.tls_ca
            .as_deref()
            .map(|p| format!("tls_ca = {}", p.display())),
        bus.tls_cert
            .as_deref()
            .map(|p| format!("tls_cert = {}", p.display())),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let files = if files.is_empty() {
        "no [bus] tls_ca is set (the system's roots were used)".to_string()
    } else {
        format!("[bus] {}", files.join(", "))
    };
    OpsError::new(
        Exit::Unavailable,
        format!("bus {}: TLS handshake failed: {e}", redact_url(&bus.url)),
    )
    .hint(format!(
        "{files}: the server's certificate must chain to tls_ca and carry the URL's host name; a server with `verify: true` must trust the issuer of tls_cert, which must be valid now. `ransomeye-ops certs check` shows the files' dates"
    ))
}
