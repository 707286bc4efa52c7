//! Reading an archive back as JSON lines (archives are [`crate::sealed`] files of JSON Lines).

use std::path::Path;

use ransomeye_kernel::keys::SymmetricKey;

use crate::error::{Exit, OpsError};
use crate::sealed::{self, Digests};

/// Reads an archive file back in full: every byte authenticated, decompressed, hashed; calls
/// `on_line` for each JSON line (without its newline). Returns the digests and the row count.
/// Decoding and line splitting run on two threads ([`sealed::stream`]).
pub fn read_back(
    path: &Path,
    key: &SymmetricKey,
    mut on_line: impl FnMut(&[u8]) -> Result<(), OpsError>,
) -> Result<(Digests, u64), OpsError> {
    let mut rows = 0u64;
    // A line split across chunks is gathered here.
    let mut partial = Vec::new();
    let digests = sealed::stream(path, key, |chunk| {
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            rows += 1;
            if partial.is_empty() {
                on_line(&chunk[start..end])?;
            } else {
                partial.extend_from_slice(&chunk[start..end]);
                on_line(&partial)?;
                partial.clear();
            }
            start = end + 1;
        }
        partial.extend_from_slice(&chunk[start..]);
        Ok(())
    })?;
    if !partial.is_empty() {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: the last JSON line has no newline: the archive is incomplete",
                path.display()
            ),
        ));
    }
    Ok((digests, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed::SealedWriter;
    use ransomeye_kernel::envelope::Purpose;
    use ransomeye_kernel::keys::KeyPurpose;
    use ring::digest;
    use std::path::PathBuf;

    fn key() -> SymmetricKey {
        SymmetricKey::from_bytes(KeyPurpose::Archive, [7u8; 32])
    }

    fn write_archive(dir: &Path, plaintext: &[u8]) -> PathBuf {
        let path = dir.join("a.zst.enc");
        let mut writer = SealedWriter::create(&path, &key(), Purpose::Archive, 3).expect("create");
        writer.write_bytes(plaintext).expect("write");
        let (file, _) = writer.finish().expect("finish");
        file.commit().expect("commit");
        path
    }

    #[test]
    fn lines_spanning_chunks_come_back_whole_and_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Lines longer than a read chunk, and many short ones, so lines cross chunk borders.
        let long = "x".repeat(sealed::STREAM_CHUNK + 17);
        let mut plaintext = String::new();
        for i in 0..50_000 {
            plaintext.push_str(&format!("{{\"id\":{i}}}\n"));
            if i % 10_000 == 0 {
                plaintext.push_str(&format!("{{\"id\":{i},\"s\":\"{long}\"}}\n"));
            }
        }
        let path = write_archive(dir.path(), plaintext.as_bytes());
        let mut lines = Vec::new();
        let (digests, rows) = read_back(&path, &key(), |line| {
            lines.push(String::from_utf8_lossy(line).into_owned());
            Ok(())
        })
        .expect("read back");
        assert_eq!(rows, 50_005);
        assert_eq!(lines.join("\n") + "\n", plaintext);
        assert_eq!(digests.plaintext_bytes, plaintext.len() as u64);
        assert_eq!(
            digests.plaintext_sha256,
            hex::encode(digest::digest(&digest::SHA256, plaintext.as_bytes()))
        );
        let file = std::fs::read(&path).expect("read");
        assert_eq!(digests.file_bytes, file.len() as u64);
        assert_eq!(
            digests.file_sha256,
            hex::encode(digest::digest(&digest::SHA256, &file))
        );
    }

    #[test]
    fn a_callers_error_stops_the_read_and_is_the_one_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plaintext = "{\"id\":1}\n".repeat(200_000);
        let path = write_archive(dir.path(), plaintext.as_bytes());
        let mut seen = 0;
        let err = read_back(&path, &key(), |_| {
            seen += 1;
            if seen == 3 {
                Err(OpsError::new(Exit::Software, "caller gave up"))
            } else {
                Ok(())
            }
        })
        .expect_err("must fail");
        assert_eq!(seen, 3);
        assert!(err.to_string().contains("caller gave up"), "{err}");
    }

    #[test]
    fn a_missing_final_newline_is_reported_as_incomplete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_archive(dir.path(), b"{\"id\":1}\n{\"id\":2}");
        let err = read_back(&path, &key(), |_| Ok(())).expect_err("must fail");
        assert!(err.to_string().contains("no newline"), "{err}");
    }

    #[test]
    fn a_corrupt_file_reports_the_decoding_error_not_a_short_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plaintext = "{\"id\":1,\"pad\":\"abcdefghij\"}\n".repeat(100_000);
        let path = write_archive(dir.path(), plaintext.as_bytes());
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes.len() - 100;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let err = read_back(&path, &key(), |_| Ok(())).expect_err("must fail");
        assert_eq!(err.exit, Exit::Data, "{err}");
        assert!(!err.to_string().contains("no newline"), "{err}");
    }
}
