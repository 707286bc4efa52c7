//! Signed JSON documents: archive and backup manifests.
//!
//! A signed document is `{"body": {…}, "signing_key_id": "…", "signature": "…"}` where
//! `signature` is the Ed25519 signature (hex) of the compact JSON serialisation of `body`
//! (fields in the order the body type declares them), made with the trust signing key.
//! Files are written atomically and 0600.

use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};
use ransomeye_kernel::keys::{public_key_id, verify_signature, SigningKey};
use ransomeye_kernel::{FileAction, PathError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Exit, OpsError};
use crate::trust::TrustKeys;

/// A body and who signed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<B> {
    /// The signed contents.
    pub body: B,
    /// Key id of the Ed25519 key that signed it.
    pub signing_key_id: String,
    /// Ed25519 signature (hex) over the compact JSON of `body`.
    pub signature: String,
}

impl<B: Serialize + DeserializeOwned> Signed<B> {
    /// Signs `body`.
    pub fn sign(body: B, key: &SigningKey) -> Result<Signed<B>, OpsError> {
        let bytes = serde_json::to_vec(&body).map_err(|e| {
            OpsError::new(Exit::Software, format!("cannot serialise manifest: {e}"))
        })?;
        Ok(Signed {
            signature: hex::encode(key.sign(&bytes)),
            signing_key_id: key.id().to_string(),
            body,
        })
    }

    /// Checks the signature against the trust key, or a retired trust key when the document was
    /// signed before a rotation; the error says what is wrong.
    pub fn verify_signature(&self, trust: &TrustKeys) -> Result<(), String> {
        let Some(key) = trust.find(&self.signing_key_id) else {
            return Err(format!(
                "signed by key {}, which is neither the current trust key {} nor a retired one",
                self.signing_key_id,
                public_key_id(&trust.current())
            ));
        };
        let bytes = serde_json::to_vec(&self.body).map_err(|e| e.to_string())?;
        let signature =
            hex::decode(&self.signature).map_err(|_| "signature is not hex".to_string())?;
        if verify_signature(key, &bytes, &signature) {
            Ok(())
        } else {
            Err("manifest signature does not verify: the manifest was modified".into())
        }
    }

    /// Reads a signed file; `what` names the kind of document in errors ("archive manifest").
    pub fn read(path: &Path, what: &str) -> Result<Signed<B>, OpsError> {
        let text = std::fs::read(path).map_err(PathError::at(FileAction::Open, path))?;
        serde_json::from_slice(&text).map_err(|e| {
            OpsError::new(
                Exit::Data,
                format!("{}: not a valid {what}: {e}", path.display()),
            )
        })
    }

    /// Writes the document atomically; `replace` only for a change of an existing one.
    pub fn write(&self, path: &Path, replace: Replace) -> Result<PathBuf, OpsError> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| {
            OpsError::new(Exit::Software, format!("cannot serialise manifest: {e}"))
        })?;
        Ok(write_atomic(
            path,
            &text,
            Ownership::secret_file(),
            replace,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Body {
        n: u32,
    }

    #[test]
    fn a_changed_body_or_another_key_fails_verification() {
        let key = SigningKey::generate().expect("generate");
        let other = SigningKey::generate().expect("generate");
        let signed = Signed::sign(Body { n: 1 }, &key).expect("sign");
        assert_eq!(
            signed.verify_signature(&TrustKeys::new(key.public_key())),
            Ok(())
        );
        let mut changed = signed.clone();
        changed.body.n = 2;
        assert!(changed
            .verify_signature(&TrustKeys::new(key.public_key()))
            .is_err());
        let err = signed
            .verify_signature(&TrustKeys::new(other.public_key()))
            .expect_err("other key");
        assert!(err.contains("neither the current trust key"), "{err}");
    }
}
