//! Step 4 of `backup`: pg_dump's output sealed into the dump's temp file, and read back right
//! behind the writer.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ransomeye_kernel::atomic_file::AtomicFile;
use ransomeye_kernel::envelope::Purpose;

use super::snapshot::Snapshot;
use super::{Job, Sealed};
use crate::backup_set::check;
use crate::db;
use crate::error::{Exit, OpsError};
use crate::pg_tools::{PgTool, Stall, StderrTail};
use crate::sealed::{Digests, SealedReader, SealedWriter};
use crate::utils::progress;

/// Size asked for the pipe from pg_dump.
const PIPE_BYTES: i32 = 1 << 20;
/// Bytes read from pg_dump at a time.
const DUMP_CHUNK: usize = 256 * 1024;

/// A running `pg_dump` whose output streams into the sealed dump file on its own thread, while
/// a second thread reads that file back right behind the writer.
pub(super) struct Dump {
    child: std::process::Child,
    stall: Stall,
    stderr: StderrTail,
    writer: std::thread::JoinHandle<Result<(AtomicFile, Digests), OpsError>>,
    reader: std::thread::JoinHandle<Result<Digests, OpsError>>,
    program: PathBuf,
}

impl Dump {
    /// Step 4: `pg_dump -Fc -Z0 --snapshot` → zstd → envelope (backup key) → temp file.
    /// pg_dump's own compression is off: zstd on our thread is both faster and smaller.
    ///
    /// The read-back of the new backup's dump starts at once: the temp file is read as it grows
    /// (authenticated, decrypted, decompressed, hashed, streamed through `pg_restore --list`),
    /// so that verifying it costs no time after the dump. [`Dump::finish`] holds the writer's
    /// digests against what was read back.
    pub fn start(
        tool: &PgTool,
        pg_restore: &PgTool,
        job: &Job,
        snapshot: &Snapshot,
        path: &Path,
    ) -> Result<Dump, OpsError> {
        let (mut cmd, url) = tool.command_for(&job.database_url)?;
        cmd.args(["--format=custom", "--compress=0", "--no-sync"])
            .arg(format!("--snapshot={}", snapshot.id))
            .arg(format!("--dbname={url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (mut writer, followed) =
            SealedWriter::create_followed(path, &job.backup_key, Purpose::Backup, job.zstd_level)?;
        let mut child = cmd.spawn().map_err(|e| {
            OpsError::new(
                Exit::Unavailable,
                format!("cannot start {}: {e}", tool.path.display()),
            )
        })?;
        let stderr = StderrTail::start(&mut child);
        let stall = Stall::watch(&child, db::timeouts().answer);
        let beat = stall.beat();
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| OpsError::new(Exit::Software, "pg_dump has no stdout"))?;
        // pg_dump writes in 4 KiB stdio blocks; a 1 MiB pipe (Linux's default limit for any
        // user) lets it run ahead instead of waking the writer every 64 KiB, which measurably
        // helps when the cores are saturated (docs/PERFORMANCE.md). Best effort: the default
        // pipe works, only slower.
        if let Err(e) = nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES)) {
            tracing::debug!(error = %e, "cannot enlarge pg_dump's pipe; keeping the default");
        }
        let key = job.backup_key.clone();
        let mut list = pg_restore.command();
        list.arg("--list");
        let reader = std::thread::spawn(move || {
            let reader = SealedReader::following(followed, &key)?;
            check::pipe_sealed(reader, list, Stdio::null(), |_| Ok(()))
        });
        let bar = progress(job.json, "dumping", "bytes");
        let writer = std::thread::spawn(move || {
            let mut buf = vec![0u8; DUMP_CHUNK];
            let mut total = 0u64;
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(OpsError::new(
                            Exit::Io,
                            format!("reading pg_dump's output failed: {e}"),
                        ))
                    }
                };
                beat.touch();
                writer.write_bytes(&buf[..n])?;
                total += n as u64;
                bar.set_position(total);
            }
            bar.finish_and_clear();
            writer.finish()
        });
        Ok(Dump {
            child,
            stall,
            stderr,
            writer,
            reader,
            program: tool.path.clone(),
        })
    }

    /// Waits for pg_dump, the writer and the read-back; a failed dump leaves no file (the temp
    /// file is removed when the uncommitted writer is dropped).
    pub async fn finish(mut self) -> Result<Sealed, OpsError> {
        let written = tokio::task::spawn_blocking(move || {
            let written = self
                .writer
                .join()
                .map_err(|_| OpsError::new(Exit::Software, "the dump writer panicked"));
            if !matches!(written, Ok(Ok(_))) {
                // The writer failed (disk full…): stop pg_dump rather than let it block.
                let _ = self.child.kill();
            }
            // The writer has ended either way (a failed one abandons the file), so the reader
            // ends too.
            let read = self
                .reader
                .join()
                .map_err(|_| OpsError::new(Exit::Software, "the dump read-back panicked"));
            let status = self.child.wait();
            let stalled = self.stall.stop();
            (
                written,
                read,
                status,
                stalled,
                self.stderr.finish(),
                self.program,
            )
        })
        .await
        .map_err(|e| OpsError::new(Exit::Software, format!("dump thread failed: {e}")))?;
        let (written, read, status, stalled, stderr, program) = written;
        if stalled {
            return Err(db::no_answer(
                db::timeouts().answer,
                "dumping the database (pg_dump received nothing and was stopped)",
            ));
        }
        let written = written??;
        let status = status.map_err(|e| {
            OpsError::new(Exit::Software, format!("waiting for pg_dump failed: {e}"))
        })?;
        if !status.success() {
            return Err(OpsError::new(
                Exit::Unavailable,
                format!(
                    "{} failed ({status}): {}",
                    program.display(),
                    if stderr.is_empty() {
                        "no message"
                    } else {
                        &stderr
                    }
                ),
            )
            .hint("no backup was written; fix the cause pg_dump names and rerun"));
        }
        let read = read?.map_err(unreadable)?;
        let (file, mut digests) = written;
        // The writer did not hash the plaintext (see `SealedWriter::create_followed`).
        if (read.file_bytes, &read.file_sha256, read.plaintext_bytes)
            != (
                digests.file_bytes,
                &digests.file_sha256,
                digests.plaintext_bytes,
            )
        {
            return Err(unreadable(OpsError::new(
                Exit::Data,
                format!(
                    "{}: read back {} bytes (SHA-256 {}) decoding to {} bytes, but {} bytes (SHA-256 {}) of {} bytes were written",
                    file.temp_path().display(),
                    read.file_bytes,
                    read.file_sha256,
                    read.plaintext_bytes,
                    digests.file_bytes,
                    digests.file_sha256,
                    digests.plaintext_bytes,
                ),
            )));
        }
        digests.plaintext_sha256 = read.plaintext_sha256;
        Ok(Sealed { file, digests })
    }
}

/// A new file that does not read back as written: nothing was committed.
pub(super) fn unreadable(e: OpsError) -> OpsError {
    e.hint("the new backup did not read back as written and was not kept; older backups are untouched. Check the disk (dmesg) and rerun")
}
