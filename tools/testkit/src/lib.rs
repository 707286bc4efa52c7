//! The workspace's integration-test kit: real PostgreSQL, real nats-server, the real binary.
//!
//! Every crate's integration tests use this one kit (as a dev-dependency only, so nothing of it
//! reaches a shipped binary):
//!
//! - [`services`]: the service URLs from `DATABASE_URL` / `NATS_URL`, failing loudly with
//!   instructions when they are unset, and the repository root;
//! - [`runtime`]: async code run from the synchronous tests (and from inside async ones);
//! - [`db`]: [`TestDb`], a database of its own per test, copied from a schema template;
//! - [`sessions`]: the database sessions of a running command, and the locks a test holds
//!   against it;
//! - [`bus`]: [`OwnBus`], a nats-server of the test's own;
//! - [`cluster`]: [`OwnPostgres`], a PostgreSQL cluster of the test's own with password logins
//!   and a log the test reads;
//! - [`net`]: ports nobody listens on, and a listener that never answers;
//! - [`run`]: the binary runner ([`run()`], [`Running`], …) and the exit/stderr assertions of
//!   [`Run`];
//! - [`world`]: [`World`], one test's installation of `ransomeye-ops` (directories, config,
//!   database);
//! - [`agents`]: [`AgentSim`], `ransomeye-agent-sim` playing the agents;
//! - [`standin`]: [`StandinService`], the stand-in service `rotate-db-creds` restarts;
//! - [`root`]: what only root may do: switch users, create them, mount;
//! - [`syslog`]: [`Rsyslog`], a real rsyslogd of the test's own (UDP, TCP, RELP, TLS inputs);
//! - [`files`]: snapshots of a directory tree, to show that a command changed nothing.
//!
//! The kit never guesses the binary under test: a test passes the path Cargo gave it
//! (`env!("CARGO_BIN_EXE_…")`) to [`World`].

pub mod agents;
pub mod bus;
pub mod cluster;
pub mod db;
pub mod files;
pub mod net;
pub mod root;
pub mod run;
pub mod runtime;
pub mod services;
pub mod sessions;
pub mod standin;
pub mod syslog;
pub mod tls;
pub mod world;

pub use agents::{field, AgentSim};
pub use bus::{stored_message, BusTls, OwnBus};
pub use cluster::{ClusterOptions, OwnPostgres};
pub use db::{with_database, TestDb};
pub use files::{tree, Entry};
pub use net::{closed_port, SilentServer};
pub use root::{
    admin_gid, ensure_admin_group, is_root, require_root, Member, Mount, PublicBinary, NOBODY,
};
pub use run::{finish, kill_after, run, run_within, spawn, stdout_bytes, Run, Running};
pub use runtime::block_on;
pub use services::{database_url, nats_url, repo_root, services, Services};
pub use sessions::{backends_of, hold_flock, hold_table_lock, until_backend};
pub use standin::StandinService;
pub use syslog::{is_probe, Rsyslog};
pub use tls::{Issued, Pki, Role};
pub use world::World;
