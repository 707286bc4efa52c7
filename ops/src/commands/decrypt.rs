//! `decrypt`: any envelope file the tool wrote, back to its exact plaintext.
//!
//! Procedure: read the header → pick the key by purpose and key id → stream-decrypt, verifying
//! every segment → write to stdout, or to OUT through an atomic file that only appears once the
//! whole input verified.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::AtomicFile;
use ransomeye_kernel::envelope::{EnvelopeReader, Header};
use ransomeye_kernel::keys::KeyDir;
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use super::{say, Context};
use crate::cli::DecryptArgs;
use crate::error::{Exit, OpsError};
use crate::utils::{print_json, stdout_error, stdout_is_terminal};

/// Bytes per read: room for whole sealed segments, so the reader decrypts in place here.
const COPY_BUF: usize = 256 * 1024;

/// Runs `decrypt`.
pub fn run(ctx: &Context, args: &DecryptArgs) -> Result<(), OpsError> {
    // `-o -` is stdout, as for most Unix tools.
    let output = args.output.as_deref().filter(|o| *o != Path::new("-"));
    if output.is_none() && ctx.json {
        return Err(OpsError::new(
            Exit::Usage,
            "--json needs -o OUT: without it stdout carries the plaintext",
        )
        .hint("add -o OUT for a JSON report, or drop --json"));
    }
    if output.is_none() && stdout_is_terminal() {
        return Err(OpsError::new(
            Exit::Usage,
            "refusing to write binary plaintext to a terminal",
        )
        .hint("redirect stdout (e.g. `| zstd -d`) or use -o OUT"));
    }
    let config = ctx.config()?;
    let file = &args.file;
    // Unbuffered: the header is read exactly, and each read below holds whole segments, which the
    // envelope reader then decrypts in place in our buffer.
    let mut input = File::open(file).map_err(PathError::at(FileAction::Open, file))?;
    let header = Header::read_from(&mut input).map_err(|e| OpsError::stream(file, e))?;
    let (purpose, key_id) = (header.purpose, header.key_id);
    let key = KeyDir::new(&config.keys.dir).load_symmetric(header.purpose.key_purpose())?;
    let mut plaintext = EnvelopeReader::with_header(input, header, &key)
        .map_err(|e| OpsError::envelope(file, &e))?;

    let written = match output {
        Some(out) => {
            let mut target = AtomicFile::create(out, Ownership::secret_file())?;
            let n = copy(&mut plaintext, &mut target, file, Some(out))?;
            target.commit()?;
            n
        }
        None => {
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            let n = copy(&mut plaintext, &mut lock, file, None)?;
            lock.flush().map_err(stdout_error)?;
            n
        }
    };
    tracing::info!(file = %file.display(), bytes = written, "decrypted and verified");
    if let Some(out) = output {
        let report = DecryptReport {
            file: file.clone(),
            output: out.to_path_buf(),
            purpose: purpose.to_string(),
            key_id: key_id.to_string(),
            plaintext_bytes: written,
        };
        if ctx.json {
            print_json(&report)?;
        } else {
            say!(
                ctx,
                "decrypted {} ({} envelope, key {}): {} bytes verified and written to {}",
                file.display(),
                report.purpose,
                report.key_id,
                written,
                out.display()
            );
        }
    }
    Ok(())
}

/// What `decrypt -o` reports.
#[derive(Debug, Serialize)]
struct DecryptReport {
    file: PathBuf,
    output: PathBuf,
    purpose: String,
    key_id: String,
    plaintext_bytes: u64,
}

/// Copies verified plaintext to `out`, telling input failures (tampering) from output failures.
fn copy(
    input: &mut impl Read,
    out: &mut impl Write,
    input_path: &std::path::Path,
    out_path: Option<&std::path::Path>,
) -> Result<u64, OpsError> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OpsError::stream(input_path, e)),
        };
        out.write_all(&buf[..n]).map_err(|e| match out_path {
            Some(path) => OpsError::from(PathError::new(FileAction::Write, path, e)),
            None => stdout_error(e),
        })?;
        total += n as u64;
    }
}
