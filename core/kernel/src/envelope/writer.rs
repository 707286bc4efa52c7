//! The encrypting half of the envelope: a [`Write`] adapter that must be finished.

use std::io::{self, Write};

use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};

use super::{
    derive_file_key, segment_nonce, EnvelopeError, Header, Purpose, DEFAULT_SEGMENT_SIZE,
    HEADER_LEN, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, NONCE_PREFIX_LEN, SALT_LEN, TAG_LEN,
};
use crate::keys::SymmetricKey;

/// Encrypts everything written to it into an envelope on `inner`.
///
/// Plaintext is buffered one segment at a time, so memory stays at one segment whatever the
/// size. A full segment is sealed only when more data arrives; [`finish`](Self::finish) seals
/// what is left as the final segment. Dropping the writer without `finish` leaves a stream with
/// no final segment, which every reader rejects.
pub struct EnvelopeWriter<W: Write> {
    inner: W,
    key: aead::LessSafeKey,
    header: [u8; HEADER_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    segment_size: usize,
    /// Plaintext of the current segment, with room for its tag.
    buf: Vec<u8>,
    counter: u32,
    /// Set after an error or `finish`; no further writes are accepted.
    closed: bool,
    plaintext_len: u64,
}

impl<W: Write> EnvelopeWriter<W> {
    /// Starts an envelope for `purpose` with `key`, with a fresh random salt and nonce prefix,
    /// and writes the header to `inner`.
    pub fn new(inner: W, key: &SymmetricKey, purpose: Purpose) -> io::Result<Self> {
        let rng = SystemRandom::new();
        let mut salt = [0u8; SALT_LEN];
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        rng.fill(&mut salt)
            .and_then(|()| rng.fill(&mut nonce_prefix))
            .map_err(|_| EnvelopeError::Random.into_io())?;
        Self::with_parameters(
            inner,
            key,
            purpose,
            DEFAULT_SEGMENT_SIZE,
            salt,
            nonce_prefix,
        )
    }

    /// Starts an envelope with explicit parameters. Salt and nonce prefix MUST be fresh random
    /// values for every file: this exists for test vectors, which need fixed ones.
    #[doc(hidden)]
    pub fn with_parameters(
        mut inner: W,
        key: &SymmetricKey,
        purpose: Purpose,
        segment_size: u32,
        salt: [u8; SALT_LEN],
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
    ) -> io::Result<Self> {
        if Purpose::for_key(key.purpose()) != Some(purpose) {
            return Err(EnvelopeError::WrongPurpose {
                file: purpose,
                key: key.purpose(),
            }
            .into_io());
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(EnvelopeError::BadSegmentSize(segment_size).into_io());
        }
        let header = Header {
            purpose,
            segment_size,
            key_id: key.id(),
            salt,
            nonce_prefix,
        }
        .to_bytes();
        inner.write_all(&header)?;
        let segment_size = segment_size as usize;
        Ok(EnvelopeWriter {
            inner,
            key: derive_file_key(key, purpose, &salt),
            header,
            nonce_prefix,
            segment_size,
            buf: Vec::with_capacity(segment_size + TAG_LEN),
            counter: 0,
            closed: false,
            plaintext_len: 0,
        })
    }

    /// Seals the buffered plaintext as segment `counter` and writes it out.
    fn seal_segment(&mut self, last: bool) -> io::Result<()> {
        let nonce = segment_nonce(&self.nonce_prefix, self.counter, last);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, aead::Aad::from(&self.header[..]), &mut self.buf)
            .map_err(|_| io::Error::other("AES-GCM sealing failed"))?;
        self.buf.extend_from_slice(tag.as_ref());
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        if !last {
            self.counter = self
                .counter
                .checked_add(1)
                .ok_or_else(|| EnvelopeError::TooLong.into_io())?;
        }
        Ok(())
    }

    /// Seals the final segment, flushes, and returns the inner writer.
    ///
    /// Only a finished stream is a valid envelope. The caller still owns durability (e.g.
    /// [`AtomicFile::commit`](crate::atomic_file::AtomicFile::commit)).
    pub fn finish(mut self) -> io::Result<W> {
        if self.closed {
            return Err(EnvelopeError::WriterClosed.into_io());
        }
        self.closed = true;
        self.seal_segment(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Bytes of memory held for buffering (one segment plus its tag, whatever the stream size).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Plaintext bytes accepted so far.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// The inner writer (e.g. to report progress); writing to it directly corrupts the stream.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for EnvelopeWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Err(EnvelopeError::WriterClosed.into_io());
        }
        let accepted = data.len();
        while !data.is_empty() {
            if self.buf.len() == self.segment_size {
                // More data follows a full segment, so it is not the last one.
                if let Err(e) = self.seal_segment(false) {
                    self.closed = true;
                    return Err(e);
                }
            }
            let room = self.segment_size - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        self.plaintext_len += accepted as u64;
        Ok(accepted)
    }

    /// Flushes the inner writer. Buffered plaintext stays buffered: sealing it early would
    /// fix segment boundaries by the caller's flush pattern.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
