//! The archive directory of a log directory: archive files, their signed index entries, and
//! the streams that write and read them.
//!
//! `archive/<name>.zst.enc` (zstd, then the envelope with the archive key), `.zst` when
//! `[logs] encrypt = false`; a `.gz` is not recompressed: `archive/<name>.gz.enc` or
//! `archive/<name>.gz`. Beside each archive, `<archive>.entry.json`: a signed document
//! ([`crate::signed`]) naming the original (name, size, SHA-256, mtime) and the archive file
//! (size, SHA-256). An archive file without its entry, or an entry without its archive, is
//! never taken for an archive: verification reports both.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::AtomicFile;
use ransomeye_kernel::envelope::{EnvelopeReader, EnvelopeWriter, Purpose};
use ransomeye_kernel::keys::SymmetricKey;
use ransomeye_kernel::{FileAction, PathError};
use serde::{Deserialize, Serialize};

use crate::error::{Exit, OpsError};
use crate::sealed::{decode_error, Hashing};
use crate::signed::Signed;
use crate::trust::TrustKeys;

/// The subdirectory of each log directory that holds its archives.
pub const ARCHIVE_SUBDIR: &str = "archive";
/// Suffix of an index entry's file name, after the archive's name.
pub const ENTRY_SUFFIX: &str = ".entry.json";
/// What the entry documents are called in messages.
pub const ENTRY_WHAT: &str = "log archive index entry";
/// Version of the entry's body.
pub const ENTRY_FORMAT: u32 = 1;
/// zstd level: level 1 is what the reference pipeline (`zstd -1`) uses; logs compress
/// well at any level and archiving runs on busy hosts.
pub const ZSTD_LEVEL: i32 = 1;
/// Bytes per read and write.
const BUF: usize = 256 * 1024;

/// The signed index entry of one archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// [`ENTRY_FORMAT`].
    pub format: u32,
    /// The original file's name in its log directory.
    pub name: String,
    /// The archive file's name in `archive/`.
    pub archive: String,
    /// Bytes of the original.
    pub size: u64,
    /// SHA-256 (hex) of the original.
    pub sha256: String,
    /// The original's mtime, seconds since the epoch (its age for retention).
    pub mtime: i64,
    /// zstd-compressed (false for a `.gz`, stored as it is).
    pub compressed: bool,
    /// In an envelope with the archive key.
    pub encrypted: bool,
    /// Bytes of the archive file.
    pub archive_bytes: u64,
    /// SHA-256 (hex) of the archive file.
    pub archive_sha256: String,
    /// When it was archived (RFC 3339, UTC).
    pub archived_at: String,
}

/// How a log file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Through zstd.
    pub compressed: bool,
    /// Through the envelope.
    pub encrypted: bool,
}

impl Layout {
    /// The layout for the log file `name`: `.gz` files are not recompressed.
    pub fn for_name(name: &str, encrypt: bool) -> Layout {
        Layout {
            compressed: !name.ends_with(".gz"),
            encrypted: encrypt,
        }
    }

    /// The archive file name for `name` (`name` + `.zst` and/or `.enc`).
    pub fn archive_name(&self, name: &str) -> String {
        let mut out = name.to_string();
        if self.compressed {
            out.push_str(".zst");
        }
        if self.encrypted {
            out.push_str(".enc");
        }
        out
    }
}

/// The entry file of the archive at `archive`.
pub fn entry_path(archive: &Path) -> PathBuf {
    let mut name = archive.file_name().unwrap_or_default().to_os_string();
    name.push(ENTRY_SUFFIX);
    archive.with_file_name(name)
}

/// The archive an entry file (or an archive path) names: `FILE` for `FILE.entry.json`.
pub fn archive_path(file: &Path) -> PathBuf {
    match file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(ENTRY_SUFFIX))
    {
        Some(archive) => file.with_file_name(archive),
        None => file.to_path_buf(),
    }
}

/// Reads and checks the signature of the entry of the archive at `archive`; the entry must
/// name that archive.
pub fn read_entry(archive: &Path, trust: &TrustKeys) -> Result<Entry, OpsError> {
    let path = entry_path(archive);
    let signed: Signed<Entry> = Signed::read(&path, ENTRY_WHAT)?;
    signed.verify_signature(trust).map_err(|m| {
        OpsError::new(Exit::Data, format!("{}: {m}", path.display()))
            .hint("the index entry was modified or is not from this installation")
    })?;
    let entry = signed.body;
    let named = archive.file_name().and_then(|n| n.to_str());
    if entry.format != ENTRY_FORMAT || named != Some(entry.archive.as_str()) {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: entry of format {} for archive {:?}, not of this archive",
                path.display(),
                entry.format,
                entry.archive
            ),
        ));
    }
    Ok(entry)
}

/// The encrypting end of a new archive file.
enum Sink {
    Plain(AtomicFile),
    Sealed(Box<EnvelopeWriter<AtomicFile>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(f) => f.write(buf),
            Sink::Sealed(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Sealed(e) => e.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> io::Result<AtomicFile> {
        match self {
            Sink::Plain(f) => Ok(f),
            Sink::Sealed(e) => (*e).finish(),
        }
    }
}

/// The compressing end of a new archive file.
enum Encoder {
    Zstd(zstd::stream::write::Encoder<'static, Sink>),
    Raw(Sink),
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(z) => z.write(buf),
            Encoder::Raw(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(z) => z.flush(),
            Encoder::Raw(s) => s.flush(),
        }
    }
}

impl Encoder {
    fn finish(self) -> io::Result<AtomicFile> {
        match self {
            Encoder::Zstd(z) => z.finish()?.finish(),
            Encoder::Raw(s) => s.finish(),
        }
    }
}

/// The original's bytes as read while writing its archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// Bytes read.
    pub size: u64,
    /// Their SHA-256 (hex).
    pub sha256: String,
}

/// Streams `source` (the original at `source_path`) into a new archive file at `path`, which
/// stays a hidden temp file: returns it fsynced but uncommitted, with what was read.
pub fn write_archive(
    source: &mut impl Read,
    source_path: &Path,
    path: &Path,
    layout: Layout,
    key: Option<&SymmetricKey>,
) -> Result<(AtomicFile, Original), OpsError> {
    let file = AtomicFile::create(path, Ownership::secret_file())?;
    let temp = file.temp_path().to_path_buf();
    let at = |e| OpsError::from(PathError::new(FileAction::Write, &temp, e));
    let sink = match (layout.encrypted, key) {
        (true, Some(key)) => Sink::Sealed(Box::new(
            EnvelopeWriter::new(file, key, Purpose::Archive).map_err(at)?,
        )),
        (true, None) => {
            return Err(OpsError::new(
                Exit::Software,
                "an encrypted archive without a key",
            ))
        }
        (false, _) => Sink::Plain(file),
    };
    let encoder = if layout.compressed {
        let mut z = zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL).map_err(at)?;
        // The frame's content checksum makes every decoder check what it got back.
        z.include_checksum(true).map_err(at)?;
        Encoder::Zstd(z)
    } else {
        Encoder::Raw(sink)
    };
    let mut plain = Hashing::new(encoder);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PathError::new(FileAction::Read, source_path, e).into()),
        };
        plain.write_all(&buf[..n]).map_err(at)?;
    }
    let (encoder, size, sha256) = plain.finish();
    let mut file = encoder.finish().map_err(at)?;
    file.sync()?;
    Ok((file, Original { size, sha256 }))
}

/// What an archive file decoded to, and the file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the original, decoded.
    pub size: u64,
    /// Their SHA-256 (hex).
    pub sha256: String,
    /// Bytes of the archive file.
    pub file_bytes: u64,
    /// SHA-256 (hex) of the archive file.
    pub file_sha256: String,
}

/// The decrypting end of an archive file.
enum Source {
    Plain(Box<Hashing<File>>),
    Sealed(Box<EnvelopeReader<Hashing<File>>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(f) => f.read(buf),
            Source::Sealed(e) => e.read(buf),
        }
    }
}

impl Source {
    fn into_file(self) -> Hashing<File> {
        match self {
            Source::Plain(f) => *f,
            Source::Sealed(e) => (*e).into_inner(),
        }
    }
}

/// Reads the archive file at `path` (stored as `layout`) completely, writing the decoded
/// original to `out`: every byte authenticated (when encrypted) and decompressed. `out_error`
/// turns a failed write into the error to report.
pub fn decode(
    path: &Path,
    layout: Layout,
    key: Option<&SymmetricKey>,
    out: &mut impl Write,
    out_error: impl Fn(io::Error) -> OpsError,
) -> Result<Decoded, OpsError> {
    let file = File::open(path).map_err(PathError::at(FileAction::Open, path))?;
    let file = Hashing::new(file);
    let source = match (layout.encrypted, key) {
        (true, Some(key)) => Source::Sealed(Box::new(
            EnvelopeReader::open(file, key).map_err(|e| OpsError::stream(path, e))?,
        )),
        (true, None) => {
            return Err(OpsError::new(
                Exit::Software,
                "an encrypted archive without a key",
            ))
        }
        (false, _) => Source::Plain(Box::new(file)),
    };
    let mut buf = vec![0u8; BUF];
    let (size, sha256, source) = if layout.compressed {
        let z = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF, source))
            .map_err(|e| decode_error(path, e))?;
        let mut plain = Hashing::new(z);
        pump(&mut plain, out, &mut buf, path, &out_error)?;
        let (z, size, sha256) = plain.finish();
        // What zstd read ahead and did not need is still in the buffer: count it as trailing.
        let reader = z.finish();
        if !reader.buffer().is_empty() {
            return Err(trailing(path));
        }
        (size, sha256, reader.into_inner())
    } else {
        let mut plain = Hashing::new(source);
        pump(&mut plain, out, &mut buf, path, &out_error)?;
        let (source, size, sha256) = plain.finish();
        (size, sha256, source)
    };
    // The envelope (or the plain file) must end where the decoded stream does.
    let mut file = source.into_file();
    match file.read(&mut buf) {
        Ok(0) => {}
        Ok(_) => return Err(trailing(path)),
        Err(e) => return Err(PathError::new(FileAction::Read, path, e).into()),
    }
    let (_, file_bytes, file_sha256) = file.finish();
    Ok(Decoded {
        size,
        sha256,
        file_bytes,
        file_sha256,
    })
}

fn trailing(path: &Path) -> OpsError {
    OpsError::new(
        Exit::Data,
        format!(
            "{}: data after the end of the archived stream",
            path.display()
        ),
    )
}

fn pump(
    input: &mut impl Read,
    out: &mut impl Write,
    buf: &mut [u8],
    path: &Path,
    out_error: &impl Fn(io::Error) -> OpsError,
) -> Result<(), OpsError> {
    loop {
        let n = match input.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(decode_error(path, e)),
        };
        out.write_all(&buf[..n]).map_err(out_error)?;
    }
}

/// Checks `decoded` (a full read of the archive at `archive`) against its entry; the error
/// names what differs.
pub fn check(archive: &Path, entry: &Entry, decoded: &Decoded) -> Result<(), OpsError> {
    let mismatch = |what: String| {
        Err(
            OpsError::new(Exit::Data, format!("{}: {what}", archive.display()))
                .hint("the archive is damaged or was replaced: do not trust it; use another copy"),
        )
    };
    if decoded.file_bytes != entry.archive_bytes || decoded.file_sha256 != entry.archive_sha256 {
        return mismatch(format!(
            "the archive file ({} bytes, SHA-256 {}) is not the one indexed ({} bytes, SHA-256 {})",
            decoded.file_bytes, decoded.file_sha256, entry.archive_bytes, entry.archive_sha256
        ));
    }
    if decoded.size != entry.size || decoded.sha256 != entry.sha256 {
        return mismatch(format!(
            "decodes to {} bytes with SHA-256 {}, but {} had {} bytes with SHA-256 {}",
            decoded.size, decoded.sha256, entry.name, entry.size, entry.sha256
        ));
    }
    Ok(())
}

/// The layout an entry records.
pub fn layout_of(entry: &Entry) -> Layout {
    Layout {
        compressed: entry.compressed,
        encrypted: entry.encrypted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ransomeye_kernel::keys::KeyPurpose;

    fn key() -> SymmetricKey {
        SymmetricKey::from_bytes(KeyPurpose::Archive, [7; 32])
    }

    fn roundtrip(layout: Layout, data: &[u8]) -> (Original, Decoded, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(layout.archive_name("a.log.1"));
        let key = key();
        let (file, original) = write_archive(
            &mut &data[..],
            Path::new("a.log.1"),
            &path,
            layout,
            Some(&key),
        )
        .expect("write");
        file.commit().expect("commit");
        let mut out = Vec::new();
        let decoded = decode(&path, layout, Some(&key), &mut out, |e| {
            OpsError::io("out", &e)
        })
        .expect("decode");
        assert_eq!(out, data);
        (original, decoded, path, dir)
    }

    #[test]
    fn every_layout_decodes_to_the_original_bytes_and_hashes() {
        let data: Vec<u8> = (0..600_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for compressed in [true, false] {
            for encrypted in [true, false] {
                let layout = Layout {
                    compressed,
                    encrypted,
                };
                let (original, decoded, path, _dir) = roundtrip(layout, &data);
                assert_eq!(original.size, data.len() as u64);
                assert_eq!(decoded.size, original.size);
                assert_eq!(decoded.sha256, original.sha256);
                let file = std::fs::read(&path).expect("read");
                assert_eq!(decoded.file_bytes, file.len() as u64);
                assert_eq!(
                    decoded.file_sha256,
                    hex::encode(ring::digest::digest(&ring::digest::SHA256, &file))
                );
            }
        }
    }

    #[test]
    fn a_flipped_byte_or_trailing_data_fails_to_decode_in_every_compressed_or_sealed_layout() {
        let data = b"line one\nline two\n".repeat(5000);
        for (compressed, encrypted) in [(true, true), (true, false), (false, true)] {
            let layout = Layout {
                compressed,
                encrypted,
            };
            let (_, _, path, _dir) = roundtrip(layout, &data);
            let good = std::fs::read(&path).expect("read");
            for damaged in [
                {
                    let mut b = good.clone();
                    let mid = b.len() / 2;
                    b[mid] ^= 0x10;
                    b
                },
                {
                    let mut b = good.clone();
                    b.push(0);
                    b
                },
            ] {
                std::fs::write(&path, &damaged).expect("write");
                let result = decode(&path, layout, Some(&key()), &mut io::sink(), |e| {
                    OpsError::io("out", &e)
                });
                assert!(
                    matches!(&result, Err(e) if e.exit == Exit::Data),
                    "{layout:?}: {:?}",
                    result.map(|_| ())
                );
            }
        }
    }

    #[test]
    fn names_follow_the_layout() {
        assert_eq!(
            Layout::for_name("a.log.1", true).archive_name("a.log.1"),
            "a.log.1.zst.enc"
        );
        assert_eq!(
            Layout::for_name("a.log.1", false).archive_name("a.log.1"),
            "a.log.1.zst"
        );
        assert_eq!(
            Layout::for_name("a.log.2.gz", true).archive_name("a.log.2.gz"),
            "a.log.2.gz.enc"
        );
        assert_eq!(
            Layout::for_name("a.log.2.gz", false).archive_name("a.log.2.gz"),
            "a.log.2.gz"
        );
        let archive = Path::new("/x/archive/a.log.1.zst.enc");
        assert_eq!(
            entry_path(archive),
            Path::new("/x/archive/a.log.1.zst.enc.entry.json")
        );
        assert_eq!(archive_path(&entry_path(archive)), archive);
        assert_eq!(archive_path(archive), archive);
    }
}
