//! The trust signing key as commands use it: loaded, and checked against the configuration.

use ransomeye_kernel::config::Config;
use ransomeye_kernel::keys::{KeyDir, KeyPurpose, SigningKey};

use crate::error::{Exit, OpsError};

/// The configured trust public key (78 when the configuration's is malformed).
pub fn public_key(config: &Config) -> Result<[u8; 32], OpsError> {
    config
        .trust_public_key()
        .map_err(|m| OpsError::new(Exit::Config, format!("[trust] public_key {m}")))
}

/// Loads `signing.key` and checks that it is the trust key the configuration names, so that
/// nothing is signed with a key agents and verifiers do not trust.
pub fn signing_key(config: &Config) -> Result<SigningKey, OpsError> {
    let keys = KeyDir::new(&config.keys.dir);
    let trust_public_key = public_key(config)?;
    let signing_key = keys.load_signing()?;
    if signing_key.public_key() != trust_public_key {
        return Err(OpsError::new(
            Exit::Config,
            format!(
                "{} (key {}) is not the trust key in the configuration ({})",
                keys.key_path(KeyPurpose::Signing).display(),
                signing_key.id(),
                config.trust.key_id
            ),
        )
        .hint("finish or roll back the key rotation first (`ransomeye-ops rotate-keys status`)"));
    }
    Ok(signing_key)
}
