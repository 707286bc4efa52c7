//! One module per operation. Each command's top function reads as the steps of its procedure.

pub mod alerts;
pub mod archive;
pub mod backup;
pub mod clean;
pub mod decrypt;
pub mod drill;
pub mod health;
pub mod init;
pub mod logs;
pub mod restore;
pub mod rotate_db_creds;
pub mod rotate_keys;
pub mod tune;
pub mod verify;

use ransomeye_kernel::config::{self, Config, ConfigSource};

use crate::cli::{Cli, Command};
use crate::error::{Exit, OpsError};

/// What every command gets: where the configuration is and how to report.
#[derive(Debug, Clone)]
pub struct Context {
    /// The configuration file and how it was chosen.
    pub config_source: ConfigSource,
    /// `--json`: machine output on stdout.
    pub json: bool,
    /// `-q`: no human output on success (see [`Context::say`]).
    pub quiet: bool,
}

/// Prints a line of a command's human output on stdout, unless `-q` (see [`Context::say`]):
/// `say!(ctx, "format", args…)`.
macro_rules! say {
    ($ctx:expr, $($arg:tt)*) => {
        $ctx.say(format_args!($($arg)*))
    };
}
pub(crate) use say;

impl Context {
    /// Loads the configuration file and applies the environment overrides.
    pub fn config(&self) -> Result<Config, OpsError> {
        let config =
            Config::load(&self.config_source)?.with_env_overrides(|k| std::env::var(k).ok());
        crate::db::configure(&config.database);
        Ok(config)
    }

    /// Prints one line of human output on stdout. The one place `-q` is decided: quiet prints
    /// nothing here, so a cron job mails only on failure (errors go to stderr, always). Data a
    /// command exists to write (`backup cat`, `decrypt -o -`) and `--json` output do not pass
    /// here: asking for them is asking for output.
    pub fn say(&self, line: std::fmt::Arguments<'_>) {
        if !self.quiet {
            println!("{line}");
        }
    }

    /// A progress indicator on stderr (see [`crate::utils::progress`]); hidden with `--json`,
    /// with `-q`, and when stderr is not a terminal.
    pub fn progress(&self, message: &'static str, unit: &'static str) -> indicatif::ProgressBar {
        crate::utils::progress(self.json || self.quiet, message, unit)
    }
}

/// Runs the parsed command; returns the exit code on success (health returns Nagios codes).
pub fn dispatch(cli: Cli) -> Result<u8, OpsError> {
    let ctx = Context {
        config_source: config::resolve_path(
            cli.config.as_deref(),
            std::env::var_os(config::ENV_CONFIG).as_deref(),
        ),
        json: cli.json,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Init(args) => init::run(&ctx, &args).map(|()| 0),
        Command::Archive(args) => archive::run(&ctx, &args)
            .map(|()| 0)
            .map_err(|e| e.with_guarantee("nothing was deleted that is not in a verified archive")),
        Command::Backup(args) => backup::run(&ctx, &args).map(|()| 0).map_err(|e| {
            e.with_guarantee(
                "no backup was left under a final name and older backups are untouched",
            )
        }),
        Command::Verify(args) => verify::run(&ctx, &args).map(|()| 0),
        Command::Restore(args) => restore::run(&ctx, &args).map(|()| 0),
        Command::Drill(args) => drill::run(&ctx, &args)
            .map(|()| 0)
            .map_err(|e| e.with_guarantee("production was not touched")),
        Command::Decrypt(args) => decrypt::run(&ctx, &args).map(|()| 0),
        Command::RotateKeys(args) => rotate_keys::run(&ctx, &args)
            .map_err(|e| e.with_guarantee("the active trust key is unchanged")),
        Command::RotateDbCreds(args) => rotate_db_creds::run(&ctx, &args).map_err(|e| {
            e.with_guarantee("the env files hold a password their role accepts (--resume finishes an interrupted rotation)")
        }),
        Command::Health(args) => health::run(&ctx, &args),
        Command::Tune(args) => tune::run(&ctx, &args).map(|()| 0),
        Command::Logs(args) => logs::run(&ctx, &args).map(|()| 0),
        Command::Clean(args) => clean::run(&ctx, &args).map(|()| 0),
        Command::Alerts(args) => alerts::run(&ctx, &args),
        Command::Completions { .. } | Command::Man => Err(OpsError::new(
            Exit::Software,
            "completions and man are handled before dispatch",
        )),
    }
}
