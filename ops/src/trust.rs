//! The trust keys as commands use them: the active signing key (the one the configuration
//! names), and every key a manifest may have been signed with (the active one and the retired
//! ones that rotations kept).
//!
//! During a key rotation's commit the configuration is rewritten first and `signing.key` replaced
//! after it (`rotate-keys` explains why), so for a moment the active key is `signing.key.next`;
//! [`signing_key`] looks there too, so a crash between the two steps does not stop backups.

use ransomeye_kernel::config::Config;
use ransomeye_kernel::keys::{public_key_id, KeyDir, KeyError, KeyPurpose, SigningKey};

use crate::error::{Exit, OpsError};

/// The staged key of a rotation in progress, in `[keys] dir`.
pub const NEXT_KEY: &str = "signing.key.next";
/// Where rotations keep replaced keys (`retired/<key id>`), in `[keys] dir`.
pub const RETIRED_DIR: &str = "retired";

/// The configured trust public key (78 when the configuration's is malformed).
pub fn public_key(config: &Config) -> Result<[u8; 32], OpsError> {
    config
        .trust_public_key()
        .map_err(|m| OpsError::new(Exit::Config, format!("[trust] public_key {m}")))
}

/// Loads the active signing key: `signing.key`, or `signing.key.next` while a rotation's commit
/// is half done; either way the key the configuration names, so that nothing is signed with a key
/// agents and verifiers do not trust.
pub fn signing_key(config: &Config) -> Result<SigningKey, OpsError> {
    let keys = KeyDir::new(&config.keys.dir);
    let trust_public_key = public_key(config)?;
    let signing_key = keys.load_signing()?;
    if signing_key.public_key() == trust_public_key {
        return Ok(signing_key);
    }
    match keys.load_signing_named(NEXT_KEY) {
        Ok(next) if next.public_key() == trust_public_key => {
            tracing::warn!(
                "a key rotation's commit is unfinished: using {NEXT_KEY} (key {}); run `ransomeye-ops rotate-keys --resume`",
                next.id()
            );
            Ok(next)
        }
        Err(e @ KeyError::Insecure { .. }) => Err(e.into()),
        _ => Err(OpsError::new(
            Exit::Config,
            format!(
                "{} (key {}) is not the trust key in the configuration ({})",
                keys.key_path(KeyPurpose::Signing).display(),
                signing_key.id(),
                config.trust.key_id
            ),
        )
        .hint("finish or roll back the key rotation first (`ransomeye-ops rotate-keys status`)")),
    }
}

/// The public keys a manifest signature may verify with: the trust key, then the retired ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustKeys(Vec<[u8; 32]>);

impl TrustKeys {
    /// Only `current`.
    pub fn new(current: [u8; 32]) -> TrustKeys {
        TrustKeys(vec![current])
    }

    /// The configured trust key.
    pub fn current(&self) -> [u8; 32] {
        self.0[0]
    }

    /// The key with id `key_id` (16 hex digits), if it is the trust key or a retired one.
    pub fn find(&self, key_id: &str) -> Option<&[u8; 32]> {
        self.0
            .iter()
            .find(|k| public_key_id(k.as_slice()).to_string() == key_id)
    }
}

/// The public keys a signature may verify with: the configured trust key first, then every
/// readable key in `retired/` (manifests signed before a rotation stay verifiable).
pub fn verifying_keys(config: &Config) -> Result<TrustKeys, OpsError> {
    let mut keys = vec![public_key(config)?];
    let dir = KeyDir::new(&config.keys.dir);
    let Ok(entries) = std::fs::read_dir(dir.path().join(RETIRED_DIR)) else {
        return Ok(TrustKeys(keys));
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ransomeye_kernel::atomic_file::is_temp_name(&name) {
            continue;
        }
        match dir.load_signing_named(&format!("{RETIRED_DIR}/{name}")) {
            // The file is named after its key id; a file whose key has another id is ignored.
            Ok(key) if public_key_id(&key.public_key()).to_string() == name => {
                keys.push(key.public_key());
            }
            Ok(_) => tracing::warn!("{RETIRED_DIR}/{name} does not hold key {name}; ignored"),
            Err(e) => tracing::warn!("{RETIRED_DIR}/{name} ignored: {e}"),
        }
    }
    Ok(TrustKeys(keys))
}
