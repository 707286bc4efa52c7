//! What a rotation will do, checked before anything changes: the `[[credentials]]` entries
//! selected, their env files (exist, parse, hold a configured key, writable) and, from the
//! files, which role is in use and which one gets the new password.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};
use ransomeye_kernel::atomic_file::temp_target;
use ransomeye_kernel::config::{Config, Credential};
use ransomeye_kernel::{FileAction, PathError};

use super::dotenv::{is_url, url_user, EnvText};
use crate::error::{Exit, OpsError};

/// One entry to rotate, with its files read and its roles decided.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The configuration entry.
    pub credential: Credential,
    /// The role the env files name now.
    pub active: String,
    /// The role that gets the new password (the same as `active` for single).
    pub target: String,
    /// Each env file and its parsed text.
    pub files: Vec<(PathBuf, EnvText)>,
}

impl Planned {
    /// `single` or `alternating`.
    pub fn strategy(&self) -> &'static str {
        if self.credential.is_alternating() {
            "alternating"
        } else {
            "single"
        }
    }
}

/// The entries to rotate: all, or those whose role or roles contain one of `roles`, each of
/// which must match something (78 otherwise).
pub fn select<'a>(config: &'a Config, roles: &[String]) -> Result<Vec<&'a Credential>, OpsError> {
    if config.credentials.is_empty() {
        return Err(OpsError::new(
            Exit::Config,
            "the configuration has no [[credentials]] entry: nothing to rotate",
        )
        .hint("add one per service login: role (or roles), env_files, env_keys, restart, check (see the README)"));
    }
    if let Some(unknown) = roles.iter().find(|r| {
        !config
            .credentials
            .iter()
            .any(|c| c.role_names().contains(&r.as_str()))
    }) {
        return Err(OpsError::new(
            Exit::Config,
            format!("--role {unknown}: no [[credentials]] entry has that role"),
        ));
    }
    Ok(config
        .credentials
        .iter()
        .filter(|c| roles.is_empty() || c.role_names().iter().any(|n| roles.iter().any(|r| r == n)))
        .collect())
}

/// Reads and checks an entry's env files and decides its roles: every file exists and parses
/// (78), holds at least one of `env_keys` (78), and can be replaced (73: the file has a write
/// bit and its directory is writable by us); the URL-valued keys all name the same user, which
/// for single is the role and for alternating one of the two (78).
pub fn plan(credential: &Credential) -> Result<Planned, OpsError> {
    let label = credential.role_names().join("/");
    let mut files = Vec::new();
    let mut users: Vec<(PathBuf, String, String)> = Vec::new();
    for path in &credential.env_files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpsError::new(
                    Exit::Config,
                    format!(
                        "env file {} of [[credentials]] {label} does not exist",
                        path.display()
                    ),
                )
                .hint("fix env_files in the configuration, or create the file the service reads"))
            }
            Err(e) => return Err(PathError::new(FileAction::Read, path, e).into()),
        };
        let env = EnvText::parse(&text).map_err(|m| {
            OpsError::new(Exit::Config, format!("env file {}: {m}", path.display()))
                .hint("the file must be dotenv lines KEY=VALUE (quoted values on one line); nothing was changed")
        })?;
        let present: Vec<&String> = credential
            .env_keys
            .iter()
            .filter(|k| env.get(k).is_some())
            .collect();
        if present.is_empty() {
            return Err(OpsError::new(
                Exit::Config,
                format!(
                    "env file {} holds none of env_keys ({})",
                    path.display(),
                    credential.env_keys.join(", ")
                ),
            ));
        }
        for key in present {
            let value = env.get(key).unwrap_or_default();
            if is_url(value) {
                let user = url_user(value).unwrap_or_default();
                users.push((path.clone(), key.clone(), user));
            }
        }
        check_replaceable(path)?;
        files.push((path.clone(), env));
    }
    let roles = credential.role_names();
    let (active, target) = if credential.is_alternating() {
        let Some((_, _, first)) = users.first() else {
            return Err(OpsError::new(
                Exit::Config,
                format!("[[credentials]] {label}: alternating needs a URL-valued key naming the role in use, and no env_keys value is a postgres:// URL"),
            ));
        };
        if !roles.contains(&first.as_str()) {
            return Err(OpsError::new(
                Exit::Config,
                format!("[[credentials]] {label}: the env files name user `{first}`, which is not one of roles"),
            ));
        }
        let other = roles
            .iter()
            .find(|r| **r != first.as_str())
            .copied()
            .unwrap_or_default();
        (first.clone(), other.to_string())
    } else {
        (roles[0].to_string(), roles[0].to_string())
    };
    if let Some((path, key, user)) = users
        .iter()
        .find(|(_, _, user)| !user.is_empty() && *user != active)
    {
        return Err(OpsError::new(
            Exit::Config,
            format!(
                "{} {key} names user `{user}`, but the entry's role in use is `{active}`",
                path.display()
            ),
        )
        .hint("every env file of an entry must name the same role; fix the files or the entry"));
    }
    Ok(Planned {
        credential: credential.clone(),
        active,
        target,
        files,
    })
}

/// 73 unless `path` can be replaced: it has a write bit (a file without any is taken as
/// meant to be read-only, even by root) and its directory accepts a new file and a rename
/// (which a read-only mount refuses even to root).
fn check_replaceable(path: &Path) -> Result<(), OpsError> {
    let meta = std::fs::metadata(path).map_err(PathError::at(FileAction::Read, path))?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let read_only = meta.permissions().mode() & 0o222 == 0
        || access(path, AccessFlags::W_OK).is_err()
        || access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err();
    if read_only {
        return Err(OpsError::new(
            Exit::CantCreate,
            format!("env file {} cannot be rewritten (read-only file, directory or file system)", path.display()),
        )
        .hint("make the file and its directory writable for root (or ransomeye-admin); nothing was changed"));
    }
    Ok(())
}

/// Removes what an interrupted rewrite of an env file left beside it (`.<name>.tmp-…`, which
/// may hold a new password). Only temp files of the configured names are touched.
pub fn remove_env_temp_files(credential: &Credential) -> Result<(), OpsError> {
    for path in &credential.env_files {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            if temp_target(&file_name.to_string_lossy()) == Some(name) {
                let temp = entry.path();
                std::fs::remove_file(&temp).map_err(PathError::at(FileAction::Remove, &temp))?;
            }
        }
    }
    Ok(())
}
