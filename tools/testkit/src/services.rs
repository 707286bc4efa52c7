//! The outside services the tests use, named by the environment, and the repository root.
//!
//! `scripts/test` starts a sandbox and sets `DATABASE_URL` / `NATS_URL` (or passes on the ones it
//! was given). Without them a test fails loudly, saying how to provide them; it never passes
//! silently.

use std::path::{Path, PathBuf};

/// URLs of the services the tests use.
pub struct Services {
    /// A superuser URL to a maintenance database (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
    pub database_url: String,
    /// The nats-server (JetStream on).
    pub nats_url: String,
}

/// Both services from the environment; panics with instructions when one is not given.
pub fn services() -> Services {
    Services {
        database_url: database_url(),
        nats_url: nats_url(),
    }
}

/// The PostgreSQL superuser URL from `DATABASE_URL`; panics with instructions when unset.
pub fn database_url() -> String {
    required("DATABASE_URL", "a real PostgreSQL")
}

/// The nats-server (JetStream on) from `NATS_URL`; panics with instructions when unset.
pub fn nats_url() -> String {
    required("NATS_URL", "a real nats-server with JetStream")
}

fn required(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this integration test needs {what}. \
             Run `scripts/test` (it starts a sandbox), or export \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
             and NATS_URL=nats://127.0.0.1:4222"
        )
    })
}

/// The repository root (the kit lives in `tools/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
