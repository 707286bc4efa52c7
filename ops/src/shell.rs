//! Shell commands the operator configures (`[services] stop`/`start`, and any later hook of the
//! same kind): each runs as `sh -c COMMAND` in a process group of its own, bounded by a timeout,
//! and optionally cut short by a signal to us.
//!
//! Why a process group: Ctrl-C on the terminal then reaches only us (we decide what to stop and
//! when), and a command that is killed — timeout or signal — is killed with everything it
//! started, not just the shell.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use crate::error::{Exit, OpsError};
use crate::interrupt;

/// How one run of a command ended, when it did not end by itself.
#[derive(Debug)]
pub enum Ended {
    /// It exited (successfully or not).
    Exited(ExitStatus),
    /// It outlived the timeout and was killed.
    TimedOut,
    /// We received this signal while it ran, and killed it.
    Interrupted(interrupt::Signal),
}

/// Runs `command` with `sh -c`, stdin closed, in its own process group. It is killed (the whole
/// group) after `timeout`, or as soon as a signal reaches us when `interruptible`. Fails only if
/// the shell cannot be started or waited for; `what` names the command's role in that error.
pub async fn run(
    command: &str,
    timeout: Duration,
    interruptible: bool,
    what: &str,
) -> Result<Ended, OpsError> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            OpsError::new(
                Exit::Unavailable,
                format!("cannot run {what} command `{command}`: {e}"),
            )
        })?;
    let signalled = async {
        if interruptible {
            interrupt::signalled().await
        } else {
            std::future::pending().await
        }
    };
    let ended = tokio::select! {
        status = child.wait() => {
            return status.map(Ended::Exited).map_err(|e| {
                OpsError::new(Exit::Software, format!("waiting for {what} command `{command}`: {e}"))
            });
        }
        _ = tokio::time::sleep(timeout) => Ended::TimedOut,
        signal = signalled => Ended::Interrupted(signal),
    };
    if let Some(pid) = child.id() {
        let group = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
    // Reap the shell so no zombie outlives the run; the group is already dead.
    let _ = child.wait().await;
    Ok(ended)
}

/// Runs each command with [`run`], in order, each bounded by `timeout_secs`; stops at the first
/// failure (69 naming it, `role` saying what kind of command it was: "[services] stop"), or at a
/// signal when `interruptible` (75). Returns the commands run.
pub async fn run_all(
    commands: &[String],
    timeout_secs: u64,
    role: &str,
    interruptible: bool,
) -> Result<Vec<String>, OpsError> {
    let mut done = Vec::new();
    for command in commands {
        if interruptible {
            interrupt::check(format!("{role} stopped before `{command}`"))?;
        }
        match run(command, Duration::from_secs(timeout_secs), interruptible, role).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run_now(command: &str, timeout: Duration) -> Ended {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run(command, timeout, false, "test"))
            .expect("sh starts")
    }

    #[test]
    fn exit_statuses_are_reported() {
        assert!(
            matches!(run_now("true", Duration::from_secs(30)), Ended::Exited(s) if s.success())
        );
        assert!(
            matches!(run_now("exit 3", Duration::from_secs(30)), Ended::Exited(s) if s.code() == Some(3))
        );
    }

    #[test]
    fn a_command_outliving_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("grandchild.pid");
        // The shell's child outlives the shell's own exit unless the whole group is killed.
        let command = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        let started = std::time::Instant::now();
        assert!(matches!(
            run_now(&command, Duration::from_secs(2)),
            Ended::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(30));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        // The grandchild was killed with the group. SIGKILL is delivered asynchronously: wait (a
        // bounded while) until it is gone or a zombie awaiting its reaper.
        let gone = |pid: i32| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state.is_empty()
                || state
                    .rsplit(") ")
                    .next()
                    .is_some_and(|r| r.starts_with('Z'))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !gone(pid) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(gone(pid), "sleep {pid} survived the timeout");
    }
}
