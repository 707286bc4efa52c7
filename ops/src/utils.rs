//! Small helpers shared by commands: the async runtime, terminal detection, JSON output.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::error::{Exit, OpsError};

/// A multi-threaded tokio runtime for commands that talk to the database or the bus.
/// Built per command, never before argument parsing, so `--help` stays instant.
pub fn runtime() -> Result<tokio::runtime::Runtime, OpsError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            OpsError::new(
                Exit::Software,
                format!("cannot start the async runtime: {e}"),
            )
        })
}

/// True when stdout is a terminal (binary output is refused there, progress bars shown).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<(), OpsError> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .map_err(stdout_error)
}

/// Makes a relative path absolute against the current directory, so the configuration
/// written by `init` works from cron, systemd or any other working directory.
pub fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The error for a failed write to stdout: a closed pipe (`… | head`) becomes
/// [`Exit::StdoutClosed`], which the top level turns into a quiet exit 0 once the command has
/// unwound; anything else is an I/O error.
pub fn stdout_error(e: std::io::Error) -> OpsError {
    OpsError::stdout(e)
}

/// A spinner on stderr counting `unit`s, shown only when stderr is a terminal and the output is
/// for people (not `--json`); hidden otherwise, so logs and pipes stay clean.
pub fn progress(json: bool, message: &'static str, unit: &'static str) -> indicatif::ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    let template = format!("{{spinner}} {{msg}} {{human_pos}} {unit} ({{elapsed}})");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Gives `bar` (from [`progress`]) a known total of bytes: a bar with the share done and the
/// time left instead of a spinner. Nothing for a hidden bar.
pub fn set_total(bar: &indicatif::ProgressBar, total: u64) {
    if bar.is_hidden() {
        return;
    }
    // The spinner's ticker is stopped while the style changes and the bar is drawn at once
    // (a short run shows its total too), then restarted.
    bar.disable_steady_tick();
    bar.set_length(total);
    let template =
        "{spinner} {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({elapsed}, {eta} left)";
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.force_draw();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
}

/// Milliseconds since `start`, to 0.01 ms, as reports show durations.
pub fn elapsed_ms(start: std::time::Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 100_000.0).round() / 100.0
}

pub use ransomeye_kernel::config::redact_url;
