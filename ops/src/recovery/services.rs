//! `[services] stop` and `start` around a restore: each command in a process group of its own,
//! bounded by `[services] timeout_secs`; start runs even after a failure or a signal.

use ransomeye_kernel::config::Services;

use super::Outcome;
use crate::error::OpsError;
use crate::shell;

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

/// Runs each command in order, each bounded by `timeout_secs` (see [`shell::run_all`]).
pub(super) async fn run_commands(
    commands: &[String],
    timeout_secs: u64,
    what: &str,
    interruptible: bool,
) -> Result<Vec<String>, OpsError> {
    shell::run_all(
        commands,
        timeout_secs,
        &format!("[services] {what}"),
        interruptible,
    )
    .await
}
