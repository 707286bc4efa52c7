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
    /// Procedure: check the backup's manifest; take the restore lock (one restore at a time:
    /// a lock file in [backup] dir and a lock on the target database); refuse a target database
    /// that has tables unless --clean; run [services] stop; stream decrypt -> pg_restore (stdin, --exit-on-error,
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
  75  another restore is running, interrupted by a signal (services
      started), or a database lock
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
    /// bus: connect, round-trip time, JetStream available; once `alerts forward` ran, the alerts
    /// waiting for it and the age of the oldest (warning from 5 minutes, critical from an hour).
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

    /// Recommend (and apply) PostgreSQL settings and gunicorn/Celery worker counts for this host.
    ///
    /// Sizes PostgreSQL and the platform's worker pools from the memory and CPUs this host
    /// really offers: the host's, lowered by the limits of the cgroup the service runs in (v1 and
    /// v2; the lower wins), overridable with --memory and --cpus. Every number comes with the
    /// formula that gave it. `tune postgres` shows current -> recommended for each setting and
    /// writes a postgresql.conf fragment (--apply: as a conf.d include, then reloads);
    /// `tune workers` sets gunicorn's `workers` and Celery's `worker_concurrency` in their
    /// configuration files.
    #[command(after_long_help = "\
Exit codes:
   0  done
  64  usage error (a subcommand is missing)
  Each subcommand's --help lists its own.

Examples:
  ransomeye-ops tune postgres --dry-run
  ransomeye-ops tune postgres --workload oltp --apply
  ransomeye-ops tune workers --gunicorn-config /etc/ransomeye/gunicorn.conf.py --dry-run")]
    Tune(TuneArgs),
    /// Archive rotated log files (compressed, encrypted, verified before deleted), verify and read them.
    ///
    /// Works on the directories in [logs] dirs; each gets an archive/ subdirectory with one
    /// archive and one signed index entry per log file. Subcommands: archive, verify, cat.
    #[command(after_long_help = "\
Exit codes:
  64  usage error (no subcommand); the subcommands' --help list theirs

Examples:
  ransomeye-ops logs archive --dry-run
  ransomeye-ops logs verify
  ransomeye-ops logs cat /var/log/ransomeye/archive/core.log.1.zst.enc")]
    Logs(LogsArgs),

    /// Remove old temp files, old symlinks, orphaned upload chunks and empty directories.
    ///
    /// In each [clean] temp_dirs root: regular files and symlinks (the links, never their
    /// targets) whose mtime is older than --older-than, then directories left empty (by this run,
    /// or older than --older-than); never a root itself. In each [clean] buffer_dirs root, every
    /// subdirectory is an upload session; its chunks (regular files) are orphaned when the
    /// session's session.lock is not held (flock) by any process and they are older than
    /// --orphan-age; the lock file and the session directory go with the last chunk.
    ///
    /// Never follows a symlink, never enters another filesystem or a mount point (st_dev), never
    /// leaves its roots: everything is opened and removed through directory descriptors
    /// (openat/unlinkat with O_NOFOLLOW), so a directory swapped for a symlink mid-run cannot
    /// redirect it. Sockets, FIFOs, device nodes and files open in a process are skipped, with
    /// the reason in the report. Roots that are /, a system directory, a symlink, or overlap
    /// [keys] dir, [archive] dir, [backup] dir or a [logs] archive/ are refused (exit 78), also
    /// with --dry-run. One run at a time (lock file in each root).
    ///
    /// Touches: only files and directories below the configured roots.
    #[command(after_long_help = "\
Exit codes:
   0  done (skipped entries are in the report)
  64  usage error
  74  I/O error
  75  another clean run holds the lock
  77  not root or ransomeye-admin, or a root is not accessible
  78  no root configured, or a root refused (/, system dir, protected dir)

Examples:
  ransomeye-ops clean --dry-run
  ransomeye-ops --json clean --older-than 12h --orphan-age 2h")]
    Clean(CleanArgs),
    /// Raise alerts and forward them to the SOC's syslog collector (SIEM).
    ///
    /// Alerts are JSON documents (docs/ALERTS.md) published on NATS subjects alerts.<severity>
    /// and kept in the JetStream stream RANSOMEYE_ALERTS (created with limits if missing) until
    /// `alerts forward` has delivered them. `send` raises one; `forward` delivers them as RFC
    /// 5424 (or RFC 3164) syslog over RELP (default), TCP, TLS or UDP, acking each on the bus
    /// only once the collector accepted it.
    ///
    /// Touches: the stream RANSOMEYE_ALERTS and its consumer ransomeye-forward; nothing on disk.
    #[command(after_long_help = "\
Exit codes:
   0  sent; forwarded (--once: all pending; else stopped by a signal)
  64  usage error (severity, --meta, --raised-at, target, facility)
  69  bus unreachable, the stream full, or (--once) the collector
      unreachable for 60 s (nothing is lost: undelivered alerts stay on
      the bus)
  77  not root or ransomeye-admin
  78  configuration error (including the TLS files)

Examples:
  ransomeye-ops alerts send --severity high --title 'backup failed' \\
    --meta job=nightly
  ransomeye-ops alerts forward --transport relp --target siem.example:2514
  ransomeye-ops alerts forward --once")]
    Alerts(AlertsArgs),

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

/// `logs` arguments.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// What to do with the log files
    #[command(subcommand)]
    pub command: LogsCommand,
}

/// `logs` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Archive rotated log files older than N days, each verified before its original is deleted.
    ///
    /// Candidates: in each [logs] dirs directory (not below it), the regular files matching
    /// [logs] pattern whose mtime is older than --retention-days and not within the last minute,
    /// and that no process has open (/proc/*/fd). Symlinks and other file types are skipped,
    /// never followed.
    ///
    /// Per file: stream -> zstd -> encrypt (archive key; plain when [logs] encrypt = false) ->
    /// hidden temp file in archive/ -> fsync -> read back in full, comparing the SHA-256 of
    /// what it decodes to with the original's -> signed index entry <archive>.entry.json ->
    /// rename to archive/<name>.zst[.enc] -> fsync the directory -> only then delete the
    /// original. A .gz is stored without recompression (archive/<name>[.enc]). A mismatch keeps
    /// the original and exits 65. Then archives whose log is older than
    /// --archive-retention-days are deleted, but only once every archive that stays verified.
    /// A kill at any moment loses nothing: the next run removes temp files and finishes what was
    /// interrupted. --dry-run changes nothing (no lock, no directory created).
    ///
    /// Touches: the matching files in [logs] dirs (deleted once archived) and their archive/
    /// subdirectories.
    #[command(after_long_help = "\
Exit codes:
   0  done (or nothing to archive)
  64  usage error
  65  an archive did not verify (its original is kept) or an archive that
      stays failed verification (nothing expired)
  73  a log or archive directory is missing or not writable
  74  I/O error or disk full (the original is kept)
  75  another logs archive run holds the lock
  77  archive or signing key not available, or not root or ransomeye-admin
  78  configuration error ([logs] dirs empty or invalid)

Examples:
  ransomeye-ops logs archive --dry-run
  ransomeye-ops --json logs archive --retention-days 7")]
    Archive(LogsArchiveArgs),
    /// Verify log archives against their signed index entries.
    ///
    /// For each archive (or FILE): the entry's signature, the archive's size and SHA-256, and a
    /// full read that decrypts and decompresses it and compares the SHA-256 of the result with
    /// the original log's. Archives without an entry and entries without an archive fail.
    /// Touches nothing.
    #[command(after_long_help = "\
Exit codes:
   0  all verified
  64  usage error
  65  an archive or entry failed (each is named)
  66  no such archive, or none at all
  77  key not available, or not root or ransomeye-admin
  78  configuration error

Examples:
  ransomeye-ops logs verify
  ransomeye-ops logs verify /var/log/ransomeye/archive/core.log.1.zst.enc")]
    Verify {
        /// One archive (or its .entry.json) instead of all of them
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Write an archived log's exact original bytes to stdout.
    ///
    /// For a .gz, the .gz bytes. The output is complete and verified only if the exit code is 0.
    /// Touches nothing.
    #[command(after_long_help = "\
Exit codes:
   0  written and verified
  64  usage error
  65  damaged archive or entry
  66  missing
  74  stdout not writable
  77  key not available, or not root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops logs cat /var/log/ransomeye/archive/core.log.1.zst.enc | grep ERROR")]
    Cat {
        /// The archive (or its .entry.json)
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// `clean` arguments.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Report what would be removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Temp files and symlinks older than this (mtime) are removed (e.g. 24h, 3d, 90min)
    #[arg(long, value_name = "AGE", default_value = "24h")]
    pub older_than: humantime::Duration,
    /// Chunks of a dead upload session older than this (mtime) are removed
    #[arg(long, value_name = "AGE", default_value = "6h")]
    pub orphan_age: humantime::Duration,
}

/// `logs archive` arguments.
#[derive(Debug, Args)]
pub struct LogsArchiveArgs {
    /// Archive log files whose mtime is older than this many days
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=36500))]
    pub retention_days: u32,
    /// Delete archives of logs older than this many days (by the log's mtime)
    #[arg(long, value_name = "N", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub archive_retention_days: u32,
    /// Report what a run would archive and expire; change nothing
    #[arg(long)]
    pub dry_run: bool,
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

/// `tune` arguments.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// What to tune
    #[command(subcommand)]
    pub command: TuneCommand,
}

/// The workload PostgreSQL is sized for (PGTune's database types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Web application: many short queries, few writes
    Web,
    /// Online transaction processing: many short reads and writes (RansomEye's ingest)
    Oltp,
    /// Data warehouse: few long analytical queries
    Dw,
    /// A mix of short transactions and reports
    Mixed,
}

/// The storage PostgreSQL's data directory is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Solid-state (SSD, NVMe, SAN)
    Ssd,
    /// Spinning disks
    Hdd,
}

/// `tune` subcommands.
#[derive(Debug, Subcommand)]
pub enum TuneCommand {
    /// Recommend PostgreSQL settings for this host; --apply writes them as a conf.d include.
    ///
    /// Reads the server's current values (pg_settings) and shows current -> recommended for
    /// every setting, with the formula behind it, then the complete postgresql.conf fragment
    /// (or --output FILE). Memory and CPUs are the database host's: the host's figures, lowered
    /// by the limits of the cgroup the PostgreSQL server runs in when it runs on this host
    /// (found from the backend serving our connection), else this process's; --memory and
    /// --cpus override them (give both when the database is on another host).
    ///
    /// Formulas (RAM = memory, in kB; PGTune's, with RansomEye's defaults): shared_buffers = 25
    /// % of RAM; effective_cache_size = 60 % of RAM (the core and NATS share the host; PGTune's
    /// 75 % is --effective-cache 75); maintenance_work_mem = RAM / 16 (dw: RAM / 8), at most 8
    /// GB; wal_buffers = 3 % of shared_buffers, at most 16 MB (14-16 MB rounds to 16 MB), at
    /// least 32 kB; work_mem = (RAM - shared_buffers) / ((max_connections +
    /// max_worker_processes) x 3), halved for dw and mixed, at least 4 MB; min_wal_size /
    /// max_wal_size = 1 GB / 4 GB (web, mixed), 2 GB / 8 GB (oltp), 4 GB / 16 GB (dw);
    /// checkpoint_completion_target = 0.9; default_statistics_target = 100 (dw: 500);
    /// random_page_cost = 1.1 on ssd, 4 on hdd; effective_io_concurrency = 200 on ssd, 2 on
    /// hdd; with 4 CPUs or more: max_worker_processes = max_parallel_workers = CPUs,
    /// max_parallel_workers_per_gather = ceil(CPUs / 2) (at most 4 unless dw),
    /// max_parallel_maintenance_workers = ceil(CPUs / 2), at most 4 (below 4 CPUs PostgreSQL's
    /// defaults 8, 2, 8, 2 stay); max_connections = --connections, else the platform's pools
    /// (gunicorn workers x threads + Celery concurrency, from --gunicorn-config and
    /// --celery-config, else as `tune workers` would set them on this host) plus headroom: 25 %
    /// of the pools, at least 30.
    ///
    /// --apply writes the fragment atomically as 90-ransomeye-tune.conf in the directory of the
    /// server's postgresql.conf `include_dir` (the server must be on this host; a postgresql.conf
    /// without include_dir is refused, exit 78, rather than edited), keeping a copy of the file
    /// it replaces (90-ransomeye-tune.conf.<UTC time>.bak), checks pg_file_settings (an error
    /// puts the previous file back: exit 78), reloads the configuration and reports the
    /// settings that need a restart (pending_restart). --dry-run with --apply says what would be
    /// written and changes nothing.
    ///
    /// Touches: nothing without --apply (and --output FILE); with --apply, the fragment and its
    /// backup in the server's conf.d, and a configuration reload.
    #[command(after_long_help = "\
Exit codes:
   0  recommended (and applied)
  64  usage error
  65  the server reported a value this tool does not understand
  66  --gunicorn-config or --celery-config missing
  69  database unreachable or not answering
  73  --output exists, or the conf.d directory is not writable
  74  I/O error
  75  another tune postgres --apply is running, or the server did not
      read its files within 10 s of the reload
  77  not root or ransomeye-admin, or the role may not read pg_file_settings
      or reload
  78  configuration error: postgresql.conf has no include_dir, the server's
      files are not on this host, or the server rejected the new settings
      (the previous file was put back)

Examples:
  ransomeye-ops tune postgres --dry-run
  ransomeye-ops --json tune postgres --memory 16GiB --cpus 4 --connections 100
  ransomeye-ops tune postgres --workload oltp --storage ssd --apply")]
    Postgres(TunePostgresArgs),

    /// Set gunicorn's workers and Celery's concurrency from this host's CPUs and memory.
    ///
    /// Gunicorn workers = (2 x CPUs) + 1, capped by memory: at most 0.8 x available memory /
    /// --per-worker-memory. Celery concurrency = CPUs, within the memory slots gunicorn's workers
    /// left (at least 1). CPUs and available memory are the host's, lowered by the limits of
    /// this process's cgroup (v1 and v2): run it in the service's container or unit, or pass
    /// --cpus and --memory. Available memory is the host's MemAvailable, or what the cgroup's
    /// limit leaves beside its current use when lower.
    ///
    /// Rewrites the `workers = ...` line of the gunicorn configuration (Python; added if
    /// missing) and the `worker_concurrency = ...` line of the Celery configuration (or an
    /// existing CELERYD_CONCURRENCY), atomically, keeping everything else byte for byte. Warns
    /// when the pools together (gunicorn workers x threads + Celery concurrency) exceed
    /// PostgreSQL's max_connections (read from [database] url when a configuration is there).
    /// --dry-run shows the lines it would write and changes nothing.
    ///
    /// Touches: the two configuration files given; nothing else (restart the services to use
    /// the new numbers).
    #[command(after_long_help = "\
Exit codes:
   0  computed (and written)
  64  usage error
  65  a configuration file sets the value in a way this tool cannot rewrite
      (an expression over several lines)
  66  a configuration file is missing
  73  a configuration file's directory is not writable
  74  I/O error
  75  another tune workers is rewriting the same file
  77  not root or ransomeye-admin, or a file is not readable

Examples:
  ransomeye-ops tune workers --dry-run
  ransomeye-ops tune workers --gunicorn-config /etc/ransomeye/gunicorn.conf.py \\
    --celery-config /etc/ransomeye/celeryconfig.py --per-worker-memory 300MiB")]
    Workers(TuneWorkersArgs),
}

/// `tune postgres` arguments.
#[derive(Debug, Args)]
pub struct TunePostgresArgs {
    /// The workload to size for
    #[arg(long, value_enum, default_value_t = Workload::Oltp)]
    pub workload: Workload,
    /// Memory to plan for (e.g. 16GiB) [default: the database host's, cgroup-aware]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPUs to plan for [default: the database host's, cgroup-aware]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cpus: Option<u32>,
    /// max_connections to plan for [default: the platform's pools plus headroom]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: Option<u32>,
    /// The storage of the data directory
    #[arg(long, value_enum, default_value_t = Storage::Ssd)]
    pub storage: Storage,
    /// effective_cache_size as a percentage of memory (PGTune uses 75)
    #[arg(long, value_name = "PERCENT", default_value_t = 60, value_parser = clap::value_parser!(u32).range(10..=90))]
    pub effective_cache: u32,
    /// Gunicorn configuration whose `workers` (and `threads`) count in the pools
    #[arg(long, value_name = "PATH")]
    pub gunicorn_config: Option<PathBuf>,
    /// Celery configuration whose `worker_concurrency` counts in the pools
    #[arg(long, value_name = "PATH")]
    pub celery_config: Option<PathBuf>,
    /// Also write the fragment to FILE (atomically, never replacing a file)
    #[arg(short, long, value_name = "FILE", conflicts_with = "apply")]
    pub output: Option<PathBuf>,
    /// Write the fragment into the server's conf.d, check it and reload the configuration
    #[arg(long)]
    pub apply: bool,
    /// With --apply: say what would be written and backed up; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `tune workers` arguments.
#[derive(Debug, Args)]
pub struct TuneWorkersArgs {
    /// Gunicorn configuration file (Python) whose `workers` line to set
    #[arg(long, value_name = "PATH")]
    pub gunicorn_config: Option<PathBuf>,
    /// Celery configuration file (Python) whose `worker_concurrency` line to set
    #[arg(long, value_name = "PATH")]
    pub celery_config: Option<PathBuf>,
    /// Memory one worker process needs (resident), e.g. 300MiB
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub per_worker_memory: u64,
    /// Memory available to the workers [default: this host's available memory, cgroup-aware]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPUs the workers may use [default: this host's, cgroup-aware]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cpus: Option<u32>,
    /// Show the lines that would be written; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses a `SIZE` argument (binary units: 16GiB, 512MiB, 16G).
fn parse_size(s: &str) -> Result<u64, String> {
    crate::size::parse(s)
}

/// `alerts` arguments.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// What to do
    #[command(subcommand)]
    pub command: AlertsCommand,
}

/// `alerts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Raise one alert: publish it on alerts.<severity> and wait until JetStream stored it.
    ///
    /// The alert gets a new UUID (or --id), this host's name (or --host), source
    /// ransomeye-ops (or --source) and this host's time (or --raised-at). Sending the same
    /// --id twice within two minutes stores it once. A --meta value that is not UTF-8 is kept
    /// with its bytes written as \xNN.
    #[command(after_long_help = "\
Exit codes:
   0  stored (also when the same --id was stored before)
  64  bad severity, --meta, --id or --raised-at (nothing published)
  69  bus unreachable, or the stream full (it refuses new alerts rather
      than dropping unforwarded ones)
  77  not root or ransomeye-admin
  78  configuration error

Example:
  ransomeye-ops alerts send --severity critical --title 'Mass encryption' \\
    --host ws-042 --meta path=/srv/share --meta process=x.exe")]
    Send(AlertsSendArgs),
    /// Deliver pending alerts to the syslog collector; ack each only once it was accepted.
    ///
    /// A durable JetStream consumer (ransomeye-forward) reads the alerts in order, renders
    /// each (RFC 5424 by default; the timestamp is the alert's own raised_at, never this
    /// host's clock) and sends them in batches. An alert is acked on the bus only after the
    /// collector accepted it: RELP: its rsp 200; TCP/TLS: written and flushed (octet
    /// counting); UDP: sent (lossy, for old collectors). While the collector is down, alerts
    /// wait on the bus and the forwarder reconnects with capped exponential backoff and
    /// jitter. A kill at any moment loses nothing (at worst, alerts of the batch in flight are
    /// sent again). Settings: the options, else [alerts] in the configuration.
    ///
    /// Without --once it runs until SIGTERM/SIGINT, which finish the batch in flight, ack what
    /// was delivered and exit 0. --once delivers what is pending and exits.
    #[command(after_long_help = "\
Exit codes:
   0  --once: nothing left pending; else stopped by SIGTERM, SIGINT or
      SIGHUP after the batch in flight
  64  usage error, no target, bad --facility
  69  bus unreachable or lost, or (--once) the collector accepted nothing
      for 60 s; nothing is lost: undelivered alerts stay on the bus
  77  not root or ransomeye-admin, or [alerts] tls_key readable by others
  78  configuration error ([alerts] values, TLS files)

Examples:
  ransomeye-ops alerts forward --transport relp --target siem.example:2514
  ransomeye-ops alerts forward --once --transport tcp --format rfc3164 \\
    --target 10.0.0.5:514")]
    Forward(AlertsForwardArgs),
}

/// `alerts send` arguments.
#[derive(Debug, Args)]
pub struct AlertsSendArgs {
    /// Severity: emergency, alert, critical, error, warning, notice, informational, debug,
    /// or high, medium, low, info
    #[arg(long, value_name = "S")]
    pub severity: String,
    /// One line saying what happened
    #[arg(long, value_name = "T")]
    pub title: String,
    /// Metadata, KEY=VALUE (repeatable)
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<std::ffi::OsString>,
    /// Where it happened [default: this host's name]
    #[arg(long, value_name = "H")]
    pub host: Option<String>,
    /// What raised it
    #[arg(long, value_name = "NAME", default_value = "ransomeye-ops")]
    pub source: String,
    /// The alert's id [default: a new UUID]; a retry with the same id is stored once
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// When it was raised, RFC 3339 [default: now, by this host's clock]
    #[arg(long, value_name = "TIME")]
    pub raised_at: Option<String>,
}

/// `alerts forward` arguments.
#[derive(Debug, Args)]
pub struct AlertsForwardArgs {
    /// Deliver what is pending, then exit
    #[arg(long)]
    pub once: bool,
    /// Transport [default: [alerts] transport, else relp]
    #[arg(long, value_enum)]
    pub transport: Option<crate::syslog::sink::Transport>,
    /// The collector, HOST:PORT [default: [alerts] target]
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Syslog format [default: [alerts] format, else rfc5424]
    #[arg(long, value_enum)]
    pub format: Option<crate::alerts::render::Format>,
    /// Syslog facility, name or number [default: [alerts] facility, else local0]
    #[arg(long, value_name = "NAME")]
    pub facility: Option<String>,
}
