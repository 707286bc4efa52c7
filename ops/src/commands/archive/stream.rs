//! The archive file's byte pipeline, both ways:
//! JSON Lines → zstd → envelope (archive key) → atomic file, and back.
//!
//! Both directions hash what passes (SHA-256 of the JSON Lines and of the file) so that the
//! manifest can record, and verification can check, exactly what was written.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::AtomicFile;
use ransomeye_kernel::envelope::{EnvelopeReader, EnvelopeWriter, Purpose};
use ransomeye_kernel::keys::SymmetricKey;
use ransomeye_kernel::{FileAction, PathError};
use ring::digest;

use crate::error::OpsError;

/// Counts and hashes bytes passing through a writer or reader.
pub struct Hashing<T> {
    inner: T,
    hash: digest::Context,
    bytes: u64,
}

impl<T> Hashing<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Hashing {
            inner,
            hash: digest::Context::new(&digest::SHA256),
            bytes: 0,
        }
    }

    /// The inner value, the byte count and the hex SHA-256 of what passed.
    pub fn finish(self) -> (T, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hash.finish()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Sizes and digests of a finished archive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Bytes of JSON Lines.
    pub plaintext_bytes: u64,
    /// SHA-256 (hex) of the JSON Lines.
    pub plaintext_sha256: String,
    /// Bytes of the file.
    pub file_bytes: u64,
    /// SHA-256 (hex) of the file.
    pub file_sha256: String,
}

/// Writes JSON Lines into a new archive file: hashed, zstd-compressed, encrypted, into an
/// atomic file that only appears under its name on [`ArchiveWriter::finish`] + commit.
pub struct ArchiveWriter {
    plain: Hashing<zstd::stream::write::Encoder<'static, EnvelopeWriter<Hashing<AtomicFile>>>>,
    path: PathBuf,
}

impl ArchiveWriter {
    /// Starts `path` (which must not exist) with the archive key and zstd `level`.
    pub fn create(path: &Path, key: &SymmetricKey, level: i32) -> Result<ArchiveWriter, OpsError> {
        let file = AtomicFile::create(path, Ownership::secret_file())?;
        let temp = file.temp_path().to_path_buf();
        let envelope = EnvelopeWriter::new(Hashing::new(file), key, Purpose::Archive)
            .map_err(|e| PathError::new(FileAction::Write, &temp, e))?;
        let zstd = zstd::stream::write::Encoder::new(envelope, level)
            .map_err(|e| PathError::new(FileAction::Write, &temp, e))?;
        Ok(ArchiveWriter {
            plain: Hashing::new(zstd),
            path: path.to_path_buf(),
        })
    }

    /// Appends JSON Lines bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), OpsError> {
        self.plain
            .write_all(bytes)
            .map_err(|e| PathError::new(FileAction::Write, &self.path, e).into())
    }

    /// Ends the zstd frame and the envelope and fsyncs nothing yet: returns the still
    /// uncommitted file and its digests. The caller commits it (after writing the manifest).
    pub fn finish(self) -> Result<(AtomicFile, Digests), OpsError> {
        let path = self.path;
        let at = |e| OpsError::from(PathError::new(FileAction::Write, &path, e));
        let (zstd, plaintext_bytes, plaintext_sha256) = self.plain.finish();
        let envelope = zstd.finish().map_err(at)?;
        let hashed = envelope.finish().map_err(at)?;
        let (file, file_bytes, file_sha256) = hashed.finish();
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

/// Reads an archive file back in full: every byte authenticated, decompressed, hashed; calls
/// `on_line` for each JSON line (without its newline). Returns the digests and the row count.
pub fn read_back(
    path: &Path,
    key: &SymmetricKey,
    mut on_line: impl FnMut(&[u8]) -> Result<(), OpsError>,
) -> Result<(Digests, u64), OpsError> {
    let file = File::open(path).map_err(PathError::at(FileAction::Open, path))?;
    let mut hashed_file = Hashing::new(file);
    let envelope =
        EnvelopeReader::open(&mut hashed_file, key).map_err(|e| OpsError::stream(path, e))?;
    let zstd = zstd::stream::read::Decoder::new(envelope).map_err(|e| OpsError::stream(path, e))?;
    let mut plain = BufReader::with_capacity(256 * 1024, Hashing::new(zstd));
    let mut line = Vec::with_capacity(4096);
    let mut rows = 0u64;
    loop {
        line.clear();
        let n = plain
            .read_until(b'\n', &mut line)
            .map_err(|e| decode_error(path, e))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            return Err(OpsError::new(
                crate::error::Exit::Data,
                format!(
                    "{}: the last JSON line has no newline: the archive is incomplete",
                    path.display()
                ),
            ));
        }
        rows += 1;
        on_line(&line[..line.len() - 1])?;
    }
    let (zstd, plaintext_bytes, plaintext_sha256) = plain.into_inner().finish();
    // zstd stops at the end of its frames; the envelope must end exactly there too.
    let mut envelope = zstd.finish();
    let mut trailing = [0u8; 1];
    if envelope
        .read(&mut trailing)
        .map_err(|e| OpsError::stream(path, e))?
        != 0
    {
        return Err(OpsError::new(
            crate::error::Exit::Data,
            format!("{}: data after the end of the zstd stream", path.display()),
        ));
    }
    drop(envelope);
    let (_, file_bytes, file_sha256) = hashed_file.finish();
    Ok((
        Digests {
            plaintext_bytes,
            plaintext_sha256,
            file_bytes,
            file_sha256,
        },
        rows,
    ))
}

/// An error while decoding: tampering (envelope), a broken zstd stream, or I/O.
fn decode_error(path: &Path, e: io::Error) -> OpsError {
    if ransomeye_kernel::envelope::EnvelopeError::from_io(&e).is_some() {
        return OpsError::stream(path, e);
    }
    if e.kind() == io::ErrorKind::Other || e.kind() == io::ErrorKind::InvalidData {
        return OpsError::new(
            crate::error::Exit::Data,
            format!("{}: the compressed stream is corrupt: {e}", path.display()),
        )
        .hint("the file authenticated but does not decompress: it was not written by this tool");
    }
    OpsError::stream(path, e)
}
