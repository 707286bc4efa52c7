//! The RansomEye kernel: what every operation of `ransomeye-ops` stands on.
//!
//! - [`config`]: the one TOML configuration file, strictly parsed, rewritten only atomically.
//! - [`conn_url`]: connection URLs parsed once, passwords kept out of anything shown.
//! - [`keys`]: the signing, archive and backup keys, their files, ids and permission checks.
//! - [`atomic_file`]: files that appear under their final name complete and durable, or not at all.
//! - [`envelope`]: the streaming encrypted file format (STREAM over AES-256-GCM, see `docs/FORMAT.md`).
//! - [`access`]: who may read what: the `ransomeye-admin` group and the modes of secret files.
//!
//! The kernel never prints and never exits: it returns typed errors that say what failed and where.

pub mod access;
pub mod atomic_file;
pub mod config;
pub mod conn_url;
pub mod envelope;
pub mod keys;
mod path_error;

pub use path_error::{is_disk_full, FileAction, PathError};
