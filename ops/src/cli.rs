//! The command line: global options and one subcommand per operation (clap derive; the doc
//! comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The exit codes of every command, after the top-level `--help`.
const EXIT_CODES: &str = "\
Exit codes (sysexits; health uses Nagios codes 0-3 for its result):
   0  success (also when the reader of stdout closed it early, as `| head` does)
  64  usage error
  65  corrupt or tampered data, orphan
  66  input file missing
  69  service unavailable or silent
  70  internal error (a bug)
  73  cannot create output (exists, no directory)
  74  I/O error (e.g. disk full)
  75  retry later (lock held, interrupted, aborted)
  77  permission denied
  78  configuration error";

/// The heading the options every command takes are listed under, apart from its own.
const GLOBAL: &str = "Global options";

/// Day-2 operations for RansomEye: encrypted backups, audit-log archival, trust-key rotation and
/// deep health checks — atomic, verified, encrypted.
///
/// Every operation requires root or membership in group 'ransomeye-admin'.
#[derive(Debug, Parser)]
#[command(
    name = "ransomeye-ops",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_long_help = EXIT_CODES)]
pub struct Cli {
    /// Configuration file [default: $RANSOMEYE_CONFIG, else /etc/ransomeye/kernel.toml]
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,

    /// Machine-readable JSON on stdout (human messages and logs stay on stderr)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,

    /// Print nothing on success: no report on stdout, only errors on stderr (--json output
    /// and data written to stdout are still printed)
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,

    /// The operation to run
    #[command(subcommand)]
    pub command: Command,
}

/// The command line's definition: [`Cli`]'s, with the global options hidden on the commands
/// they do not apply to (`completions` and `man` read no configuration, log nothing and print
/// no JSON). They stay accepted there, so a `--json` in a wrapper script does no harm.
pub fn command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    for name in ["completions", "man"] {
        let hidden = globals.clone();
        cmd = cmd.mut_subcommand(name, move |mut sc| {
            for arg in hidden {
                sc = sc.arg(arg.global(false).hide(true));
            }
            sc
        });
    }
    cmd
}

/// The operations.
///
/// Each command's doc comment is its help: the first paragraph the one-line summary, the rest
/// its long help, one unwrapped paragraph each so that clap wraps them to the terminal. Exit
/// codes and examples are pre-formatted (`after_long_help`), each line short enough that clap
/// never has to break one, so examples paste as they are.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the configuration and all keys of a new installation.
    ///
    /// Writes the configuration file (--config, $RANSOMEYE_CONFIG or /etc/ransomeye/kernel.toml)
    /// and creates signing.key (Ed25519 trust root), archive.key and backup.key in --keys-dir,
    /// plus the keys, archive and backup directories if missing. When group ransomeye-admin
    /// exists, files are 0640 and the directories it creates 2770 (group-writable, setgid), group
    /// ransomeye-admin, so members can operate; otherwise 0600 and 0700. Existing directories are
    /// left as they are (with a warning if members cannot write there). Prints the trust public
    /// key and the key ids.
    ///
    /// Touches: the configuration file, its directory and the keys, archive and backup
    /// directories; nothing else. Refuses (exit 73) if the configuration or any key already
    /// exists: replacing a key is rotation's job.
    #[command(after_long_help = "\
Exit codes:
   0  created
  64  usage error, or a URL that is not valid
  73  the configuration or a key exists, or a directory cannot be created
  74  I/O error
  77  not root or ransomeye-admin

Example:
  ransomeye-ops init \\
    --database-url postgres://ransomeye@127.0.0.1/ransomeye \\
    --nats-url nats://127.0.0.1:4222 --keys-dir /etc/ransomeye/keys \\
    --archive-dir /mnt/cold_storage --backup-dir /var/backups/ransomeye")]
    Init(InitArgs),

    /// Decrypt a file written by ransomeye-ops (archive or backup) to stdout or a file.
    ///
    /// The key is chosen by the key id in the file's header from [keys] dir. The output is
    /// exactly what was encrypted: for an archive the zstd stream (pipe it through `zstd -d`),
    /// for a backup the dump stream. Every byte is authenticated; any truncation, reordering,
    /// appended data or flipped bit fails with exit 65. With -o, OUT appears only after the whole
    /// file verified (atomic write). On stdout, bytes of earlier segments may already have been
    /// written when a later segment fails: treat the output as invalid unless the exit code is 0.
    ///
    /// Touches: reads FILE and the key; writes OUT (never replacing an existing file) or stdout.
    #[command(after_long_help = "\
Exit codes:
   0  decrypted
  64  usage error, or stdout is a terminal
  65  damaged or tampered file
  66  FILE missing
  73  OUT exists
  74  I/O error or disk full
  77  key not available, or not root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops decrypt /mnt/cold_storage/logs_2026-11-23.zst.enc | zstd -d | head")]
    Decrypt(DecryptArgs),

    /// Move audit logs older than N days to encrypted cold storage, verified before deleted.
    ///
    /// Moves audit-log rows older than N days to an encrypted archive in [archive] dir, verified
    /// before deleted.
    ///
    /// Procedure: lock (one run per table) -> finish what an interrupted run left -> cutoff from
    /// the database clock (now() - N days) -> stream the old rows in primary-key order as JSON
    /// Lines -> zstd -> encrypt (archive key) -> logs_<YYYY-MM-DD>[.N].zst.enc plus a signed
    /// manifest -> read the file back in full and check it -> delete the archived rows in short
    /// batches, each only if still exactly the archived version (a row updated meanwhile stays
    /// for a later run) -> VACUUM (ANALYZE) -> report. A row is deleted only once it is in a
    /// verified file; a kill at any moment loses nothing, and the next run finishes the
    /// interrupted one. SIGINT, SIGTERM or SIGHUP stop the run between prune batches (exit 75;
    /// the next run deletes the rest). A run removes only its own temp files; orphans (a data
    /// file without its manifest, or the reverse) are reported and kept. --dry-run changes
    /// nothing: no lock file, nothing completed or removed; it exits 0 and says when the
    /// archive dir lacks the space for the estimated file (the run would then fail with 74).
    /// Nothing old enough: no file, exit 0.
    ///
    /// Touches: rows of [archive] table older than the cutoff (deleted after archiving), files
    /// in [archive] dir. Subcommands list, verify, cat and restore inspect or bring back
    /// archives.
    #[command(after_long_help = "\
Exit codes:
   0  done (or nothing to archive)
  64  usage error
  65  an archive does not verify
  69  database unreachable or not answering
  73  archive dir missing or not writable
  74  I/O error or disk full (nothing deleted)
  75  another run holds the lock (a live holder: at once), a database lock
      or conflict, or interrupted by a signal
  77  permission or key problem, or the database refused the role
  78  table or column missing, or configuration error

Examples:
  ransomeye-ops archive --dry-run
  ransomeye-ops archive --days 90
  ransomeye-ops archive verify --all
  ransomeye-ops archive cat /mnt/cold_storage/logs_2026-11-23.zst.enc | head")]
    Archive(ArchiveArgs),

    /// Take an encrypted, verified backup of the database and the files around it.
    ///
    /// Takes one consistent, encrypted, verified backup of the database and the files around it.
    ///
    /// Procedure: lock (one backup at a time) -> complete or remove the temp files an interrupted
    /// backup left -> open a REPEATABLE READ snapshot (no write lock: writers carry on) ->
    /// pg_dump --snapshot (custom format) -> zstd -> encrypt (backup key) ->
    /// ransomeye_<UTC YYYYMMDDTHHMMSSZ>.enc, read back in full as it is written (decrypt,
    /// decompress, hashes, pg_restore --list), while counting every table's rows and exporting
    /// the intel graph in the same snapshot -> tar of the kernel configuration, [backup] include,
    /// the intel graph export and [backup] artifacts_dir (each file once, never anything in
    /// [keys] dir; incremental: unchanged artifacts are referenced from the backup holding them)
    /// -> zstd -> encrypt -> ransomeye_<ts>.files.enc, read back -> signed manifest
    /// ransomeye_<ts>.manifest.json (committed last) -> the committed files hashed against it ->
    /// retention: keep the newest --keep backups that check out. The plaintext dump never
    /// touches the disk. A failed dump never becomes a file under a final name. Data files
    /// without a manifest (orphans: their manifest was lost) are reported and never deleted.
    /// SIGINT, SIGTERM or SIGHUP stop the run before the commit: temp files removed, older
    /// backups untouched, exit 75.
    ///
    /// Touches: files in [backup] dir (creates three, deletes backups beyond --keep); reads the
    /// database.
    #[command(after_long_help = "\
Exit codes:
   0  verified
  64  usage error
  65  the new backup failed verification
  69  database unreachable or not answering, or pg_dump missing or too old
  73  backup dir missing or not writable
  74  I/O error or disk full (older backups intact)
  75  another backup is running, a database lock or conflict, or
      interrupted by a signal
  77  permission or key problem, or the database refused the role
  78  the RansomEye schema is missing, or configuration error

Examples:
  ransomeye-ops backup
  ransomeye-ops --json backup --keep 14
  ransomeye-ops backup list
  ransomeye-ops backup cat ransomeye_20261123T020000Z | pg_restore --list")]
    Backup(BackupArgs),

    /// Verify backups completely: signature, hashes, decrypt, pg_restore --list, tar, graph.
    ///
    /// Verifies backups completely without restoring them: manifest signature; size and SHA-256
    /// of every file; a full authenticated decrypt; the dump streamed through
    /// `pg_restore --list` (no plaintext on disk); every tar entry against the manifest; the
    /// intel graph export's integrity and digest; artifacts kept in older backups.
    ///
    /// Touches nothing.
    #[command(after_long_help = "\
Exit codes:
   0  all verified
  64  usage error
  65  a backup failed (each is named with what failed) or, with --all, an
      orphan data file (no manifest) is present
  66  no such backup, or with --all no backup at all (nothing verified is a
      failure for monitoring)
  69  pg_restore missing or too old
  73  backup dir missing
  77  backup key not available, or not root or ransomeye-admin
  78  configuration error

Examples:
  ransomeye-ops verify ransomeye_20261123T020000Z
  ransomeye-ops --json verify --all")]
    Verify(VerifyArgs),

    /// Restore a backup into a database (and its files into a directory).
    ///
    /// Procedure: check the backup's manifest; refuse a target database that has tables unless
    /// --clean; run [services] stop; stream decrypt -> pg_restore (stdin, --exit-on-error,
    /// --single-transaction), verifying the dump as it streams and the file bundle beside it,
    /// and holding the dump's last bytes back until both checked out, so a damaged backup
    /// restores nothing and a failed restore leaves the target as it was; restore files under
    /// --files-to (following the incremental chain for artifacts; existing files are only
    /// replaced with --yes; nothing is ever written into [keys] dir); compare every table's row
    /// count and the intel graph digest with the manifest; run [services] start, also when the
    /// restore failed or was interrupted. On SIGINT, SIGTERM or SIGHUP a running stop command is
    /// killed, or the restore stops before pg_restore starts or commits (the target stays as it
    /// was); [services] start is run either way; exit code 75.
    ///
    /// Touches: the target database; files under --files-to; the configured services.
    #[command(after_long_help = "\
Exit codes:
   0  restored and matching
  64  usage error, or --target-database-url is not a valid URL
  65  backup damaged (nothing restored) or restored data does not match
  66  no such backup
  69  database unreachable or not answering, pg_restore missing or
      failed, or a [services] command failed
  73  target database not empty (use --clean) or a file exists (use --yes)
  74  I/O error or disk full while restoring files
  75  interrupted by a signal (services started), or a database lock
  77  key not available, the database refused the role, or not root or
      ransomeye-admin
  78  the target database does not exist, or configuration error

Example:
  ransomeye-ops restore ransomeye_20261123T020000Z \\
    --target-database-url postgres://postgres@db2/ransomeye \\
    --files-to /srv/restore")]
    Restore(RestoreArgs),

    /// Disaster-recovery drill: restore the newest backup into a scratch database and check it.
    ///
    /// Without touching production: the newest backup -> drop the scratch databases of earlier
    /// drills that were killed (only those marked as a drill's whose creating session is gone)
    /// -> full verification -> restore into a scratch database ransomeye_drill_<ts>_<pid> on the
    /// same server (or --target-database-url, which must be empty) -> compare every table's row
    /// count and the intel graph digest with the manifest -> drop the scratch database (also
    /// after a failure, or SIGINT/SIGTERM/SIGHUP: exit 75) -> report pass/fail and the measured
    /// restore time (RTO). Services are not stopped. The role in [database] url needs CREATEDB
    /// for the scratch database.
    ///
    /// Touches: creates and drops the scratch database, and leftovers of killed drills.
    #[command(after_long_help = "\
Exit codes:
   0  drill passed
  64  usage error
  65  backup damaged or restored data does not match
  66  no backup
  69  database unreachable or not answering, or pg_restore missing
  73  target not empty
  74  I/O error or disk full
  75  interrupted by a signal (scratch database dropped), or a database
      lock
  77  key not available, the role lacks CREATEDB or was refused, or not
      root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops --json drill")]
    Drill(DrillArgs),

    /// Rotate the Ed25519 trust key across all agents: signed update, quorum of acks, commit.
    ///
    /// Rotates the Ed25519 trust root to a new key across every agent, without downtime
    /// (docs/TRUST_UPDATE.md).
    ///
    /// Procedure: lock (one rotation at a time) -> check the old key, the configuration's
    /// directory, the bus and the active agents -> generate the new key, write it as
    /// signing.key.next and read it back -> journal `pending` -> publish a TrustUpdate on
    /// broadcast.updates (signed by the old and the new key; kept in the JetStream stream
    /// RANSOMEYE_TRUST; re-published every 5 s for agents that come back) -> collect agents'
    /// signed acks until strictly more than --quorum of the active agents acked, or --timeout ->
    /// commit: set the three [trust] values in the configuration (version+1, key_id,
    /// public_key; the rest of the file is kept byte for byte), keep the old key as
    /// keys/retired/<key id>, make the new key signing.key, publish TrustCommit; or abort:
    /// publish TrustAbort, remove the new key, change nothing else (exit 75 with the counts).
    /// Publishing the outcome takes at most 5 s, so a run ends within --timeout + 5 s of
    /// publishing the update; an outcome the bus did not take stays in the journal, `status`
    /// exits 75 and --resume publishes it. --dry-run changes nothing (no lock file, no clean-up,
    /// no stream) and lists what a run would clean; with --resume, what the resume would finish.
    ///
    /// Only acks from agents with status 'active', signed with the key registered in table
    /// agents, for this rotation and version count; forged, unknown, duplicate and replayed acks
    /// are counted and reported. A crash at any moment leaves one active key matching the
    /// configuration; --resume finishes the rotation (`status` shows it). signing.key.next and
    /// retired keys are key files like the others (0640 with group ransomeye-admin, else 0600).
    /// --rollback returns to the previous key as a new version (needs --yes): never roll back to
    /// a key that may be compromised.
    ///
    /// Touches: [keys] dir (signing.key, signing.key.next, retired/, rotation-journal.json), the
    /// configuration's [trust] section, the bus; reads table agents.
    #[command(after_long_help = "\
Exit codes:
   0  committed (or nothing to resume)
  64  bad --quorum, or --rollback without --yes
  65  journal or key files inconsistent
  66  nothing to roll back to
  69  bus or database unreachable or not answering (nothing generated or
      changed; if the update itself could not be published, e.g. the
      trust stream is full, the rotation stays pending for --resume)
  73  [keys] dir not writable
  74  configuration not writable (abort published, old key still active)
  75  no quorum (aborted), no active agents, another rotation running, an
      unfinished rotation (use --resume), or a database lock
  77  signing key missing or loose permissions, the configuration's
      directory not writable by you, or the database refused the role
  78  table agents missing, or configuration error

Examples:
  ransomeye-ops rotate-keys --dry-run
  ransomeye-ops rotate-keys --timeout 120 --quorum 0.9
  ransomeye-ops rotate-keys status
  ransomeye-ops rotate-keys --resume
  ransomeye-ops rotate-keys --rollback --yes")]
    RotateKeys(RotateKeysArgs),

    /// Rotate the services' PostgreSQL passwords, proven before anything depends on them.
    ///
    /// For each [[credentials]] entry (or those whose role or roles contain a --role):
    /// check the env files (exist, parse, writable) and the roles (exist, not a superuser, not
    /// the tool's own login, their password readable and alterable) -> create a password
    /// (256 bits from the system RNG, URL-safe), kept only in a pending file in [keys] dir
    /// (key-file modes) until the env files hold it; the journal records the state and each
    /// role's current SCRAM verifier, never a password -> set it as a SCRAM-SHA-256 verifier
    /// computed here (the server, its log and pg_stat_statements never see the password); with
    /// `roles` (alternating) on the role the env files do not name, so the one in use keeps
    /// working -> test it with a fresh login (on failure the old verifier is restored: 75) ->
    /// rewrite each env file atomically, only the configured keys' values changed (a URL's
    /// password, and its user when alternating; comments, order, quoting, mode and owner
    /// kept), run `restart`, then `check`; if one fails, files, services and verifiers go back
    /// (75) -> journal done, the pending file removed.
    ///
    /// A crash at any moment is finished or undone by --resume (before the files switch it
    /// undoes, after it finishes); until then a new rotation is refused (75). `status` shows the
    /// journal. --dry-run checks everything and changes nothing.
    ///
    /// Touches: [keys] dir (db-creds-journal.json, db-creds.pending), the roles' passwords,
    /// the configured env files; runs the configured restart and check commands.
    #[command(after_long_help = "\
Exit codes:
   0  rotated (or nothing to resume)
  64  usage error
  65  journal or pending file unreadable
  69  database unreachable, or a restart command could not run
  73  an env file or [keys] dir not writable (nothing changed)
  75  the new password did not work, or a service failed its check
      (everything put back); another rotation running; an unfinished
      rotation (use --resume)
  77  the tool may not read or alter a role's password
  78  configuration error: no matching [[credentials]], an env file
      missing or unparsable, a role missing, a superuser, or the tool's
      own login

Examples:
  ransomeye-ops rotate-db-creds --dry-run
  ransomeye-ops rotate-db-creds --role ransomeye_core
  ransomeye-ops rotate-db-creds status
  ransomeye-ops rotate-db-creds --resume")]
    RotateDbCreds(RotateDbCredsArgs),

    /// Check database, bus, disk space and host; Nagios-style exit code.
    ///
    /// Deep health check of database, bus, disk and host, run concurrently, each bounded by
    /// --timeout: a check that does not answer in time (a hung peer, statvfs on a dead network
    /// mount) is critical, and health still exits on time.
    ///
    /// database: connect, `select 1` latency, server version, connections used vs
    /// max_connections.
    ///
    /// bus: connect, round-trip time, JetStream available.
    ///
    /// disk: each configured directory (keys, archive, backup): free space and inodes; critical
    /// below 10 % free, warning below 20 %; warning for backup data files without a manifest
    /// (orphans).
    ///
    /// host: load per core, available memory, disk I/O utilisation.
    ///
    /// The overall status is the worst check. Exit codes follow the Nagios plugin convention;
    /// usage, permission and configuration errors keep their sysexits codes.
    ///
    /// Touches: nothing but --prometheus FILE (node_exporter textfile format, written
    /// atomically).
    #[command(after_long_help = "\
Exit codes:
   0  OK
   1  WARNING
   2  CRITICAL
   3  UNKNOWN
  64  usage error
  74  --prometheus FILE cannot be written
  77  not root or ransomeye-admin
  78  configuration error

Examples:
  ransomeye-ops --json health --timeout 3
  ransomeye-ops health \\
    --prometheus /var/lib/node_exporter/textfile/ransomeye.prom")]
    Health(HealthArgs),

    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    ///
    /// Works for any user. Touches nothing; prints to stdout.
    #[command(after_long_help = "\
Exit codes:
   0  printed
  64  unknown shell

Example:
  ransomeye-ops completions bash > /etc/bash_completion.d/ransomeye-ops")]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) to stdout.
    ///
    /// Works for any user. Touches nothing; prints to stdout.
    #[command(after_long_help = "\
Exit codes:
   0  printed
  64  usage error
  74  stdout not writable

Example:
  ransomeye-ops man | man -l -")]
    Man,
}

/// `rotate-keys` arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RotateKeysArgs {
    /// Show the state instead of rotating
    #[command(subcommand)]
    pub command: Option<RotateKeysCommand>,
    /// Seconds to collect acks (agents keep the pending key 30 s longer, for the commit to reach them)
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400), conflicts_with = "resume")]
    pub timeout: u64,
    /// Commit needs acks from strictly more than this fraction of the active agents
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.8,
        conflicts_with = "resume"
    )]
    pub quorum: f64,
    /// Check keys, configuration, bus and agents and say what a rotation (or with --resume, the
    /// resume) would need, finish or clean; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Finish an interrupted rotation as its journal says (with its quorum and deadline)
    #[arg(long, conflicts_with = "rollback")]
    pub resume: bool,
    /// Rotate back to the previous (retired) key as a new version; needs --yes
    #[arg(long)]
    pub rollback: bool,
    /// Confirm --rollback
    #[arg(long)]
    pub yes: bool,
}

/// `rotate-keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum RotateKeysCommand {
    /// Show the trust version, active, staged and retired keys, and the rotation journal.
    ///
    /// Touches nothing.
    #[command(after_long_help = "\
Exit codes:
   0  shown, no problem
  64  usage error
  65  journal unreadable, or the active key file is malformed
  75  a rotation is unfinished (running, interrupted, or its commit or
      abort not yet published: run --resume)
  77  not root or ransomeye-admin, or the active key file is missing or
      insecure
  78  configuration error, or the active key file is not the configured
      trust key

Example:
  ransomeye-ops --json rotate-keys status")]
    Status,
}

/// `rotate-db-creds` arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RotateDbCredsArgs {
    /// Show the journal instead of rotating
    #[command(subcommand)]
    pub command: Option<RotateDbCredsCommand>,
    /// Rotate only the entries whose role or roles contain ROLE (repeatable)
    #[arg(long, value_name = "ROLE", conflicts_with = "resume")]
    pub role: Vec<String>,
    /// Check files, roles and permissions and say what a rotation would change; change nothing
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,
    /// Finish (files already switching) or undo (before) an interrupted rotation
    #[arg(long)]
    pub resume: bool,
}

/// `rotate-db-creds` subcommands.
#[derive(Debug, Subcommand)]
pub enum RotateDbCredsCommand {
    /// Show the credential rotation journal.
    ///
    /// Touches nothing.
    #[command(after_long_help = "\
Exit codes:
   0  shown, nothing unfinished
  64  usage error
  65  journal unreadable
  75  a rotation is unfinished (run --resume)
  77  not root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops --json rotate-db-creds status")]
    Status,
}

/// `init` arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// PostgreSQL URL of the RansomEye database
    #[arg(long, value_name = "URL")]
    pub database_url: String,
    /// NATS URL of the bus
    #[arg(long, value_name = "URL")]
    pub nats_url: String,
    /// Directory for the key files
    #[arg(long, value_name = "DIR")]
    pub keys_dir: PathBuf,
    /// Cold-storage directory for encrypted audit-log archives
    #[arg(long, value_name = "DIR")]
    pub archive_dir: PathBuf,
    /// Directory for encrypted backups
    #[arg(long, value_name = "DIR")]
    pub backup_dir: PathBuf,
}

/// `decrypt` arguments.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The encrypted file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the plaintext here (atomically, never replacing a file) instead of stdout; `-`
    /// is stdout
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
}

/// `archive` arguments: a run, or one of the subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ArchiveArgs {
    /// Inspect or restore archives instead of archiving
    #[command(subcommand)]
    pub command: Option<ArchiveCommand>,
    /// Options of an archive run
    #[command(flatten)]
    pub run: ArchiveRunArgs,
}

/// Options of an archive run.
#[derive(Debug, Args)]
pub struct ArchiveRunArgs {
    /// Archive rows older than this many days [default: [archive] retention_days]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: Option<u32>,
    /// Report what a run would complete, remove and archive (rows, estimated size); change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Rows deleted per transaction while pruning (with pacing on, [archive] prune_slice_ms, the most)
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// zstd compression level
    #[arg(long, value_name = "L", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,
    /// Skip VACUUM (ANALYZE) after pruning
    #[arg(long)]
    pub no_vacuum: bool,
}

/// `archive` subcommands.
#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// List archives in [archive] dir: rows, time range, state.
    ///
    /// Touches nothing; reads manifests only (use verify to check the files).
    #[command(after_long_help = "\
Exit codes:
   0  listed
  64  usage error
  65  a manifest is unreadable or an orphan is present
  73  archive dir missing
  77  not root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops --json archive list")]
    List,
    /// Verify archives: manifest signature, file hash, full authenticated read, row count.
    ///
    /// Touches nothing; reads every byte of each archive.
    #[command(after_long_help = "\
Exit codes:
   0  all verified
  64  usage error
  65  an archive or its manifest failed (each is named) or, with --all, an
      orphan is present
  66  no such archive, or with --all, no archive in [archive] dir
  73  archive dir missing
  77  key not available, or not root or ransomeye-admin
  78  configuration error

Examples:
  ransomeye-ops archive verify /mnt/cold_storage/logs_2026-11-23.zst.enc
  ransomeye-ops archive verify --all")]
    Verify {
        /// The archive (.zst.enc) or its manifest
        #[arg(
            value_name = "FILE",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        file: Option<PathBuf>,
        /// Every archive in [archive] dir
        #[arg(long)]
        all: bool,
    },
    /// Write an archive's rows to stdout as JSON Lines.
    ///
    /// Touches nothing; writes JSON Lines to stdout. Output is complete only if the exit code is
    /// 0 and the reader read to the end.
    #[command(after_long_help = "\
Exit codes:
   0  written
  64  usage error
  65  damaged archive
  66  missing
  74  stdout not writable
  77  key not available, or not root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops archive cat logs_2026-11-23.zst.enc \\
    | jq -c 'select(.actor == \"alice\")'")]
    Cat {
        /// The archive (.zst.enc) or its manifest
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Re-insert an archive's rows into the table, skipping rows whose key exists.
    ///
    /// Touches [archive] table: inserts the archive's rows; rows whose primary key exists are
    /// left as they are. The archive is verified in full first.
    #[command(after_long_help = "\
Exit codes:
   0  restored
  64  usage error
  65  damaged archive
  66  missing
  69  database unreachable or not answering
  74  I/O error, or the database server's disk is full
  75  a database lock or conflict
  77  key not available, the database refused the role, or not root or
      ransomeye-admin
  78  table missing, or configuration error

Example:
  ransomeye-ops archive restore /mnt/cold_storage/logs_2026-10-01.zst.enc")]
    Restore {
        /// The archive (.zst.enc) or its manifest
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `backup` arguments: a run, or one of the subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// Inspect backups instead of taking one
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Keep this many verified backups [default: [backup] keep]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub keep: Option<u32>,
}

/// `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// List backups in [backup] dir, with a quick check of each.
    ///
    /// Touches nothing. The quick check is the manifest signature and the files' sizes; `verify`
    /// reads everything.
    #[command(after_long_help = "\
Exit codes:
   0  listed, every backup passed the quick check
  64  usage error
  65  a backup is damaged, or an orphan data file (no manifest) is present
  73  backup dir missing
  77  not root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops --json backup list")]
    List,
    /// Write a backup's plain custom-format dump to stdout (for pg_restore by hand).
    ///
    /// Touches nothing; writes the dump to stdout (refuses a terminal). Output is valid only if
    /// the exit code is 0 and the reader read to the end.
    #[command(after_long_help = "\
Exit codes:
   0  written
  64  usage error, or stdout is a terminal
  65  damaged backup
  66  no such backup
  74  stdout not writable
  77  key not available, or not root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops backup cat ransomeye_20261123T020000Z \\
    | pg_restore -d postgres://localhost/scratch")]
    Cat {
        /// The backup: its name or any of its files
        #[arg(value_name = "BACKUP")]
        backup: PathBuf,
    },
}

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup: its name or any of its files
    #[arg(
        value_name = "BACKUP",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub backup: Option<PathBuf>,
    /// Every backup in [backup] dir
    #[arg(long)]
    pub all: bool,
}

/// `restore` arguments.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup: its name or any of its files
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,
    /// PostgreSQL URL of the database to restore into
    #[arg(long, value_name = "URL")]
    pub target_database_url: String,
    /// Restore the backed-up files under DIR (their original paths below it)
    #[arg(long, value_name = "DIR")]
    pub files_to: Option<PathBuf>,
    /// Allow a target database that has tables: the backup's objects are dropped and recreated
    #[arg(long)]
    pub clean: bool,
    /// Allow replacing existing files under --files-to
    #[arg(long)]
    pub yes: bool,
}

/// `drill` arguments.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Restore into this (empty) database instead of a scratch database on the same server
    #[arg(long, value_name = "URL")]
    pub target_database_url: Option<String>,
}

/// `health` arguments.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Seconds each check may take before it counts as critical
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub timeout: f64,
    /// Also write node_exporter textfile metrics to FILE (atomically)
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
}
