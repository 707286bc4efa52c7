//! Crash points for the crash-safety tests: in debug builds, `RANSOMEYE_FAILPOINT=<name>` makes
//! the process die at once (as SIGKILL would: no destructors, no cleanup) when it reaches the
//! point called `<name>`. Release builds compile this to nothing.

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
