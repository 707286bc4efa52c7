//! The one place where failures become exit codes and messages.
//!
//! Every expected failure is an [`OpsError`]: an exit code from sysexits(3), what went wrong,
//! and how to fix it. Library errors from the kernel convert here, so commands can use `?`.

use std::fmt;
use std::io;

use ransomeye_kernel::config::ConfigError;
use ransomeye_kernel::envelope::EnvelopeError;
use ransomeye_kernel::keys::KeyError;
use ransomeye_kernel::{FileAction, PathError};

/// The hint for a full (or over-quota) file system.
const DISK_FULL_HINT: &str = "free space on that file system; nothing was left under a final name";

/// Exit codes (sysexits.h), documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 64: the command line is wrong.
    Usage = 64,
    /// 65: input data is corrupt, tampered with or invalid.
    Data = 65,
    /// 66: an input file does not exist.
    NoInput = 66,
    /// 69: a service (database, bus, pg_dump) is unavailable.
    Unavailable = 69,
    /// 70: a bug: something that should not happen did.
    Software = 70,
    /// 73: an output file cannot be created (exists, no directory, read-only).
    CantCreate = 73,
    /// 74: reading or writing failed (disk full, I/O error).
    Io = 74,
    /// 75: temporary failure; retry later (e.g. another run holds the lock).
    TempFail = 75,
    /// 77: permission denied (privilege gate, key file permissions, key not available).
    NoPerm = 77,
    /// 78: configuration error.
    Config = 78,
    /// 0, quietly: stdout was closed by its reader (`… | head`, `… | true`). The reader has what
    /// it wanted, so this is neither a failure to report nor a bug (70): the command stops as on
    /// any error (cleaning up what it holds), and the top level exits 0 without a message, as
    /// ripgrep does. A signal-style 141 would fail every `set -o pipefail` script using `head`.
    StdoutClosed = 0,
}

impl Exit {
    /// The numeric exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failure to report to the operator: `error: WHAT` and `hint: HOW TO FIX`.
#[derive(Debug)]
pub struct OpsError {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong, naming the file, key or service.
    pub what: String,
    /// How to fix it, when there is something to say.
    pub hint: Option<String>,
    /// The failure came from the database ([`crate::db::error`]): the command that failed adds
    /// what it left intact ([`OpsError::with_guarantee`]).
    pub from_database: bool,
}

impl OpsError {
    /// A failure with an exit code and a message.
    pub fn new(exit: Exit, what: impl Into<String>) -> Self {
        OpsError {
            exit,
            what: what.into(),
            hint: None,
            from_database: false,
        }
    }

    /// Stdout was closed by its reader: not a failure (see [`Exit::StdoutClosed`]).
    pub fn stdout_closed() -> Self {
        OpsError::new(Exit::StdoutClosed, "stdout was closed by its reader")
    }

    /// A failed write to stdout: a closed pipe is [`OpsError::stdout_closed`], anything else an
    /// I/O error (74).
    pub fn stdout(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return OpsError::stdout_closed();
        }
        OpsError::from(PathError::new(FileAction::Write, "<stdout>", e))
    }

    /// Adds what the failed command left intact (e.g. archive's "nothing was deleted that is
    /// not in a verified archive") to the hint of a database failure; other failures say their
    /// own. Each command's guarantee is added once, where the command is dispatched.
    pub fn with_guarantee(mut self, guarantee: &str) -> Self {
        if self.from_database {
            self.hint = Some(match self.hint {
                Some(hint) => format!("{hint}; {guarantee}"),
                None => guarantee.to_string(),
            });
        }
        self
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An I/O failure while doing `what` (74), with the disk-full hint when that is the cause.
    /// For failures that belong to one path, convert a [`PathError`] instead.
    pub fn io(what: impl fmt::Display, e: &io::Error) -> Self {
        let err = OpsError::new(Exit::Io, format!("{what}: {e}"));
        if ransomeye_kernel::is_disk_full(e) {
            err.hint(DISK_FULL_HINT)
        } else {
            err
        }
    }

    /// Prefixes the message with context (e.g. the file concerned).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.what = format!("{context}: {}", self.what);
        self
    }

    /// An envelope failure while reading `file`.
    pub fn envelope(file: &std::path::Path, err: &EnvelopeError) -> Self {
        let shown = file.display();
        match err {
            EnvelopeError::WrongKey { .. } | EnvelopeError::WrongPurpose { .. } => {
                OpsError::new(Exit::NoPerm, format!("{shown}: {err}")).hint(
                    "the key this file was encrypted with is not in [keys] dir; \
                     use the configuration (and keys) of the installation that wrote it",
                )
            }
            _ => OpsError::new(Exit::Data, format!("{shown}: {err}")).hint(
                "the file is damaged or was tampered with: do not trust its contents; \
                 use another copy",
            ),
        }
    }

    /// An intel crate failure while doing `doing`: its database errors classified as any other,
    /// a damaged export as bad data (65).
    pub fn intel(e: ransomeye_intel::IntelError, doing: &str) -> Self {
        use ransomeye_intel::IntelError;
        match e {
            IntelError::Database { source, .. } => crate::db::error(source, doing),
            IntelError::Io { source, .. } => {
                if EnvelopeError::from_io(&source).is_some() {
                    return OpsError::new(Exit::Data, format!("{doing}: {source}"));
                }
                OpsError::io(doing, &source)
            }
            IntelError::Snapshot { .. } => OpsError::new(Exit::Software, format!("{doing}: {e}")),
            other => OpsError::new(Exit::Data, format!("{doing}: {other}")),
        }
    }

    /// Classifies an I/O error while streaming (`file` is the input being read).
    pub fn stream(file: &std::path::Path, err: io::Error) -> Self {
        match EnvelopeError::from_io(&err) {
            Some(e) => OpsError::envelope(file, e),
            None => OpsError::from(PathError::new(FileAction::Read, file, err)),
        }
    }
}

impl fmt::Display for OpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for OpsError {}

impl From<PathError> for OpsError {
    fn from(e: PathError) -> Self {
        let kind = e.source.kind();
        let exit = if e.is_disk_full() {
            Exit::Io
        } else if kind == io::ErrorKind::PermissionDenied {
            Exit::NoPerm
        } else {
            match e.action {
                FileAction::Open if kind == io::ErrorKind::NotFound => Exit::NoInput,
                FileAction::Create | FileAction::Rename | FileAction::SetPermissions => {
                    Exit::CantCreate
                }
                _ => Exit::Io,
            }
        };
        let hint = if e.is_disk_full() {
            Some(DISK_FULL_HINT.to_string())
        } else if kind == io::ErrorKind::AlreadyExists {
            Some("nothing is ever overwritten; move the existing file away first".to_string())
        } else if kind == io::ErrorKind::PermissionDenied {
            Some(crate::privilege::permission_denied_hint())
        } else if kind == io::ErrorKind::NotFound && e.action == FileAction::Create {
            Some("create the directory first, or fix the path in the configuration".to_string())
        } else {
            None
        };
        OpsError {
            exit,
            what: e.to_string(),
            hint,
            from_database: false,
        }
    }
}

impl From<ConfigError> for OpsError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Missing { .. } => OpsError::new(Exit::Config, e.to_string()).hint(
                "create it with `ransomeye-ops init`, or point to it with --config PATH or $RANSOMEYE_CONFIG",
            ),
            ConfigError::Invalid { .. } => OpsError::new(Exit::Config, format!("invalid configuration: {e}"))
                .hint("fix that line; the README lists every section and key"),
            ConfigError::Io(p) => {
                let mut err = OpsError::from(p);
                if err.exit != Exit::NoPerm {
                    err.exit = Exit::Config;
                }
                err
            }
        }
    }
}

impl From<KeyError> for OpsError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Missing { .. } => OpsError::new(Exit::NoPerm, e.to_string()).hint(
                "check [keys] dir in the configuration; keys are created by `ransomeye-ops init`",
            ),
            KeyError::Insecure { ref fix, .. } => {
                let fix = fix.clone();
                OpsError::new(Exit::NoPerm, e.to_string()).hint(format!("fix it with: {fix}"))
            }
            KeyError::Malformed { .. } => OpsError::new(Exit::Data, e.to_string())
                .hint("restore the key file from your key backup"),
            KeyError::Random => OpsError::new(Exit::Software, e.to_string()),
            KeyError::Io(p) => OpsError::from(p),
        }
    }
}

/// Shorthand for results of commands.
pub type Result<T, E = OpsError> = std::result::Result<T, E>;
