//! `ransomeye-ops`: the Day-2 operations CLI of RansomEye, as a library so that tests and other
//! tools can drive the same code the binary runs.
//!
//! Flow: [`cli`] parses arguments; help, version, completions and man pages are answered for
//! anyone; everything else passes the [`privilege`] gate, then runs in [`commands`]. Failures are
//! [`error::OpsError`]s, printed as `error:`/`hint:` and turned into sysexits codes here only.

pub mod alerts;
pub(crate) mod backup_set;
pub mod bus;
pub mod cli;
pub mod commands;
pub mod db;
pub mod dirs;
pub mod error;
pub mod failpoint;
pub mod follow;
pub mod interrupt;
pub mod jetstream;
pub mod journal_file;
pub mod open_files;
pub mod pace;
pub mod pg_tools;
pub mod privilege;
#[cfg(test)]
mod properties;
pub(crate) mod recovery;
pub mod resources;
pub mod run_lock;
pub mod sealed;
pub mod shell;
pub mod signed;
pub mod size;
pub mod syslog;
pub mod table;
pub mod tls_files;
pub mod trust;
pub mod utils;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::FromArgMatches;

use crate::cli::{Cli, Command};
use crate::error::{Exit, OpsError};

/// Runs the CLI with the process's arguments and returns the exit code. The only place that
/// ends the process: failures come back here as values (a panic on this thread too), are
/// reported once, and become the exit code.
pub fn main_entry() -> ExitCode {
    install_panic_hook();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version go to stdout and succeed; every real parse error is a usage error.
            return ExitCode::from(if e.use_stderr() {
                Exit::Usage.code()
            } else {
                0
            });
        }
    };
    let json = cli.json;
    // Unwinding (not exiting from the hook) lets a panicking command's destructors remove its
    // temp files and lets threads that join a panicked worker report it as a failure.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    match result {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(err)) => {
            report(&err, json);
            ExitCode::from(err.exit.code())
        }
        Err(_) if STDOUT_CLOSED.load(Ordering::Relaxed) => {
            ExitCode::from(Exit::StdoutClosed.code())
        }
        // The hook has printed the error.
        Err(_) => ExitCode::from(Exit::Software.code()),
    }
}

/// Parses the process's arguments with [`cli::command`].
fn parse() -> Result<Cli, clap::Error> {
    let mut cmd = cli::command();
    let mut matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))
}

/// Runs a parsed command line; `Ok` carries the exit code (non-zero for health states).
pub fn run(cli: Cli) -> Result<u8, OpsError> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cli::command(), "ransomeye-ops", &mut script);
            return write_stdout(&script).map(|()| 0);
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cli::command())
                .render(&mut page)
                .map_err(|e| {
                    OpsError::new(
                        Exit::Software,
                        format!("cannot render the manual page: {e}"),
                    )
                })?;
            return write_stdout(&page).map(|()| 0);
        }
        _ => {}
    }
    privilege::require_operator()?;
    init_logging(cli.verbose, cli.quiet);
    commands::dispatch(cli)
}

/// Writes `bytes` to stdout; a closed pipe is [`Exit::StdoutClosed`].
fn write_stdout(bytes: &[u8]) -> Result<(), OpsError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(OpsError::stdout)
}

/// Set by the panic hook when the panic is std's `println!` failing on a closed stdout.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// A panic is a bug: say so in the usual `error:`/`hint:` form (exit 70 is decided where the
/// panic is caught or the panicked thread joined, never here: exiting from the hook would kill
/// the process before the code that joins a worker thread could clean up and report).
///
/// One panic is not a bug: `println!` panics when stdout was closed by its reader
/// (`… | head`). Commands print with it, so that panic is recognised here by std's message
/// and becomes the same quiet exit as [`Exit::StdoutClosed`].
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        if is_closed_stdout_panic(&message) {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            return;
        }
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error{location}: {message}");
        eprintln!("hint: this is a bug in ransomeye-ops; nothing was left under a final name. Please report it");
    }));
}

/// True for std's panic message when `print!`/`println!` hit a closed pipe.
fn is_closed_stdout_panic(message: &str) -> bool {
    let broken_pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe).to_string();
    let os_broken_pipe = std::io::Error::from_raw_os_error(nix::libc::EPIPE).to_string();
    message.starts_with("failed printing to stdout: ")
        && (message.ends_with(&broken_pipe) || message.ends_with(&os_broken_pipe))
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RANSOMEYE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .with_target(false)
        .try_init();
}

/// Whether log lines on stderr may carry ANSI colour: only on a terminal, and not when
/// `NO_COLOR` is set to anything non-empty (<https://no-color.org>), so files, pipes and the
/// journal get plain text.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints an error as `error:` / `hint:` on stderr: failures, and the problems a report shows
/// (`rotate-keys status`), look the same.
pub(crate) fn print_error(err: &OpsError) {
    eprintln!("error: {}", err.what);
    if let Some(hint) = &err.hint {
        eprintln!("hint: {hint}");
    }
}

/// Prints an error as `error:` / `hint:` on stderr, and as a JSON object on stdout with `--json`;
/// nothing for a stdout closed by its reader.
fn report(err: &OpsError, json: bool) {
    if err.exit == Exit::StdoutClosed {
        return;
    }
    print_error(err);
    if json {
        let _ = utils::print_json(&serde_json::json!({
            "status": "error",
            "exit_code": err.exit.code(),
            "error": err.what,
            "hint": err.hint,
        }));
    }
}
