//! Signed JSON documents: archive and backup manifests.
//!
//! A signed document is `{"body": {…}, "signing_key_id": "…", "signature": "…"}` where
//! `signature` is the Ed25519 signature (128 lower-case hex digits) made with the trust signing
//! key over the bytes of `body` **as they are stored in the file**, with the JSON whitespace
//! between tokens (space, tab, line feed, carriage return outside strings) removed. Nothing is
//! parsed and re-serialised before verifying: strings keep their escaping, members their order,
//! numbers their spelling, so a later version can add fields that this one verifies without
//! understanding them (docs/FORMAT.md section 4 spells the rule out for other implementations).
//! Writers sign the compact serialisation of the body and store it pretty-printed, which the
//! rule maps back to exactly the signed bytes; every manifest written since format 1 verifies.
//! Files are written atomically, `0640` with group `ransomeye-admin` when that group exists,
//! else `0600` (`Ownership::secret_file`).

use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};
use ransomeye_kernel::keys::{public_key_id, verify_signature, SigningKey};
use ransomeye_kernel::{FileAction, PathError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Exit, OpsError};
use crate::trust::TrustKeys;

/// A body, who signed it, and the exact bytes the signature covers.
#[derive(Debug, Clone)]
pub struct Signed<B> {
    /// The signed contents, as far as this version understands them (fields it does not know
    /// are covered by the signature but not kept here).
    pub body: B,
    /// Key id of the Ed25519 key that signed it.
    pub signing_key_id: String,
    /// Ed25519 signature (hex) over [`Signed::signed_bytes`].
    pub signature: String,
    /// The stored body with the whitespace between its tokens removed: the signed message.
    signed: Vec<u8>,
}

/// The file layout, with the body kept as the exact text it has in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored<'a> {
    #[serde(borrow)]
    body: &'a RawValue,
    signing_key_id: String,
    signature: String,
}

/// The file layout for writing (fields in this order).
#[derive(Serialize)]
struct Written<'a, B> {
    body: &'a B,
    signing_key_id: &'a str,
    signature: &'a str,
}

impl<B: Serialize + DeserializeOwned> Signed<B> {
    /// Signs `body`: the signed message is its compact JSON serialisation.
    pub fn sign(body: B, key: &SigningKey) -> Result<Signed<B>, OpsError> {
        let signed = serde_json::to_vec(&body).map_err(|e| {
            OpsError::new(Exit::Software, format!("cannot serialise manifest: {e}"))
        })?;
        Ok(Signed {
            signature: hex::encode(key.sign(&signed)),
            signing_key_id: key.id().to_string(),
            body,
            signed,
        })
    }

    /// The message the signature covers (see the module comment).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
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
        // Lower-case hex only: one signature, one spelling.
        let signature = (self.signature.len() == 128
            && self
                .signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| hex::decode(&self.signature).ok())
        .flatten()
        .ok_or_else(|| "signature is not 128 lower-case hex digits".to_string())?;
        if verify_signature(key, &self.signed, &signature) {
            Ok(())
        } else {
            Err("manifest signature does not verify: the manifest was modified".into())
        }
    }

    /// Parses a signed document from its file contents; `what` and `path` name it in errors.
    pub fn from_slice(text: &[u8], path: &Path, what: &str) -> Result<Signed<B>, OpsError> {
        let invalid = |e: serde_json::Error| {
            OpsError::new(
                Exit::Data,
                format!("{}: not a valid {what}: {e}", path.display()),
            )
        };
        let stored: Stored<'_> = serde_json::from_slice(text).map_err(invalid)?;
        Ok(Signed {
            body: serde_json::from_str(stored.body.get()).map_err(invalid)?,
            signed: strip_whitespace(stored.body.get().as_bytes()),
            signing_key_id: stored.signing_key_id,
            signature: stored.signature,
        })
    }

    /// Reads a signed file; `what` names the kind of document in errors ("archive manifest").
    pub fn read(path: &Path, what: &str) -> Result<Signed<B>, OpsError> {
        let text = std::fs::read(path).map_err(PathError::at(FileAction::Open, path))?;
        Signed::from_slice(&text, path, what)
    }

    /// The file contents: pretty-printed, and checked to map back to the signed bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>, OpsError> {
        let text = serde_json::to_vec_pretty(&Written {
            body: &self.body,
            signing_key_id: &self.signing_key_id,
            signature: &self.signature,
        })
        .map_err(|e| OpsError::new(Exit::Software, format!("cannot serialise manifest: {e}")))?;
        // A document read from a file and written back would lose the fields this version
        // does not know, and with them its signature: refuse rather than write that.
        let stored: Stored<'_> = serde_json::from_slice(&text)
            .map_err(|e| OpsError::new(Exit::Software, format!("cannot re-read manifest: {e}")))?;
        if strip_whitespace(stored.body.get().as_bytes()) != self.signed {
            return Err(OpsError::new(
                Exit::Software,
                "the manifest as written would not be the manifest as signed",
            ));
        }
        Ok(text)
    }

    /// Writes the document atomically; `replace` only for a change of an existing one.
    pub fn write(&self, path: &Path, replace: Replace) -> Result<PathBuf, OpsError> {
        Ok(write_atomic(
            path,
            &self.to_vec()?,
            Ownership::secret_file(),
            replace,
        )?)
    }
}

/// `json` (valid JSON) without the whitespace between its tokens; strings are copied byte for
/// byte, escapes included.
pub fn strip_whitespace(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Body {
        n: u32,
        s: String,
    }

    fn body() -> Body {
        Body {
            n: 1,
            s: "ü \"q\" \\ \t\u{1f}/".to_string(),
        }
    }

    fn keys() -> (SigningKey, TrustKeys) {
        let key = SigningKey::generate().expect("generate");
        let trust = TrustKeys::new(key.public_key());
        (key, trust)
    }

    fn parse(text: &[u8]) -> Result<Signed<Body>, OpsError> {
        Signed::from_slice(text, Path::new("m.json"), "manifest")
    }

    #[test]
    fn a_written_document_verifies_over_its_stored_bytes() {
        let (key, trust) = keys();
        let text = Signed::sign(body(), &key)
            .expect("sign")
            .to_vec()
            .expect("to_vec");
        let read = parse(&text).expect("parse");
        assert_eq!(read.body, body());
        assert_eq!(read.verify_signature(&trust), Ok(()));
        assert_eq!(
            read.signed_bytes(),
            serde_json::to_vec(&body()).expect("compact")
        );
    }

    #[test]
    fn a_field_this_version_does_not_know_verifies_when_signed_over_the_stored_bytes() {
        let (key, trust) = keys();
        let stored =
            "{\n  \"n\": 1,\n  \"later\": {\"x\": [1.50, \"\\u00e9\"]},\n  \"s\": \"a\"\n}";
        let signature = hex::encode(key.sign(&strip_whitespace(stored.as_bytes())));
        let text = format!(
            "{{\"body\": {stored}, \"signing_key_id\": \"{}\", \"signature\": \"{signature}\"}}",
            key.id()
        );
        let read = parse(text.as_bytes()).expect("parse");
        assert_eq!(read.body.s, "a");
        assert_eq!(read.verify_signature(&trust), Ok(()));
        // Re-serialising what was understood would drop the field: that is not the signed text.
        let reserialised = serde_json::to_vec(&read.body).expect("compact");
        assert!(!verify_signature(
            &key.public_key(),
            &reserialised,
            &hex::decode(&signature).expect("hex")
        ));
        assert!(read.to_vec().is_err(), "written back, it would not verify");
    }

    #[test]
    fn every_flipped_bit_of_a_document_fails() {
        let (key, trust) = keys();
        let text = Signed::sign(body(), &key)
            .expect("sign")
            .to_vec()
            .expect("to_vec");
        for i in 0..text.len() {
            for bit in 0..8 {
                let mut changed = text.clone();
                changed[i] ^= 1 << bit;
                if let Ok(doc) = parse(&changed) {
                    assert!(
                        doc.verify_signature(&trust).is_err(),
                        "byte {i} bit {bit} changed and still verifies: {}",
                        String::from_utf8_lossy(&changed)
                    );
                }
            }
        }
    }

    #[test]
    fn whitespace_between_tokens_is_not_signed_but_inside_strings_it_is() {
        let (key, trust) = keys();
        let text = Signed::sign(body(), &key)
            .expect("sign")
            .to_vec()
            .expect("to_vec");
        let text = String::from_utf8(text).expect("utf-8");
        let compact = text.replace("\n", "").replace("  ", "");
        assert_ne!(compact, text);
        assert_eq!(
            parse(compact.as_bytes())
                .expect("parse")
                .verify_signature(&trust),
            Ok(())
        );
        let spaced = text.replacen("ü ", "ü  ", 1);
        assert_ne!(spaced, text);
        assert!(parse(spaced.as_bytes())
            .expect("parse")
            .verify_signature(&trust)
            .is_err());
    }

    #[test]
    fn another_key_or_an_upper_case_signature_fails() {
        let (key, trust) = keys();
        let (_, other) = keys();
        let signed = Signed::sign(body(), &key).expect("sign");
        let err = signed.verify_signature(&other).expect_err("other key");
        assert!(err.contains("neither the current trust key"), "{err}");
        let mut upper = signed.clone();
        upper.signature = upper.signature.to_uppercase();
        assert!(upper.verify_signature(&trust).is_err());
    }

    #[test]
    fn a_body_given_twice_is_refused() {
        let (key, _) = keys();
        let signed = Signed::sign(body(), &key).expect("sign");
        let text = format!(
            "{{\"body\": {{\"n\": 2, \"s\": \"\"}}, \"body\": {}, \"signing_key_id\": \"{}\", \"signature\": \"{}\"}}",
            String::from_utf8(signed.signed_bytes().to_vec()).expect("utf-8"),
            signed.signing_key_id,
            signed.signature
        );
        assert!(parse(text.as_bytes()).is_err());
    }
}
