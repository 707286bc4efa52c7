//! The envelope: the one encrypted stream format every file of `ransomeye-ops` uses.
//!
//! This module mirrors `docs/FORMAT.md` section by section:
//! - [`header`]: the 61-byte header (magic, version, purpose, segment size, key id, salt, nonce prefix);
//! - key derivation ([`derive_file_key`]): HKDF-SHA256 from the long-term key and the header's salt;
//! - [`writer`] / [`reader`]: the STREAM construction over AES-256-GCM, one nonce per segment
//!   (prefix ‖ big-endian counter ‖ last-segment flag), the header as associated data of every segment.
//!
//! A writer must be [`finish`](EnvelopeWriter::finish)ed: only then is the final segment (the one
//! whose nonce carries the last-segment flag) written, so an unfinished stream is invalid by
//! construction. The reader hands out a segment's plaintext only after its tag verified, and
//! reports end of stream only after the flagged final segment verified.

pub mod header;
pub mod reader;
pub mod writer;

#[cfg(test)]
mod tests;

use std::fmt;

use ring::{aead, hkdf};

use crate::keys::{KeyId, KeyPurpose, SymmetricKey};

pub use header::{Header, HEADER_LEN, MAGIC, VERSION};
pub use reader::EnvelopeReader;
pub use writer::EnvelopeWriter;

/// Segment size used for new files: 16 KiB of plaintext per segment (measured: docs/PERFORMANCE.md).
pub const DEFAULT_SEGMENT_SIZE: u32 = 16 * 1024;
/// Smallest segment size a reader accepts.
pub const MIN_SEGMENT_SIZE: u32 = 16;
/// Largest segment size a reader accepts (bounds the reader's memory).
pub const MAX_SEGMENT_SIZE: u32 = 16 * 1024 * 1024;
/// Bytes of authentication tag after each segment.
pub const TAG_LEN: usize = 16;
/// Length of the random nonce prefix in the header.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Length of the random HKDF salt in the header.
pub const SALT_LEN: usize = 32;
/// HKDF `info` prefix; the purpose byte follows it.
pub const KDF_INFO: &[u8] = b"ransomeye-envelope-v1";

/// What an envelope file holds; bound into the header and the key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An audit-log archive, encrypted with `archive.key`.
    Archive = 1,
    /// A backup, encrypted with `backup.key`.
    Backup = 2,
}

impl Purpose {
    /// Parses the header byte.
    pub fn from_byte(b: u8) -> Option<Purpose> {
        match b {
            1 => Some(Purpose::Archive),
            2 => Some(Purpose::Backup),
            _ => None,
        }
    }

    /// The key that encrypts files of this purpose.
    pub fn key_purpose(self) -> KeyPurpose {
        match self {
            Purpose::Archive => KeyPurpose::Archive,
            Purpose::Backup => KeyPurpose::Backup,
        }
    }

    /// The purpose of files encrypted with a key of `purpose`, if any.
    pub fn for_key(purpose: KeyPurpose) -> Option<Purpose> {
        match purpose {
            KeyPurpose::Archive => Some(Purpose::Archive),
            KeyPurpose::Backup => Some(Purpose::Backup),
            KeyPurpose::Signing => None,
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key_purpose().name())
    }
}

/// Why an envelope could not be read or written. Every variant means "do not trust this file".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The file ends before the header is complete.
    #[error("truncated header: the file has {got} bytes, an envelope header has {HEADER_LEN}")]
    TruncatedHeader {
        /// Bytes present.
        got: usize,
    },
    /// The file does not start with the envelope magic.
    #[error("not a RansomEye envelope file (bad magic bytes)")]
    BadMagic,
    /// The format version is not one this build reads.
    #[error("unsupported envelope format version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// The purpose byte is unknown.
    #[error("unknown purpose byte {0} in header")]
    UnknownPurpose(u8),
    /// The segment size is outside the accepted range.
    #[error("segment size {0} in header is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}")]
    BadSegmentSize(u32),
    /// The file was encrypted with another key than the one offered.
    #[error("encrypted with {purpose} key {file_key}, but the available key is {offered_key}")]
    WrongKey {
        /// Purpose recorded in the header.
        purpose: Purpose,
        /// Key id recorded in the header.
        file_key: KeyId,
        /// Key id of the key offered.
        offered_key: KeyId,
    },
    /// The key offered is for another purpose than the file's.
    #[error("file is a {file} envelope but a {key} key was offered")]
    WrongPurpose {
        /// Purpose in the header.
        file: Purpose,
        /// Purpose of the key.
        key: KeyPurpose,
    },
    /// A segment's tag did not verify.
    #[error("{}", describe_auth_failure(*segment, *offset, *last))]
    Authentication {
        /// Index of the failing segment (0-based).
        segment: u64,
        /// Byte offset of the segment in the file.
        offset: u64,
        /// Whether it was checked as the final segment.
        last: bool,
    },
    /// The file ends inside a segment's tag.
    #[error(
        "truncated at byte {offset}: segment {segment} is shorter than its {TAG_LEN}-byte tag"
    )]
    Truncated {
        /// Index of the incomplete segment.
        segment: u64,
        /// File length.
        offset: u64,
    },
    /// An empty final segment after non-empty ones (never written; see docs/FORMAT.md 2.5).
    #[error("segment {segment} is an empty final segment after data, which no writer produces")]
    EmptyFinalSegment {
        /// Index of the empty segment.
        segment: u64,
    },
    /// More segments than the 32-bit counter can number.
    #[error("stream longer than 2^32 segments")]
    TooLong,
    /// Writing was attempted after an error or after finishing.
    #[error("envelope writer used after failure or finish")]
    WriterClosed,
    /// The system random source failed.
    #[error("the system random number generator failed")]
    Random,
}

fn describe_auth_failure(segment: u64, offset: u64, last: bool) -> String {
    if last {
        format!(
            "final segment {segment} (at byte {offset}) failed authentication: \
             the file is truncated, was modified, or was encrypted with another key"
        )
    } else {
        format!(
            "segment {segment} (at byte {offset}) failed authentication: \
             the file was modified, its segments reordered, or data appended after its end"
        )
    }
}

impl EnvelopeError {
    /// Finds an envelope error inside an [`std::io::Error`] returned by the reader or writer.
    pub fn from_io(err: &std::io::Error) -> Option<&EnvelopeError> {
        err.get_ref()?.downcast_ref::<EnvelopeError>()
    }

    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }
}

/// Derives the per-file AES-256-GCM key: HKDF-SHA256 with `salt`, IKM = the 32-byte long-term
/// key, `info` = [`KDF_INFO`] ‖ purpose byte, output 32 bytes.
pub fn derive_file_key(
    key: &SymmetricKey,
    purpose: Purpose,
    salt: &[u8; SALT_LEN],
) -> aead::LessSafeKey {
    let info_purpose = [purpose as u8];
    let info = [KDF_INFO, &info_purpose[..]];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(key.expose_secret());
    // HKDF-SHA256 can produce 32 bytes for any info; `expand` fails only beyond 255 * 32 bytes.
    let okm = prk
        .expand(&info, &aead::AES_256_GCM)
        .expect("32-byte HKDF output is always available");
    aead::LessSafeKey::new(aead::UnboundKey::from(okm))
}

/// The 12-byte nonce of segment `counter`: prefix ‖ counter (u32, big-endian) ‖ last flag.
pub fn segment_nonce(prefix: &[u8; NONCE_PREFIX_LEN], counter: u32, last: bool) -> aead::Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    n[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    aead::Nonce::assume_unique_for_key(n)
}
