//! The PEM files a TLS client of ours is configured with (`[bus]`, `[alerts]`): checked before
//! any handshake, so that a missing file, a file without a certificate, or a private key others
//! may read is an error naming the setting and the file (78, or 77 for the key's permissions),
//! not a failure deep in a TLS library. `setting` names the key in errors: "[bus] tls_ca".

use std::path::Path;

use ransomeye_kernel::access::check_secret_file;
use ransomeye_kernel::{FileAction, PathError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Exit, OpsError};

/// `path` must hold at least one PEM certificate.
pub fn check_certificates(path: &Path, setting: &str) -> Result<(), OpsError> {
    let pem = read(path, setting)?;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| not_pem(path, setting, "certificate", &e))?;
        found += 1;
    }
    if found == 0 {
        return Err(not_pem(
            path,
            setting,
            "certificate",
            &"no CERTIFICATE block",
        ));
    }
    Ok(())
}

/// `path` must be a PEM private key only its owner (and `ransomeye-admin`) may read.
pub fn check_private_key(path: &Path, setting: &str) -> Result<(), OpsError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, setting, e))?;
    check_secret_file(path, &meta).map_err(|loose| {
        OpsError::new(
            Exit::NoPerm,
            format!("{setting} {} {}", path.display(), loose.problem),
        )
        .hint(format!(
            "a private key must be readable only by its owner: {}",
            loose.fix
        ))
    })?;
    let pem = read(path, setting)?;
    // Parsed only to say early what is wrong with it; the key bytes go nowhere else.
    PrivateKeyDer::from_pem_slice(&pem)
        .map(drop)
        .map_err(|e| not_pem(path, setting, "private key", &e))
}

fn read(path: &Path, setting: &str) -> Result<Vec<u8>, OpsError> {
    std::fs::read(path).map_err(|e| file_error(path, setting, e))
}

/// A configured file that cannot be read: the configuration is wrong (78), or the caller may
/// not read it (77).
fn file_error(path: &Path, setting: &str, e: std::io::Error) -> OpsError {
    let denied = e.kind() == std::io::ErrorKind::PermissionDenied;
    let err: OpsError = PathError::new(FileAction::Read, path, e).into();
    let exit = if denied { Exit::NoPerm } else { Exit::Config };
    OpsError::new(exit, format!("{setting}: {}", err.what))
        .hint("point it at the PEM file (certificates: -----BEGIN CERTIFICATE-----)")
}

fn not_pem(path: &Path, setting: &str, kind: &str, e: &dyn std::fmt::Display) -> OpsError {
    OpsError::new(
        Exit::Config,
        format!("{setting} {}: not a PEM {kind} ({e})", path.display()),
    )
    .hint("the file must be PEM (-----BEGIN ...-----); convert DER with `openssl x509 -inform der` or `openssl pkey -inform der`")
}
