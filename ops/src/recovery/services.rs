//! `[services] stop` and `start` around a restore: each command in a process group of its own,
//! bounded by `[services] timeout_secs`; start runs even after a failure or a signal.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ransomeye_kernel::config::Services;

use super::Outcome;
use crate::error::{Exit, OpsError};
use crate::interrupt;

/// Runs `[services] start` — after a restore, a failed one, or a signal: the platform must not
/// stay down because of us. It runs to the end even after a signal (each command bounded by
/// `timeout_secs`). Returns what happened, in words for the operator.
pub(super) fn start(services: &Services, outcome: &mut Outcome) -> String {
    if services.start.is_empty() {
        return "no [services] start commands are configured".into();
    }
    match run_commands(&services.start, services.timeout_secs, "start", false) {
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
/// own: Ctrl-C on the terminal reaches only us, and a command that is killed (timeout, or a
/// signal when `interruptible`) is killed with everything it started.
pub(crate) fn run_commands(
    commands: &[String],
    timeout_secs: u64,
    what: &str,
    interruptible: bool,
) -> Result<Vec<String>, OpsError> {
    let mut done = Vec::new();
    for command in commands {
        if interruptible {
            interrupt::check(format!("[services] {what} stopped before `{command}`"))?;
        }
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", command])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                OpsError::new(
                    Exit::Unavailable,
                    format!("cannot run [services] {what} command `{command}`: {e}"),
                )
            })?;
        let kill = |child: &mut std::process::Child| {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        };
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {
                    if let Some(signal) = interrupt::received().filter(|_| interruptible) {
                        kill(&mut child);
                        return Err(interrupt::stopped(
                            signal,
                            format!("[services] {what} command `{command}` was killed"),
                        ));
                    }
                    if Instant::now() >= deadline {
                        kill(&mut child);
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    return Err(OpsError::new(
                        Exit::Software,
                        format!("waiting for `{command}`: {e}"),
                    ))
                }
            }
        };
        match status {
            Some(s) if s.success() => done.push(command.clone()),
            Some(s) => {
                return Err(OpsError::new(Exit::Unavailable, format!("[services] {what} command `{command}` failed ({s})")))
            }
            None => {
                return Err(OpsError::new(
                    Exit::Unavailable,
                    format!("[services] {what} command `{command}` did not finish within {timeout_secs} s and was killed"),
                ))
            }
        }
    }
    Ok(done)
}
