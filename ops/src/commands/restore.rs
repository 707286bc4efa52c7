//! `restore`: a verified backup back into a database, and its files into a directory.
//!
//! [`run`] reads as the procedure: check the manifest → refuse a non-empty target (unless
//! `--clean`) and existing files (unless `--yes`) → stop services → stream decrypt →
//! `pg_restore` (one transaction: a failure leaves the target as it was), the dump verified as
//! it streams and the bundle beside it, the dump's last bytes held back until both checked out →
//! restore files, following the incremental chain → compare row counts and the intel graph
//! digest with the manifest → start services, also after a failure or a signal. Every refusal
//! comes before anything changes, and a damaged dump restores nothing. A signal (see
//! [`crate::interrupt`]) kills a running stop command, or stops the restore before pg_restore
//! starts or commits; the services are started either way. No file is ever written into
//! `[keys] dir` (backups made before keys were excluded hold them; see `backup::fence`): such
//! entries are left out and reported, as is a second entry for the same file. `drill` uses the same [`restore`]
//! without services or files.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ransomeye_kernel::access::Ownership;
use ransomeye_kernel::atomic_file::{AtomicFile, Replace};
use ransomeye_kernel::config::Services;
use ransomeye_kernel::keys::{KeyDir, KeyPurpose, SymmetricKey};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use super::backup::check::{self, Tools};
use super::backup::fence::{Excluded, KeysFence};
use super::backup::manifest::{Entry, Kind, Manifest, Paths};
use super::backup::{bundle, count_rows, intel_error};
use super::Context;
use crate::cli::RestoreArgs;
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::interrupt;
use crate::sealed::SealedReader;
use crate::utils::{elapsed_ms, print_json, runtime};

/// What to restore, where.
pub(crate) struct Plan<'a> {
    pub paths: Paths,
    pub key: &'a SymmetricKey,
    pub trust_keys: crate::trust::TrustKeys,
    pub tools: Tools,
    pub target_url: String,
    pub files_to: Option<FilesTo>,
    pub clean: bool,
    pub yes: bool,
    /// Services to stop and start around the restore (`None`: leave them alone).
    pub services: Option<&'a Services>,
}

/// Where backed-up files are restored (`--files-to`).
pub(crate) struct FilesTo {
    /// Each file goes to `DIR/<original path>`.
    pub dir: PathBuf,
    /// Nothing is written into the keys directory.
    pub keys: KeysFence,
}

/// What a restore did, as reported.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Outcome {
    pub backup: String,
    pub snapshot_time: String,
    pub tables_checked: usize,
    pub rows: u64,
    pub mismatches: Vec<String>,
    pub intel_digest_matches: bool,
    pub files_restored: usize,
    /// Backup entries not restored, with the reason (the keys directory).
    pub files_excluded: Vec<Excluded>,
    pub services_stopped: Vec<String>,
    pub services_started: Vec<String>,
    pub verify_ms: f64,
    pub restore_ms: f64,
    pub compare_ms: f64,
}

/// Runs `restore`.
pub fn run(ctx: &Context, args: &RestoreArgs) -> Result<(), OpsError> {
    let started = Instant::now();
    crate::db::check_cli_url("--target-database-url", &args.target_database_url)?;
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Backup)?;
    let plan = Plan {
        paths: check::locate(&args.backup, &config.backup.dir)?,
        key: &key,
        trust_keys: crate::trust::verifying_keys(&config)?,
        tools: Tools::new(config.backup.pg_bin_dir.clone()),
        target_url: args.target_database_url.clone(),
        files_to: match args.files_to.as_deref() {
            Some(dir) => Some(FilesTo {
                dir: crate::utils::absolute(dir),
                keys: KeysFence::new(&config.keys.dir)?,
            }),
            None => None,
        },
        clean: args.clean,
        yes: args.yes,
        services: Some(&config.services),
    };
    let rt = runtime()?;
    interrupt::install()?;
    let outcome = rt.block_on(restore(&plan))?;
    rt.shutdown_background();
    let duration_ms = elapsed_ms(started);
    if ctx.json {
        print_json(&serde_json::json!({
            "status": if outcome.mismatches.is_empty() { "restored" } else { "mismatch" },
            "outcome": outcome,
            "duration_ms": duration_ms,
        }))?;
    } else {
        println!(
            "restored {} (snapshot {}) in {:.0} ms: {} tables, {} rows, {} files",
            outcome.backup,
            outcome.snapshot_time,
            duration_ms,
            outcome.tables_checked,
            outcome.rows,
            outcome.files_restored
        );
        for e in &outcome.files_excluded {
            println!("  not restored {}: {}", e.path, e.reason);
        }
        for m in &outcome.mismatches {
            println!("  MISMATCH: {m}");
        }
    }
    mismatch_error(&outcome)
}

/// Exit 65 naming the differences when the restored data does not match the manifest.
pub(crate) fn mismatch_error(outcome: &Outcome) -> Result<(), OpsError> {
    if outcome.mismatches.is_empty() {
        return Ok(());
    }
    Err(OpsError::new(
        Exit::Data,
        format!(
            "the restored data does not match backup {}: {}",
            outcome.backup,
            outcome.mismatches.join("; ")
        ),
    ))
}

/// The restore procedure (see the module comment).
pub(crate) async fn restore(plan: &Plan<'_>) -> Result<Outcome, OpsError> {
    let mut outcome = Outcome::default();
    let phase = Instant::now();
    // The manifest is checked here; the dump is verified as it streams into pg_restore and the
    // bundle beside it, and pg_restore gets the dump's last bytes (without which it can neither
    // finish nor commit) only once both checked out (see `check::pipe_dump`). So a damaged
    // backup restores nothing, and each file is read once.
    let manifest = check::quick(&plan.paths, &plan.trust_keys)?;
    check::check_key(&plan.paths, &manifest, plan.key)?;
    outcome.verify_ms = elapsed_ms(phase);
    outcome.backup = manifest.body.name.clone();
    outcome.snapshot_time = manifest.body.snapshot_time.clone();

    let mut target = db::connect(&plan.target_url, "restore").await?;
    refuse_non_empty(&mut target, plan.clean).await?;
    let files = match &plan.files_to {
        Some(to) => {
            let (files, excluded) = plan_files(to, &manifest, plan.yes)?;
            outcome.files_excluded = excluded;
            files
        }
        None => Vec::new(),
    };
    let pg_restore = plan.tools.pg_restore(&manifest.body.pg_dump_version)?;

    // A signal so far stops the run before anything changes, services included.
    interrupt::check("nothing was changed")?;
    if let Some(services) = plan.services {
        match run_commands(&services.stop, services.timeout_secs, "stop", true) {
            Ok(stopped) => outcome.services_stopped = stopped,
            Err(e) => {
                // Bring back whatever was stopped before the failure (or the signal).
                let started = start_services(services, &mut outcome);
                return Err(add_hint(
                    interrupt::attribute(e),
                    &format!("nothing was restored; {started}"),
                ));
            }
        }
    }
    let restored = async {
        crate::failpoint::pause("restore-before-pg-restore");
        interrupt::check("nothing was restored")?;
        let phase = Instant::now();
        let (mut cmd, url) = pg_restore.command_for(&plan.target_url)?;
        cmd.args(["--exit-on-error", "--single-transaction"])
            .arg(format!("--dbname={url}"));
        if plan.clean {
            cmd.args(["--clean", "--if-exists"]);
        }
        std::thread::scope(|scope| {
            let bundle = scope
                .spawn(|| check::verify_bundle(&plan.paths, &manifest, plan.key, &plan.trust_keys));
            let release = || {
                bundle
                    .join()
                    .map_err(|_| OpsError::new(Exit::Software, "the bundle check panicked"))??;
                // The last safe point: pg_restore has all but the dump's last bytes, and is
                // killed before it can commit.
                crate::failpoint::pause("restore-before-commit");
                interrupt::check(
                    "pg_restore was stopped before it could commit; the target database is as it was",
                )
            };
            check::pipe_dump(
                &plan.paths,
                &manifest,
                plan.key,
                cmd,
                Stdio::null(),
                release,
            )
        })?;
        // Committed: the restore is finished (files, comparison) whatever arrives now.
        outcome.files_restored = restore_files(&plan.paths, &manifest, plan, &files)?;
        outcome.restore_ms = elapsed_ms(phase);

        let phase = Instant::now();
        compare(&mut target, &plan.target_url, &manifest, &mut outcome).await?;
        outcome.compare_ms = elapsed_ms(phase);
        Ok::<(), OpsError>(())
    }
    .await
    .map_err(interrupt::attribute);
    if let Some(services) = plan.services {
        let started = start_services(services, &mut outcome);
        match restored {
            Ok(()) if outcome.services_started.len() < services.start.len() => {
                return Err(OpsError::new(
                    Exit::Unavailable,
                    format!("the restore succeeded, but {started}"),
                ))
            }
            Ok(()) => {}
            Err(e) => return Err(add_hint(e, &started)),
        }
    }
    restored?;
    Ok(outcome)
}

/// Runs `[services] start` — after a restore, a failed one, or a signal: the platform must not
/// stay down because of us. It runs to the end even after a signal (each command bounded by
/// `timeout_secs`). Returns what happened, in words for the operator.
fn start_services(services: &Services, outcome: &mut Outcome) -> String {
    if services.start.is_empty() {
        return "no [services] start commands are configured".into();
    }
    match run_commands(&services.start, services.timeout_secs, "start", false) {
        Ok(started) => {
            outcome.services_started = started;
            format!("[services] start was run ({})", services.start.join("; "))
        }
        Err(e) => {
            tracing::error!("starting services: {}", e.what);
            format!("{}: start the services by hand", e.what)
        }
    }
}

/// `e` with `more` (what happened to the services) put before its hint.
fn add_hint(e: OpsError, more: &str) -> OpsError {
    let hint = match &e.hint {
        Some(h) => format!("{more}; {h}"),
        None => more.to_string(),
    };
    e.hint(hint)
}

/// A target with tables is refused unless `--clean` (73: the restore cannot create into it).
async fn refuse_non_empty(conn: &mut sqlx::PgConnection, clean: bool) -> Result<(), OpsError> {
    let (tables,): (i64,) = sqlx::query_as(
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema') \
           and n.nspname not like 'pg_toast%'",
    )
    .fetch_one(&mut *conn)
    .answer("looking at the target database")
    .await?;
    if tables > 0 && !clean {
        return Err(OpsError::new(
            Exit::CantCreate,
            format!("the target database is not empty: it has {tables} tables"),
        )
        .hint("restore into an empty database, or pass --clean to drop and recreate the backup's objects"));
    }
    Ok(())
}

/// A backup entry and where it is restored to.
type Planned = (Entry, PathBuf);

/// Where each restorable entry goes under `to.dir`; existing files are refused without `--yes`.
/// Entries that would land in the keys directory are left out (returned with the reason), as
/// is a second entry for the same destination.
fn plan_files(
    to: &FilesTo,
    manifest: &Manifest,
    yes: bool,
) -> Result<(Vec<Planned>, Vec<Excluded>), OpsError> {
    let dir = &to.dir;
    let mut planned: Vec<Planned> = Vec::new();
    let mut excluded = Vec::new();
    let mut existing = Vec::new();
    for e in &manifest.body.entries {
        let relative = match e.kind {
            Kind::Intel => continue, // restored with the database, checked by digest
            Kind::Config | Kind::Artifact => e.source.trim_start_matches('/'),
        };
        if relative.is_empty()
            || Path::new(relative)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(OpsError::new(
                Exit::Data,
                format!("backup entry {} has an unsafe path {:?}", e.path, e.source),
            ));
        }
        let dest = dir.join(relative);
        if to.keys.holds_destination(&dest) {
            excluded.push(Excluded {
                path: dest.display().to_string(),
                reason: to.keys.restore_reason(),
            });
            continue;
        }
        if planned.iter().any(|(_, d)| *d == dest) {
            continue;
        }
        if dest.symlink_metadata().is_ok() {
            existing.push(dest.display().to_string());
        }
        planned.push((e.clone(), dest));
    }
    if !existing.is_empty() && !yes {
        let shown: Vec<_> = existing.iter().take(5).cloned().collect();
        return Err(OpsError::new(
            Exit::CantCreate,
            format!(
                "{} files already exist under {} (e.g. {})",
                existing.len(),
                dir.display(),
                shown.join(", ")
            ),
        )
        .hint("pass --yes to replace them (this includes live configuration if DIR is /), or choose an empty --files-to"));
    }
    Ok((planned, excluded))
}

/// Writes the planned files, reading each bundle of the chain once. Each file is written
/// atomically and only after its SHA-256 matched.
fn restore_files(
    paths: &Paths,
    manifest: &Manifest,
    plan: &Plan<'_>,
    files: &[(Entry, PathBuf)],
) -> Result<usize, OpsError> {
    let mut by_backup: BTreeMap<&str, Vec<&(Entry, PathBuf)>> = BTreeMap::new();
    for f in files {
        by_backup.entry(f.0.stored_in.as_str()).or_default().push(f);
    }
    let dir = paths.manifest.parent().unwrap_or(Path::new("."));
    let mut restored = 0;
    // A bundle may hold a file twice (backups made before each file was stored once).
    let mut done = std::collections::HashSet::new();
    for (holder, wanted) in by_backup {
        let holder_paths = Paths::new(dir, holder);
        if holder != manifest.body.name {
            let m = check::quick(&holder_paths, &plan.trust_keys)?;
            check::check_key(&holder_paths, &m, plan.key)?;
        }
        let mut reader = SealedReader::open(&holder_paths.files, plan.key)?;
        bundle::read(&holder_paths.files, &mut reader, |path, contents| {
            let Some((entry, dest)) = wanted
                .iter()
                .map(|f| (&f.0, &f.1))
                .find(|(e, _)| e.path == path)
            else {
                return Ok(());
            };
            if !done.insert(dest.clone()) {
                return Ok(());
            }
            write_file(dest, entry, contents, plan.yes)?;
            restored += 1;
            Ok(())
        })?;
    }
    if restored != files.len() {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "restored {restored} of {} files: the backup chain is incomplete",
                files.len()
            ),
        ));
    }
    Ok(restored)
}

fn write_file(
    dest: &Path,
    entry: &Entry,
    contents: &mut dyn Read,
    replace: bool,
) -> Result<(), OpsError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(PathError::at(FileAction::Create, parent))?;
    }
    let ownership = Ownership {
        mode: entry.mode & 0o777,
        gid: None,
        uid: None,
    };
    let mode = if replace {
        Replace::Allowed
    } else {
        Replace::Never
    };
    let mut file = AtomicFile::create_with(dest, ownership, mode)?;
    let mut hashed = crate::sealed::Hashing::new(contents);
    std::io::copy(&mut hashed, &mut file).map_err(PathError::at(FileAction::Write, dest))?;
    let (_, size, sha256) = hashed.finish();
    if size != entry.size || sha256 != entry.sha256 {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: restored contents differ from the manifest; not written",
                entry.path
            ),
        ));
    }
    file.commit()?;
    Ok(())
}

/// Every table's row count and the intel graph digest, against the manifest.
async fn compare(
    conn: &mut sqlx::PgConnection,
    url: &str,
    manifest: &Manifest,
    outcome: &mut Outcome,
) -> Result<(), OpsError> {
    // Counting and the graph digest each take a while: two connections, side by side.
    let graph = async {
        let mut second = db::connect(url, "restore").await?;
        // The whole read under one answer timeout: the intel crate's row stream has no bound
        // of its own, and half an hour is far beyond any graph it reads.
        db::bounded(
            ransomeye_intel::digest(&mut second),
            "reading the intel graph",
        )
        .await?
        .map_err(|e| intel_error(e, "computing the restored intel graph's digest"))
    };
    let (counts, digest) = tokio::join!(count_rows(conn), graph);
    let (counts, digest) = (counts?, digest?);
    for (table, expected) in &manifest.body.tables {
        match counts.get(table) {
            Some(n) if n == expected => {}
            Some(n) => outcome
                .mismatches
                .push(format!("{table}: {n} rows, the backup has {expected}")),
            None => outcome.mismatches.push(format!("{table} is missing")),
        }
    }
    outcome.tables_checked = manifest.body.tables.len();
    outcome.rows = manifest.body.tables.values().sum();
    outcome.intel_digest_matches = digest == manifest.body.intel;
    if !outcome.intel_digest_matches {
        outcome.mismatches.push(format!(
            "intel graph digest {} ({} nodes, {} edges), the backup has {} ({} nodes, {} edges)",
            digest.sha256,
            digest.nodes,
            digest.edges,
            manifest.body.intel.sha256,
            manifest.body.intel.nodes,
            manifest.body.intel.edges
        ));
    }
    Ok(())
}

/// Runs each command with `sh -c`, in order, each bounded by `timeout_secs`; stops at the
/// first failure (69 naming it). Returns the commands run. Each runs in a process group of its
/// own: Ctrl-C on the terminal reaches only us, and a command that is killed (timeout, or a
/// signal when `interruptible`) is killed with everything it started.
fn run_commands(
    commands: &[String],
    timeout_secs: u64,
    what: &str,
    interruptible: bool,
) -> Result<Vec<String>, OpsError> {
    let mut done = Vec::new();
    for command in commands {
        if interruptible {
            interrupt::check(format!("[services] {what} stopped before `{command}`"))?;
        }
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", command])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                OpsError::new(
                    Exit::Unavailable,
                    format!("cannot run [services] {what} command `{command}`: {e}"),
                )
            })?;
        let kill = |child: &mut std::process::Child| {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        };
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {
                    if let Some(signal) = interrupt::received().filter(|_| interruptible) {
                        kill(&mut child);
                        return Err(interrupt::stopped(
                            signal,
                            format!("[services] {what} command `{command}` was killed"),
                        ));
                    }
                    if Instant::now() >= deadline {
                        kill(&mut child);
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    return Err(OpsError::new(
                        Exit::Software,
                        format!("waiting for `{command}`: {e}"),
                    ))
                }
            }
        };
        match status {
            Some(s) if s.success() => done.push(command.clone()),
            Some(s) => {
                return Err(OpsError::new(Exit::Unavailable, format!("[services] {what} command `{command}` failed ({s})")))
            }
            None => {
                return Err(OpsError::new(
                    Exit::Unavailable,
                    format!("[services] {what} command `{command}` did not finish within {timeout_secs} s and was killed"),
                ))
            }
        }
    }
    Ok(done)
}
