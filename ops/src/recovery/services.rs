//! `[services] stop` and `start` around a restore: each command in a process group of its own,
//! bounded by `[services] timeout_secs`; start runs even after a failure or a signal.

use std::time::Duration;

use ransomeye_kernel::config::Services;

use super::Outcome;
use crate::error::{Exit, OpsError};
use crate::interrupt;
use crate::shell::{self, Ended};

/// Runs `[services] start` — after a restore, a failed one, or a signal: the platform must not
/// stay down because of us. It runs to the end even after a signal (each command bounded by
/// `timeout_secs`). Returns what happened, in words for the operator.
pub(super) async fn start(services: &Services, outcome: &mut Outcome) -> String {
    if services.start.is_empty() {
        return "no [services] start commands are configured".into();
    }
    match run_commands(&services.start, services.timeout_secs, "start", false).await {
        Ok(started) => {
            outcome.services_started = started;
            format!("[services] start was run ({})", services.start.join("; "))
        }
        Err(e) => {
            tracing::error!("starting services: {}", e.what);
            format!("{}: start the services by hand", e.what)
        }
    }
}

/// Runs each command with `sh -c`, in order, each bounded by `timeout_secs`; stops at the
/// first failure (69 naming it). Returns the commands run. Each runs in a process group of its
/// own (see [`crate::shell`]); a signal to us kills the running one when `interruptible`.
pub(super) async fn run_commands(
    commands: &[String],
    timeout_secs: u64,
    what: &str,
    interruptible: bool,
) -> Result<Vec<String>, OpsError> {
    let mut done = Vec::new();
    let role = format!("[services] {what}");
    for command in commands {
        if interruptible {
            interrupt::check(format!("{role} stopped before `{command}`"))?;
        }
        match shell::run(command, Duration::from_secs(timeout_secs), interruptible, &role).await? {
            Ended::Exited(s) if s.success() => done.push(command.clone()),
            Ended::Exited(s) => {
                return Err(OpsError::new(
                    Exit::Unavailable,
                    format!("{role} command `{command}` failed ({s})"),
                ))
            }
            Ended::TimedOut => {
                return Err(OpsError::new(
                    Exit::Unavailable,
                    format!("{role} command `{command}` did not finish within {timeout_secs} s and was killed"),
                ))
            }
            Ended::Interrupted(signal) => {
                return Err(interrupt::stopped(
                    signal,
                    format!("{role} command `{command}` was killed"),
                ))
            }
        }
    }
    Ok(done)
}
