//! The workspace test kit (`tools/testkit`), and the binary under test it is given.
//!
//! Services come from `DATABASE_URL` / `NATS_URL` (`scripts/test` starts a sandbox and sets
//! them); without them a test fails loudly, it never passes silently.

pub use ransomeye_testkit::*;

/// The binary under test, as Cargo built it for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ransomeye-ops");
