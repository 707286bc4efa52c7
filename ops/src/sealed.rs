//! Sealed files: plaintext → zstd → envelope (a symmetric key) → atomic file, and back.
//!
//! Archives and backups are all sealed files. Both directions count and hash what passes
//! (SHA-256 of the plaintext and of the file) so that a manifest can record, and verification
//! can check, exactly what was written. Memory stays flat: everything streams.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::AtomicFile;
use ransomeye_kernel::envelope::{EnvelopeError, EnvelopeReader, EnvelopeWriter, Purpose};
use ransomeye_kernel::keys::SymmetricKey;
use ransomeye_kernel::{FileAction, PathError};
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::error::{Exit, OpsError};
use crate::follow::{self, Following, Published};

/// Counts and hashes bytes passing through a writer or reader.
pub struct Hashing<T> {
    inner: T,
    /// `None`: count only (another thread hashes the same bytes).
    hash: Option<digest::Context>,
    bytes: u64,
}

impl<T> Hashing<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Hashing {
            inner,
            hash: Some(digest::Context::new(&digest::SHA256)),
            bytes: 0,
        }
    }

    /// Wraps `inner`, counting bytes without hashing them.
    pub fn counting(inner: T) -> Self {
        Hashing {
            inner,
            hash: None,
            bytes: 0,
        }
    }

    fn pass(&mut self, bytes: &[u8]) {
        if let Some(hash) = self.hash.as_mut() {
            hash.update(bytes);
        }
        self.bytes += bytes.len() as u64;
    }

    /// The inner value, the byte count and the hex SHA-256 of what passed (empty when only
    /// counting).
    pub fn finish(self) -> (T, u64, String) {
        let hex = self
            .hash
            .map(|h| hex::encode(h.finish()))
            .unwrap_or_default();
        (self.inner, self.bytes, hex)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pass(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pass(&buf[..n]);
        Ok(n)
    }
}

/// Sizes and digests of a sealed file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// Bytes of plaintext (before compression).
    pub plaintext_bytes: u64,
    /// SHA-256 (hex) of the plaintext.
    pub plaintext_sha256: String,
    /// Bytes of the file.
    pub file_bytes: u64,
    /// SHA-256 (hex) of the file.
    pub file_sha256: String,
}

/// Writes plaintext into a new sealed file: hashed, zstd-compressed, encrypted, into an
/// atomic file that only appears under its name on [`SealedWriter::finish`] + commit.
pub struct SealedWriter {
    plain: Hashing<
        zstd::stream::write::Encoder<'static, EnvelopeWriter<Hashing<Published<AtomicFile>>>>,
    >,
    path: PathBuf,
}

impl SealedWriter {
    /// Starts `path` (which must not exist) sealed with `key` for `purpose`, zstd `level`.
    pub fn create(
        path: &Path,
        key: &SymmetricKey,
        purpose: Purpose,
        level: i32,
    ) -> Result<SealedWriter, OpsError> {
        let file = AtomicFile::create(path, Ownership::secret_file())?;
        let temp = file.temp_path().to_path_buf();
        SealedWriter::start(
            path,
            &temp,
            Published::alone(file),
            key,
            purpose,
            level,
            true,
        )
    }

    /// Like [`SealedWriter::create`], and also returns a reader of the file as it is being
    /// written (see [`crate::follow`]); open it with [`SealedReader::following`] on another
    /// thread to read the file back while it grows.
    ///
    /// The writer counts the plaintext without hashing it: its SHA-256 is taken once, by the
    /// read-back, from what the file decodes to. That decoding is checked against the
    /// original plaintext by zstd's content checksum, so the two hashes would only ever agree.
    pub fn create_followed(
        path: &Path,
        key: &SymmetricKey,
        purpose: Purpose,
        level: i32,
    ) -> Result<(SealedWriter, Followed), OpsError> {
        let file = AtomicFile::create(path, Ownership::secret_file())?;
        let temp = file.temp_path().to_path_buf();
        let (published, following) =
            follow::follow(file, &temp).map_err(PathError::at(FileAction::Open, &temp))?;
        let writer = SealedWriter::start(path, &temp, published, key, purpose, level, false)?;
        Ok((
            writer,
            Followed {
                following,
                temp_path: temp,
            },
        ))
    }

    /// `file` writes `temp`, the temp file that becomes `path` (errors name `temp`).
    fn start(
        path: &Path,
        temp: &Path,
        file: Published<AtomicFile>,
        key: &SymmetricKey,
        purpose: Purpose,
        level: i32,
        hash_plaintext: bool,
    ) -> Result<SealedWriter, OpsError> {
        let envelope = EnvelopeWriter::new(Hashing::new(file), key, purpose)
            .map_err(|e| PathError::new(FileAction::Write, temp, e))?;
        let mut zstd = zstd::stream::write::Encoder::new(envelope, level)
            .map_err(|e| PathError::new(FileAction::Write, temp, e))?;
        // The frame's content checksum (XXH64 of the plaintext) makes every decoder check that
        // it got back exactly what was compressed.
        zstd.include_checksum(true)
            .map_err(|e| PathError::new(FileAction::Write, temp, e))?;
        Ok(SealedWriter {
            plain: if hash_plaintext {
                Hashing::new(zstd)
            } else {
                Hashing::counting(zstd)
            },
            path: path.to_path_buf(),
        })
    }

    /// Appends plaintext bytes; errors name the file.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), OpsError> {
        self.plain
            .write_all(bytes)
            .map_err(|e| PathError::new(FileAction::Write, &self.path, e).into())
    }

    /// The final path the file will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the zstd frame and the envelope and fsyncs nothing yet: returns the still
    /// uncommitted file and its digests (`plaintext_sha256` empty for a writer made by
    /// [`SealedWriter::create_followed`]). The caller commits it when its manifest allows.
    pub fn finish(self) -> Result<(AtomicFile, Digests), OpsError> {
        let path = self.path;
        let at = |e| OpsError::from(PathError::new(FileAction::Write, &path, e));
        let (zstd, plaintext_bytes, plaintext_sha256) = self.plain.finish();
        let envelope = zstd.finish().map_err(at)?;
        let hashed = envelope.finish().map_err(at)?;
        let (published, file_bytes, file_sha256) = hashed.finish();
        let file = published.complete().map_err(at)?;
        Ok((
            file,
            Digests {
                plaintext_bytes,
                plaintext_sha256,
                file_bytes,
                file_sha256,
            },
        ))
    }
}

impl Write for SealedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.plain.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.plain.flush()
    }
}

/// The file a [`SealedWriter::create_followed`] writer is writing, to be read back while it
/// grows.
#[derive(Debug)]
pub struct Followed {
    following: Following,
    temp_path: PathBuf,
}

/// Reads a sealed file back: every byte authenticated, decompressed and hashed. Read errors
/// are `io::Error`s; turn them into messages with [`SealedReader::error`].
pub struct SealedReader<R: Read = File> {
    plain: Hashing<zstd::stream::read::Decoder<'static, io::BufReader<EnvelopeReader<Hashing<R>>>>>,
    path: PathBuf,
}

impl SealedReader {
    /// Opens `path` and checks its header against `key` (wrong key: exit 77; not a sealed
    /// file: 65).
    pub fn open(path: &Path, key: &SymmetricKey) -> Result<SealedReader, OpsError> {
        SealedReader::open_with(path, key, true)
    }

    /// Like [`SealedReader::open`], counting the plaintext without hashing it (for
    /// [`stream_reader`], which hashes it on another thread).
    pub fn open_counting(path: &Path, key: &SymmetricKey) -> Result<SealedReader, OpsError> {
        SealedReader::open_with(path, key, false)
    }

    /// Like [`SealedReader::open_counting`], advancing `progress` by the sealed bytes read
    /// (whose total the manifest knows).
    pub fn open_counting_with_progress(
        path: &Path,
        key: &SymmetricKey,
        progress: &indicatif::ProgressBar,
    ) -> Result<SealedReader<indicatif::ProgressBarIter<File>>, OpsError> {
        let file = File::open(path).map_err(PathError::at(FileAction::Open, path))?;
        SealedReader::new(progress.wrap_read(file), path, key, false)
    }

    fn open_with(
        path: &Path,
        key: &SymmetricKey,
        hash_plaintext: bool,
    ) -> Result<SealedReader, OpsError> {
        let file = File::open(path).map_err(PathError::at(FileAction::Open, path))?;
        SealedReader::new(file, path, key, hash_plaintext)
    }
}

impl SealedReader<Following> {
    /// Reads back the file `followed` names while it is being written; blocks until its header
    /// is there. The plaintext is counted, not hashed ([`stream_reader`] hashes it).
    pub fn following(
        followed: Followed,
        key: &SymmetricKey,
    ) -> Result<SealedReader<Following>, OpsError> {
        SealedReader::new(followed.following, &followed.temp_path, key, false)
    }
}

impl<R: Read> SealedReader<R> {
    /// Reads the sealed file `inner` reads (`path` names it in messages).
    fn new(
        inner: R,
        path: &Path,
        key: &SymmetricKey,
        hash_plaintext: bool,
    ) -> Result<SealedReader<R>, OpsError> {
        let envelope = EnvelopeReader::open(Hashing::new(inner), key)
            .map_err(|e| OpsError::stream(path, e))?;
        let zstd =
            zstd::stream::read::Decoder::new(envelope).map_err(|e| OpsError::stream(path, e))?;
        Ok(SealedReader {
            plain: if hash_plaintext {
                Hashing::new(zstd)
            } else {
                Hashing::counting(zstd)
            },
            path: path.to_path_buf(),
        })
    }

    /// The path being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Describes a read error: tampering (envelope), a broken zstd stream, or I/O.
    pub fn error(&self, e: io::Error) -> OpsError {
        decode_error(&self.path, e)
    }

    /// After the plaintext was read to its end: checks that the envelope ends exactly where
    /// zstd does, and returns the digests.
    pub fn finish(self) -> Result<Digests, OpsError> {
        let path = self.path;
        let (zstd, plaintext_bytes, plaintext_sha256) = self.plain.finish();
        // zstd stops at the end of its frame; the envelope must end exactly there too (read
        // through zstd's buffer, which may already hold what follows the frame).
        let mut envelope = zstd.finish();
        let mut trailing = [0u8; 1];
        if envelope
            .read(&mut trailing)
            .map_err(|e| OpsError::stream(&path, e))?
            != 0
        {
            return Err(OpsError::new(
                Exit::Data,
                format!("{}: data after the end of the zstd stream", path.display()),
            ));
        }
        let (_, file_bytes, file_sha256) = envelope.into_inner().into_inner().finish();
        Ok(Digests {
            plaintext_bytes,
            plaintext_sha256,
            file_bytes,
            file_sha256,
        })
    }
}

impl<R: Read> Read for SealedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.plain.read(buf)
    }
}

/// Plaintext bytes handed from the decoding thread to the caller at a time.
pub const STREAM_CHUNK: usize = 256 * 1024;

/// Reads a sealed file completely on two threads and hands its plaintext to `on_chunk` in
/// chunks of [`STREAM_CHUNK`] bytes (the last may be shorter): a scoped thread reads, hashes,
/// decrypts and decompresses the file while the caller's thread hashes the plaintext and runs
/// `on_chunk`, so that reading costs about the slower half rather than the sum.
///
/// Every chunk was authenticated before `on_chunk` sees it, but the file as a whole is only
/// known to be complete and unmodified when this returns `Ok`. An error from `on_chunk` stops
/// the decoder and is returned; a decoding error is returned in preference to anything
/// `on_chunk` made of the early end.
pub fn stream(
    path: &Path,
    key: &SymmetricKey,
    on_chunk: impl FnMut(&[u8]) -> Result<(), OpsError>,
) -> Result<Digests, OpsError> {
    stream_reader(SealedReader::open_with(path, key, false)?, on_chunk)
}

/// [`stream`] for a reader already open (one that counts rather than hashes its plaintext).
pub fn stream_reader<R: Read + Send>(
    reader: SealedReader<R>,
    mut on_chunk: impl FnMut(&[u8]) -> Result<(), OpsError>,
) -> Result<Digests, OpsError> {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || decode_chunks(reader, full_tx, empty_rx));
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut consumed = Ok(());
        for chunk in full_rx {
            hash.update(&chunk);
            consumed = on_chunk(&chunk);
            if consumed.is_err() {
                break; // dropping the receiver stops the decoder
            }
            // The decoder may have finished; a closed channel is not an error here.
            let _ = empty_tx.send(chunk);
        }
        let decoded = decoder
            .join()
            .map_err(|_| OpsError::new(Exit::Software, "the decoding thread panicked"))?;
        consumed?;
        let mut digests = decoded?;
        digests.plaintext_sha256 = hex::encode(hash.finish());
        Ok(digests)
    })
}

/// The decoding half of [`stream`]: plaintext chunks sent to `full`, reusing buffers that come
/// back on `empty`. Returns the digests without the plaintext hash.
fn decode_chunks<R: Read>(
    mut reader: SealedReader<R>,
    full: std::sync::mpsc::SyncSender<Vec<u8>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<Digests, OpsError> {
    loop {
        let mut chunk = empty.try_recv().unwrap_or_default();
        chunk.resize(STREAM_CHUNK, 0);
        let mut filled = 0;
        while filled < STREAM_CHUNK {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(reader.error(e)),
            }
        }
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        if full.send(chunk).is_err() {
            // The caller stopped: its error is the one to report.
            return Ok(Digests::default());
        }
    }
    drop(full);
    reader.finish()
}

/// An error while decoding: tampering (envelope), a broken zstd stream, or I/O.
pub fn decode_error(path: &Path, e: io::Error) -> OpsError {
    if EnvelopeError::from_io(&e).is_some() {
        return OpsError::stream(path, e);
    }
    if e.kind() == io::ErrorKind::Other || e.kind() == io::ErrorKind::InvalidData {
        return OpsError::new(
            Exit::Data,
            format!("{}: the compressed stream is corrupt: {e}", path.display()),
        )
        .hint("the file authenticated but does not decompress: it was not written by this tool");
    }
    OpsError::stream(path, e)
}
