//! A command's journal on disk: one JSON document in `[keys] dir`, read whole and replaced
//! atomically (mode 0600, as the keys beside it), so a crash leaves the old journal or the new
//! one, never a mix. `rotate-keys` and `rotate-db-creds` keep theirs this way; each defines what
//! its journal holds.

use std::path::Path;

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{write_atomic, Replace};
use ransomeye_kernel::{FileAction, PathError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Exit, OpsError};

/// Reads the journal at `path`: `None` when there is none. A file that does not parse is 65,
/// `what` naming the kind of journal and `hint` what the operator can do.
pub fn read<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    hint: &str,
) -> Result<Option<T>, OpsError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PathError::new(FileAction::Read, path, e).into()),
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        OpsError::new(
            Exit::Data,
            format!("{}: not a valid {what}: {e}", path.display()),
        )
        .hint(hint.to_string())
    })
}

/// Replaces the journal at `path` with `journal`, atomically.
pub fn write<T: Serialize>(path: &Path, journal: &T) -> Result<(), OpsError> {
    let text = serde_json::to_vec_pretty(journal)
        .map_err(|e| OpsError::new(Exit::Software, format!("cannot serialise the journal: {e}")))?;
    write_atomic(path, &text, Ownership::secret_file(), Replace::Allowed)?;
    Ok(())
}
