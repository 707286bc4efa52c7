//! Connecting to the NATS bus as `[bus]` says: its URL and, for a bus that requires TLS, the CA
//! the server's certificate must chain to and the client certificate a `verify: true` server
//! asks for. Every command that talks to the bus connects here.
//!
//! The TLS files are read and checked before connecting, so that a missing file, a file that
//! holds no certificate, or a key others may read is an error naming the file and the `[bus]`
//! key (78, or 77 for the key's permissions), not a handshake failure deep in the client. A
//! handshake the server refuses (wrong CA, expired or unknown client certificate, a name the
//! server's certificate does not carry) is 69, with the files to check.

use std::path::Path;
use std::time::Duration;

use ransomeye_kernel::access::check_secret_file;
use ransomeye_kernel::config;
use ransomeye_kernel::{FileAction, PathError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Exit, OpsError};
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
        check_certificates(ca, "tls_ca")?;
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&bus.tls_cert, &bus.tls_key) {
        check_certificates(cert, "tls_cert")?;
        check_key(key)?;
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
        .map_err(|_| unavailable(bus, format!("no round trip within {} s", timeout.as_secs())))?
        .map_err(|e| unavailable(bus, format!("no round trip: {e}")))?;
    Ok(client)
}

/// The error for a bus that could not be reached or used, `what` saying how.
pub fn unavailable(bus: &config::Bus, what: impl std::fmt::Display) -> OpsError {
    OpsError::new(
        Exit::Unavailable,
        format!("bus {}: {what}", redact_url(&bus.url)),
    )
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
        return unavailable(bus, format!("cannot connect: {e}"));
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

/// `path` (from `[bus] key`) must hold at least one PEM certificate.
fn check_certificates(path: &Path, key: &str) -> Result<(), OpsError> {
    let pem = read(path, key)?;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| not_pem(path, key, "certificate", &e))?;
        found += 1;
    }
    if found == 0 {
        return Err(not_pem(path, key, "certificate", &"no CERTIFICATE block"));
    }
    Ok(())
}

/// `[bus] tls_key` must be a private key only its owner (and `ransomeye-admin`) may read.
fn check_key(path: &Path) -> Result<(), OpsError> {
    let meta = std::fs::metadata(path).map_err(|e| config_file_error(path, "tls_key", e))?;
    check_secret_file(path, &meta).map_err(|loose| {
        OpsError::new(
            Exit::NoPerm,
            format!("[bus] tls_key {} {}", path.display(), loose.problem),
        )
        .hint(format!(
            "a private key must be readable only by its owner: {}",
            loose.fix
        ))
    })?;
    let pem = read(path, "tls_key")?;
    // Parsed only to say early what is wrong with it; the key bytes go nowhere else.
    PrivateKeyDer::from_pem_slice(&pem)
        .map(drop)
        .map_err(|e| not_pem(path, "tls_key", "private key", &e))
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, OpsError> {
    std::fs::read(path).map_err(|e| config_file_error(path, key, e))
}

/// A file named by `[bus] key` that cannot be read: the configuration is wrong (78), or the
/// caller may not read it (77).
fn config_file_error(path: &Path, key: &str, e: std::io::Error) -> OpsError {
    let denied = e.kind() == std::io::ErrorKind::PermissionDenied;
    let err: OpsError = PathError::new(FileAction::Read, path, e).into();
    let exit = if denied { Exit::NoPerm } else { Exit::Config };
    OpsError::new(exit, format!("[bus] {key}: {}", err.what))
        .hint("set [bus] tls_ca, tls_cert and tls_key to the PEM files of the bus's CA and of this host's client certificate")
}

fn not_pem(path: &Path, key: &str, kind: &str, e: &dyn std::fmt::Display) -> OpsError {
    OpsError::new(
        Exit::Config,
        format!("[bus] {key} {}: not a PEM {kind} ({e})", path.display()),
    )
    .hint("the file must be PEM (-----BEGIN ...-----); convert DER with `openssl x509 -inform der` or `openssl pkey -inform der`")
}
