//! The new passwords: generated from `ring`'s system RNG, turned into the SCRAM-SHA-256
//! verifier PostgreSQL stores (so that only the verifier is ever sent to the server), and kept
//! until the env files hold them in the pending file, `db-creds.pending` in `[keys] dir`, written
//! with the key files' modes. The pending file also holds the env files as they were before the
//! rotation, so that a failed check or `--resume` can put them back byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{rename_to_temp, write_atomic, Replace};
use ransomeye_kernel::{FileAction, PathError};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Exit, OpsError};

/// File name of the pending file in `[keys] dir`.
pub const PENDING_FILE: &str = "db-creds.pending";
/// Random bytes in a password: 256 bits.
const PASSWORD_BYTES: usize = 32;
/// PBKDF2 iterations of the verifier: PostgreSQL's default (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;
/// Salt bytes of the verifier, as PostgreSQL generates them.
const SALT_BYTES: usize = 16;

/// A new password: 43 characters of the URL-safe base64 alphabet (256 bits), which needs no
/// quoting or escaping in a URL, a dotenv value or a shell.
pub fn new_password() -> Result<Zeroizing<String>, OpsError> {
    let mut bytes = Zeroizing::new([0u8; PASSWORD_BYTES]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| OpsError::new(Exit::Software, "the system random generator failed"))?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// The SCRAM-SHA-256 verifier of `password` with a fresh random salt, in PostgreSQL's
/// `rolpassword` format.
pub fn scram_verifier(password: &str) -> Result<String, OpsError> {
    let mut salt = [0u8; SALT_BYTES];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| OpsError::new(Exit::Software, "the system random generator failed"))?;
    Ok(scram_verifier_with(password, &salt, SCRAM_ITERATIONS))
}

/// The verifier for a given salt and iteration count (RFC 5802 / RFC 7677): SaltedPassword =
/// PBKDF2-HMAC-SHA-256(password, salt, i); StoredKey = SHA-256(HMAC(SaltedPassword, "Client
/// Key")); ServerKey = HMAC(SaltedPassword, "Server Key"). Our passwords are ASCII without
/// spaces or control characters, which SASLprep leaves as they are.
fn scram_verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = Zeroizing::new([0u8; 32]);
    let rounds = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.as_bytes(),
        salted.as_mut(),
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salted.as_ref());
    let client_key = ring::hmac::sign(&key, b"Client Key");
    let stored_key = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
    let server_key = ring::hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref())
    )
}

/// Whether `text` looks like a verifier PostgreSQL stores (SCRAM or md5), so that putting it
/// back with `ALTER ROLE … PASSWORD` stores it as it is rather than as a password.
pub fn is_verifier(text: &str) -> bool {
    let scram = text.starts_with("SCRAM-SHA-256$")
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"$:+/=-".contains(&b));
    let md5 = text.len() == 35
        && text.starts_with("md5")
        && text[3..].bytes().all(|b| b.is_ascii_hexdigit());
    scram || md5
}

/// The pending file: the rotation's new passwords and the env files as they were.
#[derive(Serialize, Deserialize)]
pub struct Pending {
    /// The rotation it belongs to.
    pub rotation_id: String,
    /// New password per role.
    pub passwords: BTreeMap<String, String>,
    /// Each env file's bytes before the rotation (UTF-8 text).
    pub originals: BTreeMap<PathBuf, String>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for password in self.passwords.values_mut() {
            password.zeroize();
        }
        for text in self.originals.values_mut() {
            text.zeroize();
        }
    }
}

impl Pending {
    /// Writes it (never over an existing one), with the key files' modes.
    pub fn write(&self, keys_dir: &Path) -> Result<(), OpsError> {
        let path = keys_dir.join(PENDING_FILE);
        let text = Zeroizing::new(serde_json::to_vec(self).map_err(|e| {
            OpsError::new(Exit::Software, format!("serialising the pending file: {e}"))
        })?);
        write_atomic(&path, &text, Ownership::secret_file(), Replace::Never)?;
        Ok(())
    }

    /// Reads it, or `None` when there is none.
    pub fn read(keys_dir: &Path) -> Result<Option<Pending>, OpsError> {
        let path = keys_dir.join(PENDING_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PathError::new(FileAction::Read, &path, e).into()),
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            OpsError::new(
                Exit::Data,
                format!("{}: not a pending file of rotate-db-creds: {e}", path.display()),
            )
            .hint("it is damaged: the env files still hold a working password; remove it by hand after checking `rotate-db-creds status`")
        })
    }

    /// Removes the pending file if it is there: moved to a temporary name first, so a crash
    /// leaves only what the next run recognises and removes.
    pub fn remove(keys_dir: &Path) -> Result<(), OpsError> {
        let path = keys_dir.join(PENDING_FILE);
        if !path.exists() {
            return Ok(());
        }
        let temp = rename_to_temp(&path)?;
        std::fs::remove_file(&temp).map_err(PathError::at(FileAction::Remove, &temp))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_256_bits_of_the_url_safe_alphabet() {
        let a = new_password().expect("rng");
        let b = new_password().expect("rng");
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(*a, *b);
    }

    #[test]
    fn the_verifier_has_postgresqls_format_and_depends_on_password_and_salt() {
        let salt = [7u8; 16];
        let v = scram_verifier_with("pencil", &salt, 4096);
        assert!(
            v.starts_with("SCRAM-SHA-256$4096:BwcHBwcHBwcHBwcHBwcHBw==$"),
            "{v}"
        );
        assert!(is_verifier(&v));
        assert!(!v.contains("pencil"));
        assert_eq!(v, scram_verifier_with("pencil", &salt, 4096));
        assert_ne!(v, scram_verifier_with("pencil2", &salt, 4096));
        assert_ne!(v, scram_verifier_with("pencil", &[8u8; 16], 4096));
    }

    #[test]
    fn only_stored_verifiers_are_taken_for_verifiers() {
        assert!(is_verifier("md5d41d8cd98f00b204e9800998ecf8427e"));
        assert!(!is_verifier("hunter2"));
        assert!(!is_verifier("SCRAM-SHA-256$4096:x' ; drop table t; --"));
    }
}
