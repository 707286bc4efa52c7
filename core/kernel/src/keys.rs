//! The three long-term keys and their files in `[keys] dir`.
//!
//! | file          | contents                                                     | key id                                  |
//! |---------------|--------------------------------------------------------------|-----------------------------------------|
//! | `signing.key` | Ed25519 private key, PKCS#8 v2 DER exactly as `ring` makes it | first 8 bytes of SHA-256(public key)    |
//! | `archive.key` | 32 random bytes (AES-256 key material for archives)          | first 8 bytes of HMAC-SHA256(key, label) |
//! | `backup.key`  | 32 random bytes (AES-256 key material for backups)           | first 8 bytes of HMAC-SHA256(key, label) |
//!
//! The label is the ASCII string `ransomeye key id v1 ` followed by the purpose (`archive` or
//! `backup`), so a key id is derived from, but never reveals, the secret. Secrets are zeroized on
//! drop and never printed: `Debug` shows the purpose and key id only.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use ring::{digest, hmac};
use zeroize::Zeroizing;

use crate::access::{self, Ownership};
use crate::atomic_file::{write_atomic, Replace};
use crate::{FileAction, PathError};

/// Length of symmetric key material in bytes.
pub const SYMMETRIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Largest key file accepted (a PKCS#8 v2 Ed25519 document is 83 bytes).
const MAX_KEY_FILE_LEN: u64 = 4096;

/// What a key is for; each purpose has its own file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// The Ed25519 trust root: signs manifests and trust updates.
    Signing,
    /// Encrypts audit-log archives.
    Archive,
    /// Encrypts database and file backups.
    Backup,
}

impl KeyPurpose {
    /// The file name of this key in the keys directory.
    pub fn file_name(self) -> &'static str {
        match self {
            KeyPurpose::Signing => "signing.key",
            KeyPurpose::Archive => "archive.key",
            KeyPurpose::Backup => "backup.key",
        }
    }

    /// Lower-case name, as used in messages and the key-id label.
    pub fn name(self) -> &'static str {
        match self {
            KeyPurpose::Signing => "signing",
            KeyPurpose::Archive => "archive",
            KeyPurpose::Backup => "backup",
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A short public identifier of a key: 8 bytes, shown as 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// Parses 16 hex digits.
    pub fn from_hex(s: &str) -> Option<KeyId> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(s, &mut id).ok()?;
        Some(KeyId(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Errors loading, creating or using key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file does not exist.
    #[error("{purpose} key {} does not exist", path.display())]
    Missing {
        /// Which key.
        purpose: KeyPurpose,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The key file could be read by someone it must not be readable by.
    #[error("refusing to use key file {}: it {problem}", path.display())]
    Insecure {
        /// The key file.
        path: PathBuf,
        /// What is wrong with its permissions.
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
    /// The file's contents are not a key of the expected kind.
    #[error("key file {} is not a valid {purpose} key: {reason}", path.display())]
    Malformed {
        /// Which key.
        purpose: KeyPurpose,
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The system's random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// Reading or writing the key file failed.
    #[error(transparent)]
    Io(#[from] PathError),
}

/// A 32-byte secret key for the envelope format (archive or backup). Clones are zeroized on
/// drop too (hand one to a worker thread rather than copying the bytes out).
#[derive(Clone)]
pub struct SymmetricKey {
    purpose: KeyPurpose,
    id: KeyId,
    bytes: Zeroizing<[u8; SYMMETRIC_KEY_LEN]>,
}

impl SymmetricKey {
    /// Wraps existing key material.
    pub fn from_bytes(purpose: KeyPurpose, bytes: [u8; SYMMETRIC_KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let id = symmetric_key_id(purpose, &bytes);
        SymmetricKey { purpose, id, bytes }
    }

    /// Draws fresh key material from the system's secure random source.
    pub fn generate(purpose: KeyPurpose) -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; SYMMETRIC_KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| KeyError::Random)?;
        Ok(SymmetricKey::from_bytes(purpose, *bytes))
    }

    /// What this key is for.
    pub fn purpose(&self) -> KeyPurpose {
        self.purpose
    }

    /// The key's public identifier.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The secret bytes. Only the envelope's key derivation should need these.
    pub fn expose_secret(&self) -> &[u8; SYMMETRIC_KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SymmetricKey")
            .field("purpose", &self.purpose)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn symmetric_key_id(purpose: KeyPurpose, bytes: &[u8; SYMMETRIC_KEY_LEN]) -> KeyId {
    let key = hmac::Key::new(hmac::HMAC_SHA256, bytes);
    let label = format!("ransomeye key id v1 {}", purpose.name());
    let tag = hmac::sign(&key, label.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&tag.as_ref()[..8]);
    KeyId(id)
}

/// The Ed25519 trust-root signing key.
pub struct SigningKey {
    pkcs8: Zeroizing<Vec<u8>>,
    pair: Ed25519KeyPair,
    id: KeyId,
}

impl SigningKey {
    /// Generates a new Ed25519 key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
        SigningKey::from_pkcs8(pkcs8).map_err(|reason| KeyError::Malformed {
            purpose: KeyPurpose::Signing,
            path: PathBuf::from("<generated>"),
            reason,
        })
    }

    fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| format!("not an Ed25519 PKCS#8 v2 document ({e})"))?;
        let id = public_key_id(pair.public_key().as_ref());
        Ok(SigningKey { pkcs8, pair, id })
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut pk = [0u8; PUBLIC_KEY_LEN];
        pk.copy_from_slice(self.pair.public_key().as_ref());
        pk
    }

    /// The key's public identifier.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Signs `message` (Ed25519, 64-byte signature).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(self.pair.sign(message).as_ref());
        sig
    }

    /// Checks that this key signs and that its own public key verifies the signature.
    pub fn self_test(&self) -> bool {
        let probe = b"ransomeye signing key self-test";
        verify_signature(&self.public_key(), probe, &self.sign(probe))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The key id of an Ed25519 public key: the first 8 bytes of its SHA-256.
pub fn public_key_id(public_key: &[u8]) -> KeyId {
    let d = digest::digest(&digest::SHA256, public_key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&d.as_ref()[..8]);
    KeyId(id)
}

/// Verifies an Ed25519 signature.
pub fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

/// The keys directory: where each key lives, and loading and creating them safely.
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// The keys directory at `dir` (`[keys] dir` in the configuration).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the key for `purpose` lives.
    pub fn key_path(&self, purpose: KeyPurpose) -> PathBuf {
        self.dir.join(purpose.file_name())
    }

    /// Loads the archive or backup key, refusing files with loose permissions.
    pub fn load_symmetric(&self, purpose: KeyPurpose) -> Result<SymmetricKey, KeyError> {
        let path = self.key_path(purpose);
        let bytes = read_secret_file(purpose, &path)?;
        let material: [u8; SYMMETRIC_KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::Malformed {
                    purpose,
                    path: path.clone(),
                    reason: format!("expected {SYMMETRIC_KEY_LEN} bytes, found {}", bytes.len()),
                })?;
        Ok(SymmetricKey::from_bytes(purpose, material))
    }

    /// Loads the Ed25519 signing key, refusing files with loose permissions.
    pub fn load_signing(&self) -> Result<SigningKey, KeyError> {
        self.load_signing_named(KeyPurpose::Signing.file_name())
    }

    /// Loads an Ed25519 key from `file_name` in this directory (`signing.key.next`,
    /// `retired/<key id>`), refusing files with loose permissions.
    pub fn load_signing_named(&self, file_name: &str) -> Result<SigningKey, KeyError> {
        let path = self.dir.join(file_name);
        let bytes = read_secret_file(KeyPurpose::Signing, &path)?;
        SigningKey::from_pkcs8(bytes).map_err(|reason| KeyError::Malformed {
            purpose: KeyPurpose::Signing,
            path,
            reason,
        })
    }

    /// Writes a new symmetric key file; refuses to replace an existing one.
    pub fn create_symmetric(&self, key: &SymmetricKey) -> Result<PathBuf, KeyError> {
        let path = self.key_path(key.purpose());
        Ok(write_atomic(
            &path,
            key.expose_secret(),
            Ownership::secret_file(),
            Replace::Never,
        )?)
    }

    /// Writes `key` as the signing key file named `file_name` (e.g. `signing.key`); refuses to
    /// replace an existing file.
    pub fn create_signing(&self, key: &SigningKey, file_name: &str) -> Result<PathBuf, KeyError> {
        let path = self.dir.join(file_name);
        Ok(write_atomic(
            &path,
            &key.pkcs8,
            Ownership::secret_file(),
            Replace::Never,
        )?)
    }

    /// Makes the key in `file_name` the signing key: renames it over `signing.key` (atomic) and
    /// syncs the directory, so after a crash either the old or the new key is `signing.key`.
    pub fn promote_signing(&self, file_name: &str) -> Result<(), KeyError> {
        let from = self.dir.join(file_name);
        let to = self.key_path(KeyPurpose::Signing);
        std::fs::rename(&from, &to).map_err(PathError::at(FileAction::Rename, &from))?;
        Ok(crate::atomic_file::sync_dir(&self.dir)?)
    }

    /// Removes the key file `file_name` (e.g. an abandoned `signing.key.next`) durably; a file
    /// that is already gone is not an error.
    pub fn remove(&self, file_name: &str) -> Result<(), KeyError> {
        let path = self.dir.join(file_name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(PathError::new(FileAction::Remove, &path, e).into()),
        }
        let parent = path.parent().unwrap_or(&self.dir);
        Ok(crate::atomic_file::sync_dir(parent)?)
    }
}

/// Opens a key file, checks its permissions on the open descriptor (no race with a swap of the
/// path), and reads it whole.
fn read_secret_file(purpose: KeyPurpose, path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::Missing {
                purpose,
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(PathError::new(FileAction::Open, path, e).into()),
    };
    let meta = file
        .metadata()
        .map_err(PathError::at(FileAction::Read, path))?;
    access::check_secret_file(path, &meta).map_err(|loose| KeyError::Insecure {
        path: path.to_path_buf(),
        problem: loose.problem,
        fix: loose.fix,
    })?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(128));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(PathError::at(FileAction::Read, path))?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyError::Malformed {
            purpose,
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_KEY_FILE_LEN} bytes"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn symmetric_key_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path());
        let key = SymmetricKey::generate(KeyPurpose::Archive).expect("generate");
        keys.create_symmetric(&key).expect("create");
        let loaded = keys.load_symmetric(KeyPurpose::Archive).expect("load");
        assert_eq!(loaded.id(), key.id());
        assert_eq!(loaded.expose_secret(), key.expose_secret());
        let mode = std::fs::metadata(keys.key_path(KeyPurpose::Archive))
            .expect("meta")
            .permissions()
            .mode();
        assert!(mode & 0o077 == 0 || mode & 0o777 == 0o640, "mode {mode:o}");
    }

    #[test]
    fn existing_key_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path());
        let first = SymmetricKey::generate(KeyPurpose::Backup).expect("generate");
        keys.create_symmetric(&first).expect("create");
        let second = SymmetricKey::generate(KeyPurpose::Backup).expect("generate");
        assert!(keys.create_symmetric(&second).is_err());
        let loaded = keys.load_symmetric(KeyPurpose::Backup).expect("load");
        assert_eq!(loaded.id(), first.id());
    }

    #[test]
    fn signing_key_round_trips_and_signs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path());
        let key = SigningKey::generate().expect("generate");
        keys.create_signing(&key, "signing.key").expect("create");
        let loaded = keys.load_signing().expect("load");
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(loaded.id(), public_key_id(&key.public_key()));
        assert!(loaded.self_test());
        let sig = loaded.sign(b"msg");
        assert!(verify_signature(&key.public_key(), b"msg", &sig));
        assert!(!verify_signature(&key.public_key(), b"other", &sig));
    }

    #[test]
    fn key_ids_differ_by_purpose_and_do_not_reveal_the_key() {
        let material = [7u8; 32];
        let a = SymmetricKey::from_bytes(KeyPurpose::Archive, material);
        let b = SymmetricKey::from_bytes(KeyPurpose::Backup, material);
        assert_ne!(a.id(), b.id());
        assert!(!hex::encode(material).contains(&a.id().to_string()));
    }

    #[test]
    fn debug_output_never_contains_key_material() {
        let key = SymmetricKey::from_bytes(KeyPurpose::Archive, [0xAB; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        let signing = SigningKey::generate().expect("generate");
        let shown = format!("{signing:?}");
        assert!(
            !shown.contains(&hex::encode(&signing.pkcs8[16..48])),
            "{shown}"
        );
    }

    #[test]
    fn loose_key_file_is_refused_with_path_and_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyDir::new(dir.path());
        let key = SymmetricKey::generate(KeyPurpose::Archive).expect("generate");
        let path = keys.create_symmetric(&key).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        match keys.load_symmetric(KeyPurpose::Archive) {
            Err(KeyError::Insecure { path: p, fix, .. }) => {
                assert_eq!(p, path);
                assert!(fix.contains("chmod"), "{fix}");
            }
            other => panic!("expected Insecure, got {other:?}"),
        }
    }

    #[test]
    fn wrong_length_key_is_malformed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("archive.key");
        std::fs::write(&path, [1u8; 31]).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = KeyDir::new(dir.path())
            .load_symmetric(KeyPurpose::Archive)
            .expect_err("31 bytes");
        assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn missing_key_is_reported_as_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = KeyDir::new(dir.path()).load_signing().expect_err("no key");
        assert!(matches!(err, KeyError::Missing { .. }), "{err:?}");
    }
}
