//! The decrypting half of the envelope: a [`Read`] adapter that never hands out unverified bytes.

use std::io::{self, Read};

use ring::aead;

use super::{derive_file_key, segment_nonce, EnvelopeError, Header, Purpose, HEADER_LEN, TAG_LEN};
use crate::keys::SymmetricKey;

/// Decrypts an envelope from `inner`.
///
/// Each segment's plaintext is returned only after its tag verified; end of stream (`Ok(0)`) is
/// returned only after the final segment — the one sealed with the last-segment flag — verified
/// and nothing follows it. Any failure is an [`io::ErrorKind::InvalidData`] error carrying an
/// [`EnvelopeError`] (see [`EnvelopeError::from_io`]); after it the reader only returns errors.
///
/// Streaming means earlier segments are handed out before a later one fails: a consumer must
/// read to the end and discard its output on error (the atomic writer does exactly that).
pub struct EnvelopeReader<R: Read> {
    inner: R,
    key: aead::LessSafeKey,
    header: [u8; HEADER_LEN],
    nonce_prefix: [u8; super::NONCE_PREFIX_LEN],
    segment_size: usize,
    /// Ciphertext of one segment plus one byte of look-ahead, decrypted in place.
    buf: Vec<u8>,
    /// Verified plaintext not yet handed out: `buf[pos..end]`.
    pos: usize,
    end: usize,
    /// The first byte of the next segment, read ahead to learn that the current one is not last.
    lookahead: Option<u8>,
    counter: u64,
    state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Reading,
    Done,
    Failed(EnvelopeError),
    /// The source failed mid-segment; the stream position is lost.
    SourceFailed,
}

enum SegmentError {
    Io(io::Error),
    Envelope(EnvelopeError),
}

impl<R: Read> EnvelopeReader<R> {
    /// Reads the header from `inner` and prepares to decrypt with `key`.
    pub fn open(mut inner: R, key: &SymmetricKey) -> io::Result<Self> {
        let header = Header::read_from(&mut inner)?;
        Self::with_header(inner, header, key).map_err(EnvelopeError::into_io)
    }

    /// The source, e.g. to learn how much of it was read. Meaningful after the last segment.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Prepares to decrypt the segments following an already parsed `header` (e.g. after
    /// choosing the key by the header's key id).
    pub fn with_header(
        inner: R,
        header: Header,
        key: &SymmetricKey,
    ) -> Result<Self, EnvelopeError> {
        if Purpose::for_key(key.purpose()) != Some(header.purpose) {
            return Err(EnvelopeError::WrongPurpose {
                file: header.purpose,
                key: key.purpose(),
            });
        }
        if header.key_id != key.id() {
            return Err(EnvelopeError::WrongKey {
                purpose: header.purpose,
                file_key: header.key_id,
                offered_key: key.id(),
            });
        }
        let segment_size = header.segment_size as usize;
        Ok(EnvelopeReader {
            inner,
            key: derive_file_key(key, header.purpose, &header.salt),
            header: header.to_bytes(),
            nonce_prefix: header.nonce_prefix,
            segment_size,
            buf: vec![0u8; segment_size + TAG_LEN + 1],
            pos: 0,
            end: 0,
            lookahead: None,
            counter: 0,
            state: State::Reading,
        })
    }

    fn segment_offset(&self) -> u64 {
        HEADER_LEN as u64 + self.counter * (self.segment_size + TAG_LEN) as u64
    }

    /// Reads and verifies the next segment into `buf[..end]`.
    fn next_segment(&mut self) -> Result<(), SegmentError> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.open_segment_into(&mut buf);
        self.buf = buf;
        self.pos = 0;
        self.end = result?;
        Ok(())
    }

    /// Reads the next segment plus one look-ahead byte into `seg[..=segment_size + TAG_LEN]`
    /// and verifies and decrypts it in place; returns the plaintext length (`seg[..len]`).
    /// If the tag does not verify, ring has zeroed the plaintext area before returning.
    fn open_segment_into(&mut self, seg: &mut [u8]) -> Result<usize, SegmentError> {
        let full = self.segment_size + TAG_LEN;
        let start = match self.lookahead.take() {
            Some(b) => {
                seg[0] = b;
                1
            }
            None => 0,
        };
        let got = read_full(&mut self.inner, &mut seg[start..=full]).map_err(SegmentError::Io)?;
        let len = start + got;
        // One byte beyond a full segment means another segment follows.
        let last = len <= full;
        if !last {
            self.lookahead = Some(seg[full]);
        }
        let sealed = if last { len } else { full };
        if sealed < TAG_LEN {
            return Err(SegmentError::Envelope(EnvelopeError::Truncated {
                segment: self.counter,
                offset: self.segment_offset() + sealed as u64,
            }));
        }
        let counter = u32::try_from(self.counter)
            .map_err(|_| SegmentError::Envelope(EnvelopeError::TooLong))?;
        let nonce = segment_nonce(&self.nonce_prefix, counter, last);
        let offset = self.segment_offset();
        let plain_len = self
            .key
            .open_in_place(nonce, aead::Aad::from(&self.header[..]), &mut seg[..sealed])
            .map_err(|_| {
                SegmentError::Envelope(EnvelopeError::Authentication {
                    segment: u64::from(counter),
                    offset,
                    last,
                })
            })?
            .len();
        if last && plain_len == 0 && self.counter > 0 {
            // The writer never emits this; rejecting it keeps one encoding per plaintext.
            return Err(SegmentError::Envelope(EnvelopeError::EmptyFinalSegment {
                segment: self.counter,
            }));
        }
        self.counter += 1;
        if last {
            self.state = State::Done;
        }
        Ok(plain_len)
    }

    fn fail(&mut self, err: SegmentError) -> io::Error {
        self.end = 0;
        match err {
            SegmentError::Envelope(e) => {
                self.state = State::Failed(e.clone());
                e.into_io()
            }
            SegmentError::Io(e) => {
                self.state = State::SourceFailed;
                e
            }
        }
    }

    /// Plaintext segments verified so far.
    pub fn segments_verified(&self) -> u64 {
        self.counter
    }
}

impl<R: Read> Read for EnvelopeReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos < self.end {
                let n = (self.end - self.pos).min(out.len());
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &self.state {
                State::Done => return Ok(0),
                State::Failed(e) => return Err(e.clone().into_io()),
                State::SourceFailed => {
                    return Err(io::Error::other("envelope source failed earlier"))
                }
                // A read with room for a whole sealed segment and the look-ahead byte gets the
                // segment decrypted in place in the caller's buffer: one copy fewer.
                State::Reading if out.len() > self.segment_size + TAG_LEN => {
                    match self.open_segment_into(out) {
                        Ok(0) => {}
                        Ok(n) => return Ok(n),
                        Err(e) => return Err(self.fail(e)),
                    }
                }
                State::Reading => {
                    if let Err(e) = self.next_segment() {
                        return Err(self.fail(e));
                    }
                }
            }
        }
    }
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
