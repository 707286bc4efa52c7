//! Interrupts: SIGINT, SIGTERM and SIGHUP for the commands that must not just die.
//!
//! A command whose interruption would leave something behind — `restore` (services stopped),
//! `drill` (a scratch database), `archive` and `backup` (long runs) — calls [`install`] first.
//! From then on those signals no longer kill the process: a thread of its own records the first
//! one, and the command checks [`check`] at its safe points, where stopping leaves nothing
//! half-done. It then cleans up (starts services, drops the scratch database, abandons temp
//! files) and exits 75 saying what was done. Every other command keeps the default: a signal
//! kills it, and the crash safety that covers `kill -9` covers that too (`rotate-keys` is
//! resumable from its journal, so it stays that way).
//!
//! What this module does not do: wake a command up. A command blocked in a long step notices the
//! signal at its next safe point; async code that waits on something a signal should cut short
//! (a `[services]` command) selects on [`signalled`].

use std::fmt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use tokio::signal::unix::{signal, SignalKind};

use crate::error::{Exit, OpsError};

/// The first signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Wakes [`signalled`] waiters when the first signal is recorded.
static NOTIFY: OnceLock<tokio::sync::watch::Sender<bool>> = OnceLock::new();

fn notifier() -> &'static tokio::sync::watch::Sender<bool> {
    NOTIFY.get_or_init(|| tokio::sync::watch::channel(false).0)
}

/// Whether [`install`] succeeded (or why not), so a second call is free.
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C on a terminal.
    Int,
    /// `kill PID`, `systemctl stop`, a shutdown.
    Term,
    /// The terminal went away.
    Hup,
}

impl Signal {
    const ALL: [Signal; 3] = [Signal::Int, Signal::Term, Signal::Hup];

    fn number(self) -> i32 {
        match self {
            Signal::Int => 2,
            Signal::Term => 15,
            Signal::Hup => 1,
        }
    }

    fn kind(self) -> SignalKind {
        SignalKind::from_raw(self.number())
    }

    fn from_number(n: i32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == n)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
        })
    }
}

/// Takes over SIGINT, SIGTERM and SIGHUP for the rest of the process's life. When this returns
/// `Ok`, the handlers are in place. The listener runs on a thread of its own, so a command
/// busy on its runtime's threads (or blocked outside any runtime) still has its signal recorded.
pub fn install() -> Result<(), OpsError> {
    INSTALLED
        .get_or_init(|| {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || listen(ready_tx));
            match spawned {
                Ok(_) => ready_rx
                    .recv()
                    .unwrap_or_else(|_| Err("the signal thread stopped".into())),
                Err(e) => Err(format!("cannot start the signal thread: {e}")),
            }
        })
        .clone()
        .map_err(|e| OpsError::new(Exit::Software, format!("cannot handle signals: {e}")))
}

/// The signal thread: registers the handlers, reports that, then records signals for ever.
fn listen(ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    rt.block_on(async move {
        let mut streams = Vec::new();
        for s in Signal::ALL {
            match signal(s.kind()) {
                Ok(stream) => streams.push((s, stream)),
                Err(e) => {
                    let _ = ready.send(Err(format!("{s}: {e}")));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(()));
        let [(a, sa), (b, sb), (c, sc)] = &mut streams[..] else {
            return;
        };
        loop {
            let got = tokio::select! {
                _ = sa.recv() => *a,
                _ = sb.recv() => *b,
                _ = sc.recv() => *c,
            };
            record(got);
        }
    });
}

fn record(s: Signal) {
    match RECEIVED.compare_exchange(0, s.number(), Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => {
            notifier().send_replace(true);
            tracing::warn!("received {s}: stopping at the next safe point")
        }
        Err(_) => tracing::warn!(
            "received {s} again: already stopping at the next safe point (kill -9 is safe too, and a rerun completes)"
        ),
    }
}

/// The first signal received since [`install`], if any.
pub fn received() -> Option<Signal> {
    Signal::from_number(RECEIVED.load(Ordering::SeqCst))
}

/// Resolves with the first signal once one has been received (at once if one already was).
/// Never resolves in a process that did not [`install`] the handlers.
pub async fn signalled() -> Signal {
    let mut rx = notifier().subscribe();
    loop {
        if let Some(s) = received() {
            return s;
        }
        // The sender lives in a static, so `changed` fails only if it were dropped: wait forever.
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A safe point: `Err` (exit 75, saying `done`) if a signal was received.
pub fn check(done: impl fmt::Display) -> Result<(), OpsError> {
    match received() {
        Some(s) => Err(stopped(s, done)),
        None => Ok(()),
    }
}

/// The error of a run stopped by signal `s`, after which `done` is the state of things.
pub fn stopped(s: Signal, done: impl fmt::Display) -> OpsError {
    OpsError::new(Exit::TempFail, format!("interrupted by {s}: {done}"))
        .hint("rerun the command when convenient; it starts from a clean state")
}

/// Whether `e` is the error of a stopped run (see [`stopped`]).
pub fn is_stop(e: &OpsError) -> bool {
    e.exit == Exit::TempFail && e.what.starts_with("interrupted by ")
}

/// After a signal, a failure is the signal's doing (Ctrl-C also reaches the children, e.g.
/// pg_restore or pg_dump, which then fail): report it as the interruption (75), keeping the
/// failure's message. Without a signal, `e` is returned as it is.
pub fn attribute(e: OpsError) -> OpsError {
    match received() {
        Some(s) if !is_stop(&e) => stopped(s, e.what),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_their_names_and_numbers() {
        for s in Signal::ALL {
            assert_eq!(Signal::from_number(s.number()), Some(s));
        }
        assert_eq!(Signal::Term.to_string(), "SIGTERM");
        assert_eq!(Signal::from_number(9), None);
    }

    #[test]
    fn a_stop_is_exit_75_and_recognised() {
        let e = stopped(Signal::Int, "nothing was restored");
        assert_eq!(e.exit, Exit::TempFail);
        assert_eq!(e.what, "interrupted by SIGINT: nothing was restored");
        assert!(is_stop(&e));
        assert!(!is_stop(&OpsError::new(Exit::TempFail, "locked")));
    }
}
