//! The envelope header (docs/FORMAT.md, "Header").
//!
//! ```text
//! offset len  field
//!      0   8  magic          89 52 59 45 4E 56 0D 0A  ("\x89RYENV\r\n")
//!      8   1  version        0x01
//!      9   1  purpose        0x01 archive, 0x02 backup
//!     10   4  segment size   u32 big-endian, plaintext bytes per segment
//!     14   8  key id         id of the long-term key (see keys.rs)
//!     22  32  salt           random, HKDF salt
//!     54   7  nonce prefix   random
//!     61      (segments follow)
//! ```

use std::io::{self, Read};

use super::{
    EnvelopeError, Purpose, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, NONCE_PREFIX_LEN, SALT_LEN,
};
use crate::keys::KeyId;

/// Magic bytes at the start of every envelope file. The high first byte and CR LF catch
/// transfers that mangle binary or line endings, as in PNG.
pub const MAGIC: [u8; 8] = *b"\x89RYENV\r\n";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Total header length in bytes.
pub const HEADER_LEN: usize = 8 + 1 + 1 + 4 + 8 + SALT_LEN + NONCE_PREFIX_LEN;

/// A parsed envelope header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// What the file holds (and which key encrypts it).
    pub purpose: Purpose,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// Id of the long-term key the file key was derived from.
    pub key_id: KeyId,
    /// HKDF salt.
    pub salt: [u8; SALT_LEN],
    /// First 7 bytes of every segment nonce.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl Header {
    /// The header's bytes, exactly as written (and as authenticated with every segment).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8] = VERSION;
        b[9] = self.purpose as u8;
        b[10..14].copy_from_slice(&self.segment_size.to_be_bytes());
        b[14..22].copy_from_slice(&self.key_id.0);
        b[22..54].copy_from_slice(&self.salt);
        b[54..61].copy_from_slice(&self.nonce_prefix);
        b
    }

    /// Parses header bytes, checking magic, version, purpose and segment size.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, EnvelopeError> {
        if b[0..8] != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        if b[8] != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(b[8]));
        }
        let purpose = Purpose::from_byte(b[9]).ok_or(EnvelopeError::UnknownPurpose(b[9]))?;
        let segment_size = u32::from_be_bytes([b[10], b[11], b[12], b[13]]);
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(EnvelopeError::BadSegmentSize(segment_size));
        }
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&b[14..22]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&b[22..54]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&b[54..61]);
        Ok(Header {
            purpose,
            segment_size,
            key_id: KeyId(key_id),
            salt,
            nonce_prefix,
        })
    }

    /// Reads and parses the header from the start of a stream.
    ///
    /// The header is not authenticated until the first segment verifies; callers may use it
    /// to pick a key, never to trust the file.
    pub fn read_from(r: &mut impl Read) -> io::Result<Header> {
        let mut b = [0u8; HEADER_LEN];
        let got = super::reader::read_full(r, &mut b)?;
        if got < HEADER_LEN {
            // A file that does not even start with the magic is "not an envelope", not "truncated".
            if got < MAGIC.len() && b[..got] != MAGIC[..got]
                || got >= MAGIC.len() && b[..8] != MAGIC
            {
                return Err(EnvelopeError::BadMagic.into_io());
            }
            return Err(EnvelopeError::TruncatedHeader { got }.into_io());
        }
        Header::parse(&b).map_err(EnvelopeError::into_io)
    }
}
