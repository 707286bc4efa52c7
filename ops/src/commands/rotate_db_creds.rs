//! `rotate-db-creds`: the services' PostgreSQL passwords rotated the way AWS Secrets Manager
//! rotates them (create → set → test → finish, each step recorded and resumable), with the new
//! password proven on a fresh login before anything depends on it, the old one working until
//! every service has switched (alternating: two roles used in turn), and no password ever sent
//! to the server, written to a log or put on a command line.
//!
//! [`run`] reads as the procedure: lock → refuse an unfinished rotation → check the entries'
//! env files and roles → **create** (journal `created` with each role's old verifier, then the
//! pending file with the new passwords and the files' old bytes) → **set** (a SCRAM verifier
//! computed here) → **test** (a fresh login; on failure the old verifiers go back, 75) → journal
//! `tested` → **finish** (journal `switching`; per entry: rewrite its env files, restart, check;
//! a failure puts files, services and verifiers back, 75) → journal `done`, pending file removed.
//!
//! SIGINT, SIGTERM and SIGHUP are acted on at safe points before the files switch (the rotation
//! is undone, 75) and only recorded after (the run finishes). A crash at any moment leaves a journal state `--resume` acts on: before `switching` it undoes
//! (old verifiers back, nothing else was changed), from `switching` on it finishes (the new
//! passwords were proven, so the files are switched and the services restarted), and a
//! rollback that was under way is completed. Until then a new rotation is refused (75). The
//! env files are the only place a password stays: the pending file (mode of the key files) is
//! removed once the journal says `done` or `rolled_back`, and temp files a crash left beside the
//! env files or in `[keys] dir` are removed by the next run.
//!
//! Here: the procedure. `plan` checks files and decides roles, `server` talks to PostgreSQL,
//! `secret` makes passwords, verifiers and the pending file, `dotenv` parses and rewrites env
//! files, `finish` switches files and restarts services (and back), `journal` records states,
//! `report` prints runs and `status`.

mod dotenv;
mod finish;
mod journal;
mod plan;
mod report;
mod secret;
mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use ransomeye_kernel::config::Config;
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::PgConnection;

use self::journal::{Journal, Login, Rotation, State};
use self::plan::Planned;
use self::secret::Pending;
use super::Context;
use crate::cli::{RotateDbCredsArgs, RotateDbCredsCommand};
use crate::commands::say;
use crate::db;
use crate::error::{Exit, OpsError};
use crate::failpoint;
use crate::interrupt;
use crate::run_lock::{self, RunLock};
use crate::utils::{elapsed_ms, runtime};

/// The lock names: the file in `[keys] dir` and the advisory lock.
const LOCK_NAME: &str = "rotate-db-creds";
const OPERATION: &str = "database credential rotation";

/// Runs `rotate-db-creds`, `--resume` or `status`; returns the exit code.
pub fn run(ctx: &Context, args: &RotateDbCredsArgs) -> Result<u8, OpsError> {
    match &args.command {
        Some(RotateDbCredsCommand::Status) => report::status(ctx),
        None if args.resume => resume(ctx),
        None => rotate(ctx, args),
    }
}

/// What a run holds: the configuration, the journal and (unless a dry run) the lock.
struct Session {
    config: Config,
    keys_dir: PathBuf,
    journal: Journal,
    _lock: Option<RunLock>,
}

impl Session {
    /// Checks `[keys] dir`, takes the lock (not in a dry run, which must not even create the
    /// lock file), removes what an interrupted run left there, and reads the journal.
    fn open(ctx: &Context, dry_run: bool) -> Result<Session, OpsError> {
        let config = ctx.config()?;
        let keys_dir = config.keys.dir.clone();
        crate::dirs::check_writable(&keys_dir, "[keys] dir")?;
        let lock = if dry_run {
            None
        } else {
            let lock = RunLock::acquire(&keys_dir, LOCK_NAME, OPERATION)?;
            crate::dirs::remove_temp_files(&keys_dir, ".db-creds")?;
            Some(lock)
        };
        let journal = Journal::load(&keys_dir)?;
        Ok(Session {
            config,
            keys_dir,
            journal,
            _lock: lock,
        })
    }

    async fn connect(&self) -> Result<PgConnection, OpsError> {
        let mut conn = db::connect(&self.config.database.url, "rotate-db-creds").await?;
        run_lock::advisory_lock(&mut conn, "ransomeye-ops rotate-db-creds", OPERATION).await?;
        Ok(conn)
    }

    fn timeout_secs(&self) -> u64 {
        self.config.services.timeout_secs
    }
}

/// A new rotation of the selected entries (or a dry run of one).
fn rotate(ctx: &Context, args: &RotateDbCredsArgs) -> Result<u8, OpsError> {
    let mut s = Session::open(ctx, args.dry_run)?;
    if !args.dry_run {
        interrupt::install()?;
    }
    if let Some(r) = s.journal.unfinished() {
        return Err(report::unfinished_error(r));
    }
    let selected = plan::select(&s.config, &args.role)?;
    if !args.dry_run {
        for credential in &selected {
            plan::remove_env_temp_files(credential)?;
        }
        // A pending file without an unfinished rotation is a finished one's leftover.
        Pending::remove(&s.keys_dir)?;
    }
    let planned = selected
        .into_iter()
        .map(plan::plan)
        .collect::<Result<Vec<_>, _>>()?;
    runtime()?.block_on(async {
        let mut conn = s.connect().await?;
        let old_verifiers = check_roles(&mut conn, &planned).await?;
        if args.dry_run {
            report::print_dry_run(ctx, &planned)?;
            return Ok(0);
        }
        let (mut rotation, pending) = create(&mut s, &planned, old_verifiers)?;
        stop_if_interrupted(&mut s, &mut conn, &mut rotation, &pending).await?;
        set(&mut conn, &mut rotation, &pending).await?;
        stop_if_interrupted(&mut s, &mut conn, &mut rotation, &pending).await?;
        if let Err(reason) = test(&s.config, &mut rotation, &pending).await {
            roll_back(&mut s, &mut conn, &mut rotation, Some(&pending), reason.clone()).await?;
            report::print_undone(ctx, &rotation)?;
            return Err(OpsError::new(Exit::TempFail, reason).hint(
                "the old password was restored and nothing else was changed: check pg_hba.conf and the role (LOGIN, VALID UNTIL), then run again",
            ));
        }
        failpoint::pause("db-creds-pause-tested");
        stop_if_interrupted(&mut s, &mut conn, &mut rotation, &pending).await?;
        finish(ctx, &mut s, &mut conn, &mut rotation, &pending).await
    })
}

/// A safe point before the files switch: after SIGINT, SIGTERM or SIGHUP the rotation is undone
/// (old verifiers back; no file was changed) and the run stops (75). Once the files switch,
/// signals are only recorded: finishing is the way to a consistent state, and is bounded.
async fn stop_if_interrupted(
    s: &mut Session,
    conn: &mut PgConnection,
    rotation: &mut Rotation,
    pending: &Pending,
) -> Result<(), OpsError> {
    let Some(signal) = interrupt::received() else {
        return Ok(());
    };
    roll_back(
        s,
        conn,
        rotation,
        Some(pending),
        format!("interrupted by {signal}"),
    )
    .await?;
    Err(interrupt::stopped(
        signal,
        "the rotation was undone: the old passwords are back and no env file was changed",
    ))
}

/// Checks every role of every entry (exists, not a superuser, not our own login, alterable
/// and readable by us); returns each entry's target verifier.
async fn check_roles(
    conn: &mut PgConnection,
    planned: &[Planned],
) -> Result<Vec<Option<String>>, OpsError> {
    let mut old = Vec::new();
    for p in planned {
        for role in p.credential.role_names() {
            let verifier = server::check_role(conn, role).await?;
            if role == p.target {
                old.push(verifier);
            }
        }
    }
    Ok(old)
}

/// **Create**: journal `created` (with the old verifiers) first, then the pending file with the
/// new passwords and the env files' bytes. A crash between the two leaves a `created` rotation
/// without a pending file, which `--resume` undoes (nothing was set).
fn create(
    s: &mut Session,
    planned: &[Planned],
    old_verifiers: Vec<Option<String>>,
) -> Result<(Rotation, Pending), OpsError> {
    let started = Instant::now();
    let mut id = [0u8; 8];
    SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| OpsError::new(Exit::Software, "the system random generator failed"))?;
    let logins = planned
        .iter()
        .zip(old_verifiers)
        .map(|(p, old_verifier)| Login {
            strategy: p.strategy().to_string(),
            roles: p
                .credential
                .role_names()
                .iter()
                .map(|r| r.to_string())
                .collect(),
            active_before: p.active.clone(),
            target: p.target.clone(),
            old_verifier,
            credential: p.credential.clone(),
            files_rewritten: Vec::new(),
            restarted: Vec::new(),
        })
        .collect();
    let mut rotation = Rotation {
        rotation_id: hex::encode(id),
        state: State::Created,
        logins,
        started_at: journal::now_rfc3339(),
        updated_at: String::new(),
        reason: None,
        durations: Default::default(),
    };
    let mut passwords = BTreeMap::new();
    let mut originals = BTreeMap::new();
    for p in planned {
        passwords.insert(p.target.clone(), secret::new_password()?.to_string());
        for (path, env) in &p.files {
            originals.insert(path.clone(), env.text().to_string());
        }
    }
    let pending = Pending {
        rotation_id: rotation.rotation_id.clone(),
        passwords,
        originals,
    };
    s.journal.record(&rotation)?;
    failpoint::hit("db-creds-journaled");
    pending.write(&s.keys_dir)?;
    rotation.durations.create_ms = elapsed_ms(started);
    failpoint::hit("db-creds-created");
    Ok((rotation, pending))
}

/// The new password of `role` in the pending file.
fn password_of<'a>(pending: &'a Pending, role: &str) -> Result<&'a str, OpsError> {
    pending
        .passwords
        .get(role)
        .map(String::as_str)
        .ok_or_else(|| {
            OpsError::new(
                Exit::Data,
                format!("the pending file has no password for role {role}"),
            )
        })
}

/// **Set**: each target role gets the SCRAM-SHA-256 verifier of its new password.
async fn set(
    conn: &mut PgConnection,
    rotation: &mut Rotation,
    pending: &Pending,
) -> Result<(), OpsError> {
    let started = Instant::now();
    for login in &rotation.logins {
        let verifier = secret::scram_verifier(password_of(pending, &login.target)?)?;
        server::set_verifier(conn, &login.target, Some(&verifier)).await?;
        failpoint::hit("db-creds-set-one");
    }
    rotation.durations.set_ms = elapsed_ms(started);
    failpoint::hit("db-creds-set");
    Ok(())
}

/// **Test**: a fresh login as each target with its new password. `Err` says which failed.
async fn test(config: &Config, rotation: &mut Rotation, pending: &Pending) -> Result<(), String> {
    let started = Instant::now();
    for login in &rotation.logins {
        let password = password_of(pending, &login.target).map_err(|e| e.what)?;
        server::test_login(&config.database.url, &login.target, password)
            .await
            .map_err(|m| {
                format!(
                    "the new password of role {} did not work: {m}",
                    login.target
                )
            })?;
    }
    rotation.durations.test_ms = elapsed_ms(started);
    Ok(())
}

/// **Finish**: journal `tested` then `switching`; per entry, its env files rewritten, restart,
/// check; journal `done` and the pending file removed. A failed restart or check puts
/// everything back (75).
async fn finish(
    ctx: &Context,
    s: &mut Session,
    conn: &mut PgConnection,
    rotation: &mut Rotation,
    pending: &Pending,
) -> Result<u8, OpsError> {
    if rotation.state == State::Created {
        rotation.state = State::Tested;
        s.journal.record(rotation)?;
        failpoint::hit("db-creds-tested");
    }
    rotation.state = State::Switching;
    s.journal.record(rotation)?;
    failpoint::hit("db-creds-switching");
    let timeout = s.timeout_secs();
    for index in 0..rotation.logins.len() {
        if let Err(reason) = switch_login(s, rotation, index, pending, timeout).await {
            let roles = rotation.logins[index].roles.join("/");
            let reason = format!("{roles}: {reason}");
            roll_back(s, conn, rotation, Some(pending), reason.clone()).await?;
            report::print_undone(ctx, rotation)?;
            return Err(OpsError::new(Exit::TempFail, reason).hint(
                "env files, services and passwords were put back as they were: fix the service (or its check) and run again",
            ));
        }
    }
    rotation.state = State::Done;
    s.journal.record(rotation)?;
    failpoint::hit("db-creds-done");
    Pending::remove(&s.keys_dir)?;
    report::print_rotation(ctx, rotation)?;
    Ok(0)
}

/// One entry's switch: its files rewritten (each recorded), then restart and check.
async fn switch_login(
    s: &mut Session,
    rotation: &mut Rotation,
    index: usize,
    pending: &Pending,
    timeout: u64,
) -> Result<(), String> {
    let started = Instant::now();
    let login = rotation.logins[index].clone();
    let password = password_of(pending, &login.target).map_err(|e| e.what)?;
    for path in &login.credential.env_files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let new = finish::switched_text(&text, &login.credential, &login.target, password, path)
            .map_err(|e| e.what)?;
        finish::replace_file(path, &new).map_err(|e| e.what)?;
        if !rotation.logins[index].files_rewritten.contains(path) {
            rotation.logins[index].files_rewritten.push(path.clone());
        }
        s.journal.record(rotation).map_err(|e| e.what)?;
        failpoint::hit("db-creds-file-switched");
    }
    rotation.durations.files_ms += elapsed_ms(started);
    let started = Instant::now();
    rotation.logins[index].restarted = login.credential.restart.clone();
    s.journal.record(rotation).map_err(|e| e.what)?;
    let result = finish::restart_and_check(&login.credential, timeout)
        .await
        .map_err(|e| e.what);
    rotation.durations.restart_ms += elapsed_ms(started);
    failpoint::hit("db-creds-restarted");
    result
}

/// Undoes a rotation: journal `rolling_back`, every target's old verifier back, env files back
/// to their bytes before (services restarted where a file changed back or a restart ran), then
/// journal `rolled_back` and the pending file removed. `Err` when something could not be put
/// back (the journal stays `rolling_back` for `--resume`).
async fn roll_back(
    s: &mut Session,
    conn: &mut PgConnection,
    rotation: &mut Rotation,
    pending: Option<&Pending>,
    reason: String,
) -> Result<(), OpsError> {
    tracing::warn!(
        "rolling back credential rotation {}: {reason}",
        rotation.rotation_id
    );
    rotation.state = State::RollingBack;
    if rotation.reason.is_none() {
        rotation.reason = Some(reason.clone());
    }
    s.journal.record(rotation)?;
    failpoint::hit("db-creds-rolling-back");
    let mut problems = Vec::new();
    for login in &rotation.logins {
        if let Err(e) =
            server::set_verifier(conn, &login.target, login.old_verifier.as_deref()).await
        {
            problems.push(format!(
                "the old password of {} could not be restored: {}",
                login.target, e.what
            ));
        }
    }
    let timeout = s.timeout_secs();
    for login in &rotation.logins {
        problems.extend(finish::files_back(login, pending.map(|p| &p.originals), timeout).await);
    }
    if !problems.is_empty() {
        return Err(OpsError::new(
            Exit::TempFail,
            format!("{reason}; putting things back failed: {}", problems.join("; ")),
        )
        .hint("fix what is named and run `ransomeye-ops rotate-db-creds --resume` to finish putting things back"));
    }
    rotation.state = State::RolledBack;
    s.journal.record(rotation)?;
    failpoint::hit("db-creds-rolled-back");
    Pending::remove(&s.keys_dir)?;
    Ok(())
}

/// `--resume`: finishes an interrupted rotation from its journal state: undone before
/// `tested`, finished from `tested` on (after the new passwords are tested again), a rollback
/// under way completed.
fn resume(ctx: &Context) -> Result<u8, OpsError> {
    let mut s = Session::open(ctx, false)?;
    // Recorded, not acted on: a resume only ever finishes or undoes, both bounded.
    interrupt::install()?;
    let Some(mut rotation) = s.journal.unfinished().cloned() else {
        say!(ctx, "no unfinished credential rotation: nothing to resume");
        return Ok(0);
    };
    let pending = Pending::read(&s.keys_dir)?.filter(|p| p.rotation_id == rotation.rotation_id);
    for login in &rotation.logins {
        plan::remove_env_temp_files(&login.credential)?;
    }
    runtime()?.block_on(async {
        let mut conn = s.connect().await?;
        let switched = rotation.logins.iter().any(|l| !l.files_rewritten.is_empty());
        if pending.is_none() && (switched || rotation.state == State::Switching) {
            // The files may hold the new passwords, which only the pending file also had: undoing
            // the verifiers would lock the services out, and the files cannot be put back.
            return Err(OpsError::new(
                Exit::Data,
                format!(
                    "credential rotation {} was switching env files, but {} is gone",
                    rotation.rotation_id,
                    s.keys_dir.join(secret::PENDING_FILE).display()
                ),
            )
            .hint("nothing was changed, the server keeps the new passwords: check that each service logs in with what its env files hold, then move db-creds-journal.json aside to allow the next rotation"));
        }
        let forward = matches!(rotation.state, State::Tested | State::Switching);
        match (&pending, forward) {
            (Some(pending), true) => {
                if let Err(reason) = test(&s.config, &mut rotation, pending).await {
                    roll_back(&mut s, &mut conn, &mut rotation, Some(pending), reason).await?;
                } else {
                    return finish(ctx, &mut s, &mut conn, &mut rotation, pending).await;
                }
            }
            (pending, _) => {
                let reason = format!("interrupted in state {}", rotation.state.name());
                roll_back(&mut s, &mut conn, &mut rotation, pending.as_ref(), reason).await?;
            }
        }
        report::print_rotation(ctx, &rotation)?;
        Ok(0)
    })
}
