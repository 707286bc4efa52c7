//! `ransomeye-ops`: the Day-2 operations CLI of RansomEye, as a library so that tests and other
//! tools can drive the same code the binary runs.
//!
//! Flow: [`cli`] parses arguments; help, version, completions and man pages are answered for
//! anyone; everything else passes the [`privilege`] gate, then runs in [`commands`]. Failures are
//! [`error::OpsError`]s, printed as `error:`/`hint:` and turned into sysexits codes here only.

pub mod cli;
pub mod commands;
pub mod db;
pub mod dirs;
pub mod error;
pub mod failpoint;
pub mod follow;
pub mod interrupt;
pub mod pace;
pub mod pg_tools;
pub mod privilege;
pub mod run_lock;
pub mod sealed;
pub mod signed;
pub mod table;
pub mod trust;
pub mod utils;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::error::{Exit, OpsError};

/// Runs the CLI with the process's arguments and returns the exit code.
pub fn main_entry() -> ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse() {
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
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            report(&err, json);
            ExitCode::from(err.exit.code())
        }
    }
}

/// Runs a parsed command line; `Ok` carries the exit code (non-zero for health states).
pub fn run(cli: Cli) -> Result<u8, OpsError> {
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "ransomeye-ops", &mut std::io::stdout());
            return Ok(0);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| OpsError::new(Exit::Io, format!("cannot write to stdout: {e}")))?;
            return Ok(0);
        }
        _ => {}
    }
    privilege::require_operator()?;
    init_logging(cli.verbose, cli.quiet);
    commands::dispatch(cli)
}

/// A panic is a bug: say so in the usual `error:`/`hint:` form and exit 70 (EX_SOFTWARE)
/// instead of Rust's default 101 with a backtrace hint.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("error: internal error{location}: {message}");
        eprintln!("hint: this is a bug in ransomeye-ops; nothing was left under a final name. Please report it");
        std::process::exit(i32::from(Exit::Software.code()));
    }));
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
        .with_target(false)
        .try_init();
}

/// Prints an error as `error:` / `hint:` on stderr, and as a JSON object on stdout with `--json`.
fn report(err: &OpsError, json: bool) {
    eprintln!("error: {}", err.what);
    if let Some(hint) = &err.hint {
        eprintln!("hint: {hint}");
    }
    if json {
        let _ = utils::print_json(&serde_json::json!({
            "status": "error",
            "exit_code": err.exit.code(),
            "error": err.what,
            "hint": err.hint,
        }));
    }
}
