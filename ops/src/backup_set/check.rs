//! Checking backups: the quick check (manifest signature, files present with their sizes),
//! the full verification `verify`, `restore` and `drill` share, and the pieces `backup` runs
//! on its new backup while writing it.
//!
//! Full verification reads every byte: the manifest signature; size and SHA-256 of both files;
//! a complete authenticated decrypt and decompress of each; the dump streamed through
//! `pg_restore --list` (no plaintext on disk); every tar entry hashed against the manifest;
//! the intel graph export checked for integrity and against the manifest's digest; entries
//! stored in older backups present in those backups' manifests. `backup` runs the same checks
//! on the read-back of its temp files ([`pipe_sealed`], [`check_bundle`]; the fresh graph
//! export by hash, [`GraphCheck::Hash`]) and, once committed, [`committed`].

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ransomeye_kernel::keys::SymmetricKey;

use super::bundle;
use super::manifest::{self, Entry, Kind, Manifest, Paths, SealedFile};
use crate::error::{Exit, OpsError};
use crate::pg_tools::{parse_major, PgTool, StderrTail};
use crate::sealed::{stream_reader, Digests, SealedReader};

/// Where to find pg_restore.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    bin_dir: Option<PathBuf>,
}

impl Tools {
    /// `[backup] pg_bin_dir`, if set.
    pub fn new(bin_dir: Option<PathBuf>) -> Tools {
        Tools { bin_dir }
    }

    /// A pg_restore that can read a dump written by `pg_dump_version`.
    pub fn pg_restore(&self, pg_dump_version: &str) -> Result<PgTool, OpsError> {
        let major = parse_major(pg_dump_version).unwrap_or(0);
        PgTool::find("pg_restore", major, self.bin_dir.as_deref())
    }
}

/// The backup an argument names: a path to any of its files, or a bare name looked up in the
/// backup directory. Exit 66 when there is no such manifest.
pub fn locate(arg: &Path, dir: &Path) -> Result<Paths, OpsError> {
    let paths = if arg.components().count() == 1 {
        arg.to_str()
            .map(|s| manifest::backup_name(s).unwrap_or(s))
            .filter(|name| manifest::is_backup_name(name))
            .map(|name| Paths::new(dir, name))
    } else {
        Paths::of(arg)
    };
    let Some(paths) = paths else {
        return Err(OpsError::new(
            Exit::Usage,
            format!(
                "{} is not a backup (ransomeye_<YYYYMMDDTHHMMSSZ>[.enc|.files.enc|.manifest.json])",
                arg.display()
            ),
        )
        .hint("`ransomeye-ops backup list` shows the backups"));
    };
    if !paths.manifest.exists() {
        let orphans: Vec<String> = [&paths.dump, &paths.files]
            .into_iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if !orphans.is_empty() {
            let dir = paths.manifest.parent().unwrap_or(Path::new("."));
            return Err(manifest::orphans_error(dir, &orphans));
        }
        return Err(OpsError::new(
            Exit::NoInput,
            format!(
                "backup manifest {} does not exist",
                paths.manifest.display()
            ),
        )
        .hint("`ransomeye-ops backup list` shows the backups"));
    }
    Ok(paths)
}

/// The quick check: the manifest parses and its signature verifies against the trust key, and
/// both files exist with the sizes it records.
pub fn quick(paths: &Paths, trust_keys: &crate::trust::TrustKeys) -> Result<Manifest, OpsError> {
    let m = manifest::read(paths)?;
    m.verify_signature(trust_keys).map_err(|why| {
        OpsError::new(Exit::Data, format!("{}: {why}", paths.manifest.display()))
            .hint("do not trust this backup; use another one")
    })?;
    for (path, expected) in [(&paths.dump, &m.body.dump), (&paths.files, &m.body.files)] {
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() == expected.bytes => {}
            Ok(meta) => {
                return Err(OpsError::new(
                    Exit::Data,
                    format!(
                        "{}: {} bytes, the manifest says {}: the file is truncated or was replaced",
                        path.display(),
                        meta.len(),
                        expected.bytes
                    ),
                ))
            }
            Err(e) => {
                return Err(OpsError::new(
                    Exit::Data,
                    format!("{}: {e}: the backup is incomplete", path.display()),
                ))
            }
        }
    }
    Ok(m)
}

/// The check of a backup that was read back in full while it was written (see
/// `backup`): the quick check, then every file under its final name hashed again, so that the
/// bytes committed are known to be the bytes that were read back.
pub fn committed(
    paths: &Paths,
    trust_keys: &crate::trust::TrustKeys,
) -> Result<Manifest, OpsError> {
    let m = quick(paths, trust_keys)?;
    for (path, expected) in [(&paths.dump, &m.body.dump), (&paths.files, &m.body.files)] {
        let (bytes, sha256) = bundle::hash_file(path)?;
        compare_file(path, expected, bytes, &sha256)?;
    }
    Ok(m)
}

/// A file's size and SHA-256 must be the manifest's.
fn compare_file(
    path: &Path,
    expected: &SealedFile,
    bytes: u64,
    sha256: &str,
) -> Result<(), OpsError> {
    if bytes != expected.bytes || sha256 != expected.sha256 {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: {bytes} bytes with SHA-256 {sha256}, the manifest says {} bytes, {}",
                path.display(),
                expected.bytes,
                expected.sha256
            ),
        ));
    }
    Ok(())
}

/// A sealed file's digests must be the manifest's.
pub fn compare_sealed(path: &Path, expected: &SealedFile, got: &Digests) -> Result<(), OpsError> {
    compare_file(path, expected, got.file_bytes, &got.file_sha256)?;
    if got.plaintext_bytes != expected.plaintext_bytes
        || got.plaintext_sha256 != expected.plaintext_sha256
    {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: decrypted contents differ from the manifest",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Full verification of one backup (see the module comment). Returns its manifest.
pub fn verify(
    paths: &Paths,
    key: &SymmetricKey,
    trust_keys: &crate::trust::TrustKeys,
    tools: &Tools,
) -> Result<Manifest, OpsError> {
    let m = quick(paths, trust_keys)?;
    check_key(paths, &m, key)?;
    let pg_restore = tools.pg_restore(&m.body.pg_dump_version)?;
    let mut list = pg_restore.command();
    list.arg("--list");
    // The bundle is read beside the dump, which takes most of the time.
    std::thread::scope(|scope| {
        let bundle = scope.spawn(|| verify_bundle(paths, &m, key, trust_keys));
        let hidden = indicatif::ProgressBar::hidden();
        let dump = pipe_dump(paths, &m, key, list, Stdio::null(), || Ok(()), &hidden);
        let bundle = bundle
            .join()
            .map_err(|_| OpsError::new(Exit::Software, "the bundle check panicked"))?;
        dump.and(bundle)
    })?;
    Ok(m)
}

/// The backup key must be the one the backup was made with (77 otherwise).
pub fn check_key(paths: &Paths, m: &Manifest, key: &SymmetricKey) -> Result<(), OpsError> {
    if m.body.backup_key_id != key.id().to_string() {
        return Err(OpsError::new(
            Exit::NoPerm,
            format!(
                "{}: encrypted with backup key {}, but the backup key is {}",
                paths.name,
                m.body.backup_key_id,
                key.id()
            ),
        )
        .hint("restore the backup key this backup was made with into [keys] dir"));
    }
    Ok(())
}

/// Streams the decrypted dump into `cmd` (a pg_restore reading stdin) while checking it
/// against the manifest. The last chunk of the dump is held back until the whole file has been
/// authenticated and its digests matched the manifest: pg_restore cannot finish (nor, with
/// `--single-transaction`, commit) before it has the last byte, so a damaged or truncated dump
/// never gets restored. On any failure pg_restore is killed before it sees the end of its input.
///
/// `release` runs once the dump checked out, before the last chunk is fed: a failure there
/// (e.g. the bundle, verified meanwhile on another thread, is damaged) also kills pg_restore.
/// `progress` advances by the dump file's bytes read, out of `m`'s total.
pub fn pipe_dump(
    paths: &Paths,
    m: &Manifest,
    key: &SymmetricKey,
    cmd: Command,
    stdout: Stdio,
    release: impl FnOnce() -> Result<(), OpsError>,
    progress: &indicatif::ProgressBar,
) -> Result<(), OpsError> {
    crate::utils::set_total(progress, m.body.dump.bytes);
    let reader = SealedReader::open_counting_with_progress(&paths.dump, key, progress)?;
    pipe_sealed(reader, cmd, stdout, |digests| {
        compare_sealed(&paths.dump, &m.body.dump, digests).and_then(|()| release())
    })
    .map(drop)
}

/// Streams the plaintext of `reader` into `cmd`'s stdin, holding back the last chunk until
/// the whole file was read, authenticated and `accept` approved its digests; on any failure
/// `cmd` is killed before it sees the end of its input. Fails when `cmd` fails. Returns the
/// digests.
pub fn pipe_sealed<R: Read + Send>(
    reader: SealedReader<R>,
    mut cmd: Command,
    stdout: Stdio,
    accept: impl FnOnce(&Digests) -> Result<(), OpsError>,
) -> Result<Digests, OpsError> {
    let shown = reader.path().to_path_buf();
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| OpsError::new(Exit::Unavailable, format!("cannot start {program}: {e}")))?;
    let stderr = StderrTail::start(&mut child);
    // pg_restore may stop reading before the end (`--list` reads only the table of contents);
    // the rest is still read, authenticated and hashed.
    let mut stdin = child.stdin.take();
    let feed = |stdin: &mut Option<std::process::ChildStdin>, bytes: &[u8]| {
        if let Some(pipe) = stdin.as_mut() {
            if pipe.write_all(bytes).is_err() {
                *stdin = None;
            }
        }
    };
    let mut held: Vec<u8> = Vec::new();
    let checked = stream_reader(reader, |chunk| {
        feed(&mut stdin, &held);
        held.clear();
        // Once the command stopped reading, nothing needs holding back.
        if stdin.is_some() {
            held.extend_from_slice(chunk);
        }
        Ok(())
    })
    .and_then(|digests| accept(&digests).map(|()| digests));
    match checked {
        Ok(_) => feed(&mut stdin, &held),
        // Damaged: pg_restore must die before it sees the end of its input.
        Err(_) => {
            let _ = child.kill();
        }
    }
    drop(stdin);
    let status = child.wait();
    let message = stderr.finish();
    let digests = checked?;
    let status = status
        .map_err(|e| OpsError::new(Exit::Software, format!("waiting for {program} failed: {e}")))?;
    if !status.success() {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: {program} failed ({status}): {}",
                shown.display(),
                if message.is_empty() {
                    "no message"
                } else {
                    &message
                }
            ),
        ));
    }
    Ok(digests)
}

/// What a backup's bundle must hold: from its manifest, or from the run that is writing it.
#[derive(Debug, Clone, Copy)]
pub struct BundleSpec<'a> {
    /// The backup's name (entries stored in it are in this bundle).
    pub name: &'a str,
    /// The bundle file's sizes and digests.
    pub file: &'a SealedFile,
    /// The intel graph export's digest.
    pub intel: &'a ransomeye_intel::GraphDigest,
    /// Every file entry of the backup, stored here or in an older backup.
    pub entries: &'a [Entry],
}

impl<'a> BundleSpec<'a> {
    /// The bundle a manifest describes.
    pub fn of(m: &'a Manifest) -> BundleSpec<'a> {
        BundleSpec {
            name: &m.body.name,
            file: &m.body.files,
            intel: &m.body.intel,
            entries: &m.body.entries,
        }
    }
}

/// Reads the whole bundle of a backup: tar entries against the manifest, the intel export
/// checked.
pub fn verify_bundle(
    paths: &Paths,
    m: &Manifest,
    key: &SymmetricKey,
    trust_keys: &crate::trust::TrustKeys,
) -> Result<(), OpsError> {
    let dir = paths.manifest.parent().unwrap_or(Path::new("."));
    check_bundle(
        &paths.files,
        dir,
        &BundleSpec::of(m),
        GraphCheck::Parse,
        key,
        trust_keys,
    )
}

/// How a bundle's intel graph export is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphCheck {
    /// Every record parsed against the export's integrity rules (header, order, no dangling
    /// edge, end record and counts), and the digest computed: what `verify`, `restore` and
    /// `drill` do, since the bundle may be years old.
    Parse,
    /// Size and SHA-256 against the digest only: for the bundle `backup` has just written, whose
    /// export the exporter produced from the snapshot a moment ago, enforcing the same rules
    /// as it wrote (ids in order; foreign keys rule out dangling edges).
    Hash,
}

/// Reads the whole bundle file at `path` (of a backup in `dir`) against `spec`: every tar
/// entry hashed against its entry, the intel export checked as `graph` says and against the
/// digest, entries stored in older backups present in those backups' manifests.
pub fn check_bundle(
    path: &Path,
    dir: &Path,
    spec: &BundleSpec<'_>,
    graph: GraphCheck,
    key: &SymmetricKey,
    trust_keys: &crate::trust::TrustKeys,
) -> Result<(), OpsError> {
    let mut reader = SealedReader::open(path, key)?;
    let mut intel = None;
    let seen = bundle::read(path, &mut reader, |entry, contents| {
        if entry == bundle::INTEL_PATH && graph == GraphCheck::Parse {
            intel = Some(
                ransomeye_intel::check(io::BufReader::new(contents))
                    .map_err(|e| OpsError::intel(e, &format!("{}: {entry}", path.display())))?,
            );
        }
        Ok(())
    })?;
    let digests = reader.finish()?;
    compare_sealed(path, spec.file, &digests)?;
    if graph == GraphCheck::Hash {
        intel = seen
            .iter()
            .find(|(p, _, _)| p == bundle::INTEL_PATH)
            .map(|(_, bytes, sha256)| ransomeye_intel::GraphDigest {
                bytes: *bytes,
                sha256: sha256.clone(),
                ..spec.intel.clone()
            });
    }
    match intel {
        Some(d) if d == *spec.intel => {}
        Some(d) => {
            return Err(OpsError::new(
                Exit::Data,
                format!(
                    "{}: the intel graph export has digest {} ({} nodes, {} edges), the manifest says {}",
                    path.display(),
                    d.sha256,
                    d.nodes,
                    d.edges,
                    spec.intel.sha256
                ),
            ))
        }
        None => {
            return Err(OpsError::new(
                Exit::Data,
                format!("{}: no intel graph export in the bundle", path.display()),
            ))
        }
    }
    let mut problems = Vec::new();
    let stored_here: Vec<_> = spec
        .entries
        .iter()
        .filter(|e| e.stored_in == spec.name)
        .collect();
    for e in &stored_here {
        match seen.iter().find(|(p, _, _)| *p == e.path) {
            Some((_, size, sha)) if *size == e.size && *sha == e.sha256 => {}
            Some(_) => problems.push(format!("{} differs from the manifest", e.path)),
            None => problems.push(format!("{} is missing from the bundle", e.path)),
        }
    }
    for (p, _, _) in &seen {
        if !stored_here.iter().any(|e| e.path == *p) {
            problems.push(format!("{p} is in the bundle but not in the manifest"));
        }
    }
    for e in spec.entries.iter().filter(|e| e.stored_in != spec.name) {
        let older = Paths::new(dir, &e.stored_in);
        let held = quick(&older, trust_keys).ok().is_some_and(|om| {
            om.body.entries.iter().any(|o| {
                o.path == e.path
                    && o.sha256 == e.sha256
                    && o.stored_in == e.stored_in
                    && o.kind == Kind::Artifact
            })
        });
        if !held {
            problems.push(format!(
                "{} is stored in backup {}, which is missing or does not hold it",
                e.path, e.stored_in
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(OpsError::new(
            Exit::Data,
            format!("{}: {}", path.display(), problems.join("; ")),
        ))
    }
}
