//! The steps after the new passwords proved to work: switching the env files and restarting
//! the services, and the way back (files to their bytes before, services restarted, old
//! verifiers) when a service does not come back or a resume finds a rotation being undone.

use std::path::Path;

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};
use ransomeye_kernel::config::Credential;
use ransomeye_kernel::{FileAction, PathError};

use super::dotenv::{is_url, url_with_login, EnvText};
use super::journal::Login;
use crate::error::{Exit, OpsError};
use crate::shell::run_all;

/// The env file's text with the configured keys switched to `target` and `password`: a URL's
/// password (and user, when alternating) replaced, a plain key's value replaced.
pub fn switched_text(
    text: &str,
    credential: &Credential,
    target: &str,
    password: &str,
    path: &Path,
) -> Result<String, OpsError> {
    let mut env = EnvText::parse(text)
        .map_err(|m| OpsError::new(Exit::Config, format!("env file {}: {m}", path.display())))?;
    let alternating = credential.is_alternating();
    for key in &credential.env_keys {
        let Some(value) = env.get(key) else { continue };
        let new = if is_url(value) {
            url_with_login(value, alternating.then_some(target), target, password)
                .unwrap_or_else(|| value.to_string())
        } else {
            password.to_string()
        };
        env.set(key, &new).map_err(|m| {
            OpsError::new(Exit::Config, format!("env file {}: {m}", path.display()))
        })?;
    }
    Ok(env.text().to_string())
}

/// Replaces `path` with `text` atomically, keeping its mode and owner; nothing when it already
/// holds exactly that. Returns whether it wrote.
pub fn replace_file(path: &Path, text: &str) -> Result<bool, OpsError> {
    let meta = std::fs::metadata(path).map_err(PathError::at(FileAction::Read, path))?;
    let current = std::fs::read(path).map_err(PathError::at(FileAction::Read, path))?;
    if current == text.as_bytes() {
        return Ok(false);
    }
    write_atomic(
        path,
        text.as_bytes(),
        Ownership::of(&meta),
        Replace::Allowed,
    )?;
    Ok(true)
}

/// Runs an entry's restart commands, then its check; `Err` (69 for a command that could not
/// run, failed or timed out) names the command.
pub async fn restart_and_check(credential: &Credential, timeout_secs: u64) -> Result<(), OpsError> {
    run_all(
        &credential.restart,
        timeout_secs,
        "restart (for [[credentials]])",
        false,
    )
    .await?;
    if let Some(check) = &credential.check {
        run_all(
            std::slice::from_ref(check),
            timeout_secs,
            "check (for [[credentials]])",
            false,
        )
        .await?;
    }
    Ok(())
}

/// Puts an entry's env files back to their bytes before the rotation (`originals`, when the
/// pending file still had them) and restarts its service when a file changed back or it had
/// been restarted already. Returns what could not be done, in words (empty: all done).
pub async fn files_back(
    login: &Login,
    originals: Option<&std::collections::BTreeMap<std::path::PathBuf, String>>,
    timeout_secs: u64,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut changed = false;
    if let Some(originals) = originals {
        for path in &login.credential.env_files {
            let Some(original) = originals.get(path) else {
                continue;
            };
            match replace_file(path, original) {
                Ok(wrote) => changed |= wrote,
                Err(e) => problems.push(format!(
                    "{} could not be put back: {}",
                    path.display(),
                    e.what
                )),
            }
        }
    }
    if changed || !login.restarted.is_empty() {
        if let Err(e) = run_all(
            &login.credential.restart,
            timeout_secs,
            "restart (for [[credentials]])",
            false,
        )
        .await
        {
            problems.push(e.what);
        }
    }
    problems
}
