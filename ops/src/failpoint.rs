//! Crash points for the crash-safety tests: in debug builds, `RANSOMEYE_FAILPOINT=<name>` makes
//! the process die at once (as SIGKILL would: no destructors, no cleanup) when it reaches the
//! point called `<name>`, or pause there until a signal arrives ([`pause`]). Release builds
//! compile this to nothing.
//!
//! Hold points let a test act at an exact moment of a run without guessing with sleeps:
//! `RANSOMEYE_HOLD=<name>` and `RANSOMEYE_HOLD_DIR=<dir>` make the process create
//! `<dir>/<name>.reached` when it reaches the point, then wait until the test creates
//! `<dir>/<name>.go` ([`hold`]).

/// Dies here if the failpoint `name` is armed (debug builds only).
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("RANSOMEYE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Whether the failpoint `name` is armed (debug builds only), for faults that are injected
/// rather than crashed into (e.g. damaging a file the run just wrote).
pub fn armed(name: &str) -> bool {
    #[cfg(debug_assertions)]
    return std::env::var("RANSOMEYE_FAILPOINT").is_ok_and(|v| v == name);
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}

/// Waits here, in debug builds, while the hold point `name` is armed: announces
/// `<RANSOMEYE_HOLD_DIR>/<name>.reached` and returns once `<name>.go` exists there.
pub fn hold(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("RANSOMEYE_HOLD").is_ok_and(|v| v == name) {
        if let Some(dir) = std::env::var_os("RANSOMEYE_HOLD_DIR") {
            let dir = std::path::PathBuf::from(dir);
            let go = dir.join(format!("{name}.go"));
            if go.exists() {
                return;
            }
            let _ = std::fs::write(
                dir.join(format!("{name}.reached")),
                std::process::id().to_string(),
            );
            eprintln!("hold point {name}: waiting for {}", go.display());
            while !go.exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Pauses here if the failpoint `name` is armed (debug builds only): prints
/// `failpoint <name>: paused` on stderr, then waits until a signal was received (see
/// [`crate::interrupt`]), so that a test can send one at exactly this point. In a command that
/// handles no signals it waits until killed, as a syscall stuck on a dead mount would.
pub fn pause(name: &str) {
    #[cfg(debug_assertions)]
    if armed(name) {
        eprintln!("failpoint {name}: paused");
        while crate::interrupt::received().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
