//! The files a rotation reads and changes: the keys directory (the staged key, retired keys,
//! the temp files a killed run left, the lock) and the configuration's `[trust]` values.

use std::path::{Path, PathBuf};

use ransomeye_kernel::config::Config;
use ransomeye_kernel::keys::{KeyDir, SigningKey};
use ransomeye_kernel::{FileAction, PathError};

use super::journal::{self, Journal, Side, State};
use super::Session;
use crate::error::{Exit, OpsError};
use crate::failpoint;
use crate::trust::{NEXT_KEY, RETIRED_DIR};

/// The atomic writer's temp files a killed rotation left: of the staged key, the journal, a
/// retired key and the configuration. A real run removes them with the rotation lock held (so
/// none is still being written); a dry run lists them.
pub(super) fn temp_files(keys: &Path, config: &Path) -> Result<Vec<PathBuf>, OpsError> {
    let mut found = temp_files_in(keys, ".signing.key")?;
    found.extend(temp_files_in(keys, &format!(".{}", journal::FILE_NAME))?);
    let retired = keys.join(RETIRED_DIR);
    if retired.is_dir() {
        found.extend(temp_files_in(&retired, ".")?);
    }
    if let (Some(dir), Some(name)) = (config.parent(), config.file_name()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        found.extend(temp_files_in(dir, &format!(".{}", name.to_string_lossy()))?);
    }
    Ok(found)
}

/// The atomic writer's temp files in `dir` whose names start with `prefix`, sorted.
pub(super) fn temp_files_in(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, OpsError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(PathError::at(FileAction::Read, dir))? {
        let entry = entry.map_err(PathError::at(FileAction::Read, dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ransomeye_kernel::atomic_file::is_temp_name(&name) && name.starts_with(prefix) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// A dry run takes no lock (that would create the lock file) but still says when a rotation is
/// running: it tries the existing lock file without creating or writing it.
pub(super) fn refuse_if_running(keys: &Path) -> Result<(), OpsError> {
    let path = keys.join(".rotate-keys.lock");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PathError::new(FileAction::Open, &path, e).into()),
    };
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_released_on_drop) => Ok(()),
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = std::io::Read::read_to_string(&mut file, &mut holder);
            Err(OpsError::new(
                Exit::TempFail,
                format!("another key rotation is running ({})", holder.trim()),
            )
            .hint("wait for it to finish; a dry run now would describe a state about to change"))
        }
        Err((_, errno)) => {
            Err(PathError::new(FileAction::Open, &path, std::io::Error::from(errno)).into())
        }
    }
}

/// Refuses to start while the journal's latest rotation is unfinished.
pub(super) fn refuse_unfinished(journal: &Journal) -> Result<(), OpsError> {
    match journal.unfinished() {
        None => Ok(()),
        Some(r) => Err(OpsError::new(
            Exit::TempFail,
            format!(
                "{} {} (version {} → {}) is unfinished: state {} since {}",
                r.kind, r.rotation_id, r.from.version, r.to.version, r.state.name(), r.updated_at
            ),
        )
        .hint("finish it with `ransomeye-ops rotate-keys --resume`; `rotate-keys status` shows the details")),
    }
}

/// A `signing.key.next` with no unfinished rotation in the journal was staged by a run that died
/// before journaling it, so it was never published: remove it (a dry run only says so).
pub(super) fn clear_abandoned_next_key(s: &mut Session) -> Result<(), OpsError> {
    if s.journal.unfinished().is_none() && s.keys.path().join(NEXT_KEY).exists() {
        if s.dry_run {
            s.would.push(format!(
                "remove {NEXT_KEY}, left by an interrupted run before it journaled a rotation (it was never published)"
            ));
        } else {
            tracing::warn!(
                "removing {NEXT_KEY} left by an interrupted run (it was never published)"
            );
            s.keys.remove(NEXT_KEY)?;
        }
    }
    Ok(())
}

/// The key with `side`'s id, from the first of `files` that holds it.
pub(super) fn key_named(keys: &KeyDir, side: &Side, files: &[&str]) -> Option<SigningKey> {
    files
        .iter()
        .filter_map(|f| keys.load_signing_named(f).ok())
        .find(|k| k.id().to_string() == side.key_id && k.self_test())
}

/// Writes the new key as `signing.key.next` and reads it back before anything is published.
pub(super) fn stage_next_key(keys: &KeyDir, key: &SigningKey) -> Result<(), OpsError> {
    keys.create_signing(key, NEXT_KEY)?;
    let back = keys.load_signing_named(NEXT_KEY)?;
    if back.public_key() != key.public_key() || !back.self_test() {
        let _ = keys.remove(NEXT_KEY);
        return Err(OpsError::new(
            Exit::Io,
            format!("{NEXT_KEY} did not read back as the key just written"),
        )
        .hint("check the disk holding [keys] dir"));
    }
    Ok(())
}

/// The key a rollback returns to: the key the latest committed rotation replaced.
pub(super) fn rollback_target(
    keys: &KeyDir,
    journal: &Journal,
    active: &SigningKey,
) -> Result<SigningKey, OpsError> {
    let previous = journal
        .rotations
        .iter()
        .rev()
        .find(|r| r.state == State::Committed && r.to.key_id == active.id().to_string())
        .ok_or_else(|| {
            OpsError::new(
                Exit::NoInput,
                format!(
                    "the journal has no committed rotation to key {}: nothing to roll back to",
                    active.id()
                ),
            )
            .hint("`rotate-keys status` lists the rotations and retired keys")
        })?;
    let file = format!("{RETIRED_DIR}/{}", previous.from.key_id);
    let key = keys.load_signing_named(&file)?;
    if key.id().to_string() != previous.from.key_id || !key.self_test() {
        return Err(OpsError::new(
            Exit::Data,
            format!("{file} is not the key {}", previous.from.key_id),
        ));
    }
    Ok(key)
}

/// The dry run's check of the configuration's directory: `access(2)` (which also sees a
/// read-only mount) instead of the real run's probe file, which would change the directory.
pub(super) fn check_config_dir_access(path: &Path) -> Result<(), OpsError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).map_err(|errno| {
        let mut err = OpsError::io(
            format_args!(
                "the configuration's directory {} is not writable",
                dir.display()
            ),
            &std::io::Error::from(errno),
        );
        if errno == nix::errno::Errno::EACCES {
            err.exit = Exit::NoPerm;
        }
        err.hint("a commit rewrites the configuration atomically in its directory")
    })
}

/// Fails with 74 (or 77) now, before anything is generated or published, when the
/// configuration's directory cannot take the atomic rewrite the commit needs.
pub(super) fn check_config_writable(path: &Path) -> Result<(), OpsError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Named like the atomic writer's temp files of the configuration, so that a probe left by a
    // kill is removed with them.
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    tempfile::Builder::new()
        .prefix(&format!(".{name}{}probe-", ransomeye_kernel::atomic_file::TEMP_MARKER))
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| {
            let mut err = OpsError::io(
                format_args!("the configuration's directory {} is not writable", dir.display()),
                &e,
            );
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                err.exit = Exit::NoPerm;
            }
            err.hint("a commit rewrites the configuration atomically in its directory; nothing was generated or published")
        })
}

/// The configuration file as it is on disk now, without environment overrides.
pub(super) fn load_config(path: &Path) -> Result<Config, ransomeye_kernel::config::ConfigError> {
    Config::load(&ransomeye_kernel::config::ConfigSource {
        path: path.to_path_buf(),
        origin: "--config",
    })
}

/// Rewrites the three `[trust]` values in the configuration file (atomic, keeps mode and owner,
/// and every other byte of the operator's file: comments, order, layout).
pub(super) fn write_trust_config(path: &Path, to: &Side) -> Result<(), OpsError> {
    let config = load_config(path)?;
    if config.trust.key_id == to.key_id && config.trust.version == to.version {
        return Ok(());
    }
    if failpoint::armed("rotate-config-write-fails") {
        return Err(OpsError::io(
            format_args!("writing {}", path.display()),
            &std::io::Error::from_raw_os_error(30),
        ));
    }
    let version = i64::try_from(to.version).map_err(|_| {
        OpsError::new(
            Exit::Data,
            format!("trust version {} does not fit in TOML", to.version),
        )
    })?;
    ransomeye_kernel::config::set_values(
        path,
        &[
            ("trust", "version", version.into()),
            ("trust", "key_id", to.key_id.as_str().into()),
            ("trust", "public_key", to.public_key.as_str().into()),
        ],
    )?;
    Ok(())
}
