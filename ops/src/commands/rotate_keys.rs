//! `rotate-keys`: moves the Ed25519 trust root to a new key across every agent, with proof
//! (signed acks from a quorum of active agents) and without downtime (agents trust the old key
//! until the commit). The wire protocol is `docs/TRUST_UPDATE.md` (crate `ransomeye-trust`).
//!
//! [`run`] reads as the procedure: lock → refuse an unfinished rotation → check the old key, the
//! configuration's directory, the bus and the agents → stage the new key in `signing.key.next`
//! and read it back → journal `pending` → publish the TrustUpdate and collect acks → commit
//! (journal `committing` → configuration → old key to `retired/` → `signing.key.next` becomes
//! `signing.key` → TrustCommit → journal `committed`) or abort (journal `aborting` → TrustAbort →
//! remove the staged key → journal `aborted`).
//!
//! The configuration and `signing.key` are two files and cannot change in one atomic step; the
//! configuration is the commit point. At every instant exactly one of `signing.key` and
//! `signing.key.next` holds the key the configuration names (the *active key*), which is what
//! every command signs with ([`crate::trust::signing_key`]); `--resume` finishes what the journal
//! says was started, including a commit or abort the bus did not take (journaled, and shown by
//! `status` with exit 75). A dry run changes nothing at all: it takes no lock file, cleans nothing
//! and creates no stream, and lists what a real run would clean or finish instead.

mod bus;
pub(crate) mod journal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ransomeye_kernel::config::Config;
use ransomeye_kernel::keys::{KeyDir, KeyError, SigningKey};
use ransomeye_kernel::{FileAction, PathError};
use ransomeye_trust::{
    AckCheck, AgentId, Broadcast, Quorum, RotationId, TrustAbort, TrustCommit, TrustUpdate,
};
use serde::Serialize;
use sqlx::PgConnection;

use self::bus::{Tally, TrustBus};
use self::journal::{Counts, Journal, Rotation, Side, State};
use super::Context;
use crate::cli::{RotateKeysArgs, RotateKeysCommand};
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::failpoint;
use crate::run_lock::{self, RunLock};
use crate::trust::{NEXT_KEY, RETIRED_DIR};
use crate::utils::{elapsed_ms, print_json, runtime};

/// Seconds between the end of ack collection and the update's deadline: room for the commit to
/// reach agents before they would drop the pending key.
const COMMIT_GRACE_SECS: u64 = 30;

/// What a rotation is: a new key, or back to the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rotation,
    Rollback,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rotation => "rotation",
            Kind::Rollback => "rollback",
        }
    }
}

/// Runs `rotate-keys` or `rotate-keys status`; returns the exit code (`status` exits 75 while a
/// rotation is unfinished, e.g. aborted with its TrustAbort not yet published).
pub fn run(ctx: &Context, args: &RotateKeysArgs) -> Result<u8, OpsError> {
    match &args.command {
        Some(RotateKeysCommand::Status) => status(ctx),
        None if args.resume => resume(ctx, args).map(|()| 0),
        None if args.rollback => new_rotation(ctx, args, Kind::Rollback).map(|()| 0),
        None => new_rotation(ctx, args, Kind::Rotation).map(|()| 0),
    }
}

/// What a run did, as reported.
#[derive(Debug, Serialize)]
struct Report {
    status: &'static str,
    rotation_id: Option<String>,
    kind: Option<String>,
    from: Option<Side>,
    to: Option<Side>,
    #[serde(flatten)]
    counts: Counts,
    time_to_quorum_ms: Option<f64>,
    publish_to_commit_ms: Option<f64>,
    /// Sequence of the TrustUpdate in the JetStream stream, where offline agents find it.
    update_seq: Option<u64>,
    outcome_published: bool,
    /// What a dry run found that a real run would finish or clean.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    would: Vec<String>,
    journal: PathBuf,
    duration_ms: f64,
}

/// Everything a run holds: the configuration, the keys directory, the lock and the journal.
struct Session {
    config: Config,
    config_path: PathBuf,
    keys: KeyDir,
    journal: Journal,
    quorum: Quorum,
    timeout: Duration,
    json: bool,
    started: Instant,
    /// `--dry-run`: check and report, change nothing (no lock file, no clean-up, no stream).
    dry_run: bool,
    /// What a dry run found that a real run would finish or clean, in order.
    would: Vec<String>,
    /// `None` in a dry run, which must not even create the lock file.
    _lock: Option<RunLock>,
}

impl Session {
    fn open(ctx: &Context, args: &RotateKeysArgs) -> Result<Session, OpsError> {
        let started = Instant::now();
        let quorum = Quorum::new(args.quorum)
            .map_err(|m| OpsError::new(Exit::Usage, format!("--quorum: {m}")))?;
        let config = ctx.config()?;
        let keys = KeyDir::new(&config.keys.dir);
        crate::dirs::check_writable(keys.path(), "[keys] dir")?;
        let mut would = Vec::new();
        let lock = if args.dry_run {
            refuse_if_running(keys.path())?;
            for file in temp_files(keys.path(), &ctx.config_source.path)? {
                would.push(format!(
                    "remove {} (a temporary file an interrupted run left)",
                    file.display()
                ));
            }
            None
        } else {
            let lock = RunLock::acquire(keys.path(), "rotate-keys", "key rotation")?;
            for file in temp_files(keys.path(), &ctx.config_source.path)? {
                tracing::info!(file = %file.display(), "removing a temporary file left by an interrupted run");
                std::fs::remove_file(&file).map_err(PathError::at(FileAction::Remove, &file))?;
            }
            Some(lock)
        };
        let journal = Journal::load(keys.path())?;
        Ok(Session {
            config,
            config_path: ctx.config_source.path.clone(),
            keys,
            journal,
            quorum,
            timeout: Duration::from_secs(args.timeout),
            json: ctx.json,
            started,
            dry_run: args.dry_run,
            would,
            _lock: lock,
        })
    }

    /// Connects to the database (taking the rotation's advisory lock there too, for a second
    /// host sharing the database) and to the bus, and makes sure the trust stream exists.
    async fn connect(&mut self) -> Result<(PgConnection, TrustBus), OpsError> {
        let mut conn = db::connect(&self.config.database.url, "rotate-keys").await?;
        run_lock::advisory_lock(&mut conn, "ransomeye-ops rotate-keys", "key rotation").await?;
        let bus = TrustBus::connect(&self.config.bus.url).await?;
        if self.dry_run {
            if let Some(change) = bus.check_stream().await? {
                self.would.push(change);
            }
        } else {
            bus.ensure_stream().await?;
        }
        Ok((conn, bus))
    }

    fn report(&self, status: &'static str, rotation: Option<&Rotation>) -> Report {
        Report {
            status,
            rotation_id: rotation.map(|r| r.rotation_id.clone()),
            kind: rotation.map(|r| r.kind.clone()),
            from: rotation.map(|r| r.from.clone()),
            to: rotation.map(|r| r.to.clone()),
            counts: rotation.map(|r| r.counts.clone()).unwrap_or_default(),
            time_to_quorum_ms: rotation.and_then(|r| r.time_to_quorum_ms),
            publish_to_commit_ms: None,
            update_seq: None,
            outcome_published: rotation.is_some_and(|r| r.outcome_published),
            would: self.would.clone(),
            journal: self.journal.path().to_path_buf(),
            duration_ms: elapsed_ms(self.started),
        }
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn now_unix() -> u64 {
    since_epoch().as_secs()
}

fn side(version: u64, key: &SigningKey) -> Side {
    Side {
        version,
        key_id: key.id().to_string(),
        public_key: hex::encode(key.public_key()),
    }
}

fn new_rotation(ctx: &Context, args: &RotateKeysArgs, kind: Kind) -> Result<(), OpsError> {
    if kind == Kind::Rollback {
        eprintln!(
            "warning: a rollback makes the previous key the trust root again. Never roll back to a \
             key that may be compromised: rotate to a new key instead"
        );
        if !args.yes && !args.dry_run {
            return Err(OpsError::new(
                Exit::Usage,
                "--rollback changes the trust root back to the previous key and needs --yes",
            )
            .hint("rerun with --yes if the previous key is not compromised"));
        }
    }
    let mut s = Session::open(ctx, args)?;
    refuse_unfinished(&s.journal)?;
    clear_abandoned_next_key(&mut s)?;
    let old = crate::trust::signing_key(&s.config)?;
    if s.dry_run {
        check_config_dir_access(&s.config_path)?;
    } else {
        check_config_writable(&s.config_path)?;
    }
    let next = match kind {
        Kind::Rotation => None,
        Kind::Rollback => Some(rollback_target(&s.keys, &s.journal, &old)?),
    };
    let rt = runtime()?;
    rt.block_on(async {
        let (mut conn, bus) = s.connect().await?;
        let agents = active_agents(&mut conn).await?;
        let needed = s.quorum.needed(agents.len());
        if args.dry_run {
            return report_dry_run(&s, kind, &old, agents.len(), needed);
        }
        let new = match next {
            Some(key) => key,
            None => SigningKey::generate()?,
        };
        stage_next_key(&s.keys, &new)?;
        failpoint::hit("rotate-after-stage");
        // Rounded up, so agents always get at least the whole timeout plus the grace.
        let issued_at = now_unix() + 1;
        let update = TrustUpdate::new(
            RotationId::generate().ok_or_else(|| OpsError::from(KeyError::Random))?,
            s.config.trust.version + 1,
            &old,
            &new,
            issued_at,
            issued_at + s.timeout.as_secs() + COMMIT_GRACE_SECS,
        );
        s.journal.begin(journal::pending(
            kind.name(),
            side(s.config.trust.version, &old),
            side(update.version, &new),
            update.clone(),
            s.quorum.fraction(),
        ))?;
        failpoint::hit("rotate-after-journal");
        let collect_for = s.timeout;
        decide(&mut s, &bus, agents, update, collect_for).await
    })
}

fn resume(ctx: &Context, args: &RotateKeysArgs) -> Result<(), OpsError> {
    let mut s = Session::open(ctx, args)?;
    let Some(rotation) = s.journal.unfinished().cloned() else {
        clear_abandoned_next_key(&mut s)?;
        let report = s.report("nothing_to_resume", None);
        return print_report(
            &s,
            &report,
            &dry_run_text(&s, "no unfinished rotation: nothing to resume"),
        );
    };
    if s.dry_run {
        return report_resume_dry_run(&mut s, &rotation);
    }
    eprintln!(
        "resuming {} {} (state {}, version {} → {})",
        rotation.kind,
        rotation.rotation_id,
        rotation.state.name(),
        rotation.from.version,
        rotation.to.version
    );
    let rt = runtime()?;
    rt.block_on(async {
        let (mut conn, bus) = s.connect().await?;
        let old = key_named(&s.keys, &rotation.from, &["signing.key"]);
        match rotation.state {
            State::Pending => {
                let staged = key_named(&s.keys, &rotation.to, &[NEXT_KEY]);
                let left = collection_left(&rotation.update);
                let unresumable = if old.is_none() || staged.is_none() {
                    Some("the staged key or the old key is missing")
                } else if left.is_zero() {
                    Some("interrupted, and its time to collect acks has passed")
                } else {
                    None
                };
                if let Some(reason) = unresumable {
                    return abort(&mut s, &bus, reason.into(), Exit::TempFail).await;
                }
                // The quorum the rotation was started with, whatever this run's default.
                s.quorum = Quorum::new(rotation.quorum)
                    .map_err(|m| OpsError::new(Exit::Data, format!("journal: {m}")))?;
                let agents = active_agents(&mut conn).await?;
                decide(&mut s, &bus, agents, rotation.update.clone(), left).await
            }
            State::Committing => {
                commit(&mut s, &bus).await?;
                report_committed(&s, None)
            }
            State::Aborting => {
                let reason = rotation
                    .reason
                    .clone()
                    .unwrap_or_else(|| "interrupted".into());
                abort(&mut s, &bus, reason, Exit::TempFail).await
            }
            State::Committed | State::Aborted => Ok(()),
        }
    })
}

/// Publishes the update, collects acks, and commits or aborts.
async fn decide(
    s: &mut Session,
    bus: &TrustBus,
    agents: HashMap<AgentId, Vec<u8>>,
    update: TrustUpdate,
    collect_for: Duration,
) -> Result<(), OpsError> {
    let check = Arc::new(AckCheck::new(&update, agents));
    let needed = s.quorum.needed(check.active());
    let sub = bus.subscribe_acks(&update.rotation_id).await?;
    let published = Instant::now();
    let update_seq = bus.publish(&Broadcast::Update(update.clone())).await?;
    failpoint::hit("rotate-after-publish");
    let deadline = Instant::now() + collect_for;
    let progress = progress_bar(s.json, check.active(), needed);
    let tally = bus::collect(
        bus,
        &update,
        sub,
        Arc::clone(&check),
        needed,
        deadline,
        &progress,
    )
    .await;
    progress.finish_and_clear();
    let counts = counts(check.active(), needed, &tally);
    let no_quorum =
        (tally.acked < needed).then(|| no_quorum_reason(&tally, needed, check.active()));
    s.journal.update(|r| {
        r.counts = counts;
        r.time_to_quorum_ms = tally.time_to_quorum.map(|d| d.as_secs_f64() * 1000.0);
        r.state = if no_quorum.is_some() {
            State::Aborting
        } else {
            State::Committing
        };
        r.reason.clone_from(&no_quorum);
    })?;
    failpoint::hit("rotate-after-decision");
    match no_quorum {
        None => {
            commit(s, bus).await?;
            report_committed(s, Some((elapsed_ms(published), update_seq)))
        }
        Some(reason) => abort(s, bus, reason, Exit::TempFail).await,
    }
}

/// How much of `update`'s time to collect acks is left: collection ends at the deadline minus
/// the commit's grace.
fn collection_left(update: &TrustUpdate) -> Duration {
    Duration::from_secs(update.deadline.saturating_sub(COMMIT_GRACE_SECS))
        .saturating_sub(since_epoch())
}

fn no_quorum_reason(tally: &Tally, needed: usize, active: usize) -> String {
    let invalid: u64 = tally.ignored.values().sum();
    format!(
        "no quorum: {} of {active} active agents acked, {needed} needed (strictly more than the quorum fraction); {invalid} acks did not count{}",
        tally.acked,
        if invalid > 0 { format!(" ({})", ignored_summary(&tally.ignored)) } else { String::new() }
    )
}

fn ignored_summary(ignored: &std::collections::BTreeMap<String, u64>) -> String {
    ignored
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn counts(active: usize, needed: usize, tally: &Tally) -> Counts {
    Counts {
        active,
        needed,
        acked: tally.acked,
        ignored: tally.ignored.clone(),
    }
}

/// Rolls the rotation in the journal forward. Every step checks whether it was already done, so
/// a rerun after a crash at any point finishes the same way.
async fn commit(s: &mut Session, bus: &TrustBus) -> Result<(), OpsError> {
    let Some(rotation) = s.journal.latest().cloned() else {
        return Ok(());
    };
    // 1. The configuration: the commit point.
    if let Err(err) = write_trust_config(&s.config_path, &rotation.to) {
        let on_disk = load_config(&s.config_path).ok();
        if on_disk.is_none_or(|c| c.trust.key_id != rotation.to.key_id) {
            let reason = format!("the configuration could not be written: {}", err.what);
            s.journal.update(|r| {
                r.state = State::Aborting;
                r.reason = Some(reason.clone());
            })?;
            return abort(s, bus, reason, err.exit).await;
        }
        tracing::warn!(
            "the configuration was written but reported an error: {}",
            err.what
        );
    }
    failpoint::hit("rotate-after-config");
    // 2. The old key into retired/, before signing.key is replaced.
    let retired = format!("{RETIRED_DIR}/{}", rotation.from.key_id);
    if key_named(&s.keys, &rotation.from, &[&retired]).is_none() {
        let old = key_named(&s.keys, &rotation.from, &["signing.key"]).ok_or_else(|| {
            OpsError::new(
                Exit::Data,
                format!(
                    "the old trust key {} is neither signing.key nor in {RETIRED_DIR}/ of {}",
                    rotation.from.key_id,
                    s.keys.path().display()
                ),
            )
            .hint("restore the keys directory from backup before resuming")
        })?;
        ransomeye_kernel::access::create_private_dir(&s.keys.path().join(RETIRED_DIR))?;
        s.keys.create_signing(&old, &retired)?;
        key_named(&s.keys, &rotation.from, &[&retired]).ok_or_else(|| {
            OpsError::new(
                Exit::Io,
                format!(
                    "{retired} does not read back as key {}",
                    rotation.from.key_id
                ),
            )
        })?;
    }
    failpoint::hit("rotate-after-retire");
    // 3. The staged key becomes signing.key.
    if key_named(&s.keys, &rotation.to, &["signing.key"]).is_none() {
        if key_named(&s.keys, &rotation.to, &[NEXT_KEY]).is_none() {
            return Err(OpsError::new(
                Exit::Data,
                format!(
                    "the new trust key {} is neither signing.key nor {NEXT_KEY} in {}",
                    rotation.to.key_id,
                    s.keys.path().display()
                ),
            )
            .hint("restore the keys directory from backup; the configuration already names the new key"));
        }
        s.keys.promote_signing(NEXT_KEY)?;
    }
    if rotation.kind == Kind::Rollback.name() {
        // The key rolled back to is active again; it is no longer a retired key.
        s.keys
            .remove(&format!("{RETIRED_DIR}/{}", rotation.to.key_id))?;
    }
    failpoint::hit("rotate-after-promote");
    // 4. Tell the agents.
    let new = key_named(&s.keys, &rotation.to, &["signing.key"]).ok_or_else(|| {
        OpsError::new(
            Exit::Io,
            format!(
                "signing.key does not read back as key {}",
                rotation.to.key_id
            ),
        )
    })?;
    let published = bus
        .publish_outcome(&Broadcast::Commit(TrustCommit::new(
            &rotation.update,
            &new,
            now_unix(),
        )))
        .await;
    if let Err(e) = published {
        // Stays `committing`: `status` shows it, `--resume` publishes the commit.
        s.journal.update(|r| {
            r.outcome_error = Some(format!("TrustCommit not published: {}", e.what));
        })?;
        return Err(e.hint("the new key is active locally but agents were not told; run `rotate-keys --resume` when the bus is back"));
    }
    s.journal.update(|r| {
        r.state = State::Committed;
        r.outcome_published = true;
        r.outcome_error = None;
    })
}

/// Rolls the rotation in the journal back and returns the error that ends the run (`exit`, with
/// the counts). Refuses to roll back once the configuration names the new key.
async fn abort(
    s: &mut Session,
    bus: &TrustBus,
    reason: String,
    exit: Exit,
) -> Result<(), OpsError> {
    let Some(rotation) = s.journal.latest().cloned() else {
        return Ok(());
    };
    if load_config(&s.config_path).is_ok_and(|c| c.trust.key_id == rotation.to.key_id) {
        // Removing the staged key now would leave the configuration naming a key nobody holds.
        return Err(OpsError::new(
            Exit::Software,
            format!(
                "rotation {} cannot be aborted: the configuration already names its new key {}",
                rotation.rotation_id, rotation.to.key_id
            ),
        )
        .hint("nothing was removed; `rotate-keys status` shows the keys, and the journal must be repaired by hand"));
    }
    if rotation.state != State::Aborting {
        s.journal.update(|r| {
            r.state = State::Aborting;
            r.reason = Some(reason.clone());
        })?;
    }
    let old = key_named(&s.keys, &rotation.from, &["signing.key"]).ok_or_else(|| {
        OpsError::new(
            Exit::Data,
            format!(
                "signing.key is not the old trust key {}: cannot abort",
                rotation.from.key_id
            ),
        )
        .hint("`rotate-keys status` shows the keys; restore the keys directory from backup")
    })?;
    let published = bus
        .publish_outcome(&Broadcast::Abort(TrustAbort::new(
            &rotation.update,
            &old,
            now_unix(),
        )))
        .await;
    failpoint::hit("rotate-after-abort-publish");
    s.keys.remove(NEXT_KEY)?;
    if let Err(e) = published {
        // Agents would keep the pending update until its deadline: the rotation stays
        // `aborting` (so `status` shows it and `--resume` publishes the abort), with the key
        // already gone. Not only a log line.
        s.journal.update(|r| {
            r.outcome_published = false;
            r.outcome_error = Some(format!("TrustAbort not published: {}", e.what));
        })?;
        return Err(OpsError::new(
            exit,
            format!(
                "rotation {} aborted ({reason}), but its TrustAbort was not published: {}",
                rotation.rotation_id, e.what
            ),
        )
        .hint(format!(
            "the old key is still the trust root and the staged key is removed; run `ransomeye-ops rotate-keys --resume` when the bus is back, so agents drop the pending update before its deadline ({})",
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(rotation.update.deadline))
        )));
    }
    s.journal.update(|r| {
        r.state = State::Aborted;
        r.outcome_published = true;
        r.outcome_error = None;
    })?;
    Err(OpsError::new(exit, format!("rotation {} aborted: {reason}", rotation.rotation_id))
        .hint("the old key is still the trust root and nothing else changed; check agents with `ransomeye-ops health`, then rotate again"))
}

/// The atomic writer's temp files a killed rotation left: of the staged key, the journal, a
/// retired key and the configuration. A real run removes them with the rotation lock held (so
/// none is still being written); a dry run lists them.
fn temp_files(keys: &Path, config: &Path) -> Result<Vec<PathBuf>, OpsError> {
    let mut found = temp_files_in(keys, ".signing.key")?;
    found.extend(temp_files_in(keys, &format!(".{}", journal::FILE_NAME))?);
    let retired = keys.join(RETIRED_DIR);
    if retired.is_dir() {
        found.extend(temp_files_in(&retired, ".")?);
    }
    if let (Some(dir), Some(name)) = (config.parent(), config.file_name()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        found.extend(temp_files_in(dir, &format!(".{}", name.to_string_lossy()))?);
    }
    Ok(found)
}

/// The atomic writer's temp files in `dir` whose names start with `prefix`, sorted.
fn temp_files_in(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, OpsError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(PathError::at(FileAction::Read, dir))? {
        let entry = entry.map_err(PathError::at(FileAction::Read, dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ransomeye_kernel::atomic_file::is_temp_name(&name) && name.starts_with(prefix) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// A dry run takes no lock (that would create the lock file) but still says when a rotation is
/// running: it tries the existing lock file without creating or writing it.
fn refuse_if_running(keys: &Path) -> Result<(), OpsError> {
    let path = keys.join(".rotate-keys.lock");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PathError::new(FileAction::Open, &path, e).into()),
    };
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_released_on_drop) => Ok(()),
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = std::io::Read::read_to_string(&mut file, &mut holder);
            Err(OpsError::new(
                Exit::TempFail,
                format!("another key rotation is running ({})", holder.trim()),
            )
            .hint("wait for it to finish; a dry run now would describe a state about to change"))
        }
        Err((_, errno)) => {
            Err(PathError::new(FileAction::Open, &path, std::io::Error::from(errno)).into())
        }
    }
}

/// Refuses to start while the journal's latest rotation is unfinished.
fn refuse_unfinished(journal: &Journal) -> Result<(), OpsError> {
    match journal.unfinished() {
        None => Ok(()),
        Some(r) => Err(OpsError::new(
            Exit::TempFail,
            format!(
                "{} {} (version {} → {}) is unfinished: state {} since {}",
                r.kind, r.rotation_id, r.from.version, r.to.version, r.state.name(), r.updated_at
            ),
        )
        .hint("finish it with `ransomeye-ops rotate-keys --resume`; `rotate-keys status` shows the details")),
    }
}

/// A `signing.key.next` with no unfinished rotation in the journal was staged by a run that died
/// before journaling it, so it was never published: remove it (a dry run only says so).
fn clear_abandoned_next_key(s: &mut Session) -> Result<(), OpsError> {
    if s.journal.unfinished().is_none() && s.keys.path().join(NEXT_KEY).exists() {
        if s.dry_run {
            s.would.push(format!(
                "remove {NEXT_KEY}, left by an interrupted run before it journaled a rotation (it was never published)"
            ));
        } else {
            tracing::warn!(
                "removing {NEXT_KEY} left by an interrupted run (it was never published)"
            );
            s.keys.remove(NEXT_KEY)?;
        }
    }
    Ok(())
}

/// The key with `side`'s id, from the first of `files` that holds it.
fn key_named(keys: &KeyDir, side: &Side, files: &[&str]) -> Option<SigningKey> {
    files
        .iter()
        .filter_map(|f| keys.load_signing_named(f).ok())
        .find(|k| k.id().to_string() == side.key_id && k.self_test())
}

/// Writes the new key as `signing.key.next` and reads it back before anything is published.
fn stage_next_key(keys: &KeyDir, key: &SigningKey) -> Result<(), OpsError> {
    keys.create_signing(key, NEXT_KEY)?;
    let back = keys.load_signing_named(NEXT_KEY)?;
    if back.public_key() != key.public_key() || !back.self_test() {
        let _ = keys.remove(NEXT_KEY);
        return Err(OpsError::new(
            Exit::Io,
            format!("{NEXT_KEY} did not read back as the key just written"),
        )
        .hint("check the disk holding [keys] dir"));
    }
    Ok(())
}

/// The key a rollback returns to: the key the latest committed rotation replaced.
fn rollback_target(
    keys: &KeyDir,
    journal: &Journal,
    active: &SigningKey,
) -> Result<SigningKey, OpsError> {
    let previous = journal
        .rotations
        .iter()
        .rev()
        .find(|r| r.state == State::Committed && r.to.key_id == active.id().to_string())
        .ok_or_else(|| {
            OpsError::new(
                Exit::NoInput,
                format!(
                    "the journal has no committed rotation to key {}: nothing to roll back to",
                    active.id()
                ),
            )
            .hint("`rotate-keys status` lists the rotations and retired keys")
        })?;
    let file = format!("{RETIRED_DIR}/{}", previous.from.key_id);
    let key = keys.load_signing_named(&file)?;
    if key.id().to_string() != previous.from.key_id || !key.self_test() {
        return Err(OpsError::new(
            Exit::Data,
            format!("{file} is not the key {}", previous.from.key_id),
        ));
    }
    Ok(key)
}

/// The dry run's check of the configuration's directory: `access(2)` (which also sees a
/// read-only mount) instead of the real run's probe file, which would change the directory.
fn check_config_dir_access(path: &Path) -> Result<(), OpsError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).map_err(|errno| {
        let mut err = OpsError::io(
            format_args!(
                "the configuration's directory {} is not writable",
                dir.display()
            ),
            &std::io::Error::from(errno),
        );
        if errno == nix::errno::Errno::EACCES {
            err.exit = Exit::NoPerm;
        }
        err.hint("a commit rewrites the configuration atomically in its directory")
    })
}

/// Fails with 74 (or 77) now, before anything is generated or published, when the
/// configuration's directory cannot take the atomic rewrite the commit needs.
fn check_config_writable(path: &Path) -> Result<(), OpsError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Named like the atomic writer's temp files of the configuration, so that a probe left by a
    // kill is removed with them.
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    tempfile::Builder::new()
        .prefix(&format!(".{name}{}probe-", ransomeye_kernel::atomic_file::TEMP_MARKER))
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| {
            let mut err = OpsError::io(
                format_args!("the configuration's directory {} is not writable", dir.display()),
                &e,
            );
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                err.exit = Exit::NoPerm;
            }
            err.hint("a commit rewrites the configuration atomically in its directory; nothing was generated or published")
        })
}

/// The configuration file as it is on disk now, without environment overrides.
fn load_config(path: &Path) -> Result<Config, ransomeye_kernel::config::ConfigError> {
    Config::load(&ransomeye_kernel::config::ConfigSource {
        path: path.to_path_buf(),
        origin: "--config",
    })
}

/// Rewrites the three `[trust]` values in the configuration file (atomic, keeps mode and owner,
/// and every other byte of the operator's file: comments, order, layout).
fn write_trust_config(path: &Path, to: &Side) -> Result<(), OpsError> {
    let config = load_config(path)?;
    if config.trust.key_id == to.key_id && config.trust.version == to.version {
        return Ok(());
    }
    if failpoint::armed("rotate-config-write-fails") {
        return Err(OpsError::io(
            format_args!("writing {}", path.display()),
            &std::io::Error::from_raw_os_error(30),
        ));
    }
    let version = i64::try_from(to.version).map_err(|_| {
        OpsError::new(
            Exit::Data,
            format!("trust version {} does not fit in TOML", to.version),
        )
    })?;
    ransomeye_kernel::config::set_values(
        path,
        &[
            ("trust", "version", version.into()),
            ("trust", "key_id", to.key_id.as_str().into()),
            ("trust", "public_key", to.public_key.as_str().into()),
        ],
    )?;
    Ok(())
}

/// Every active agent and its registered public key.
async fn active_agents(conn: &mut PgConnection) -> Result<HashMap<AgentId, Vec<u8>>, OpsError> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("select id::text, public_key from agents where status = 'active'")
            .fetch_all(&mut *conn)
            .answer("reading the active agents")
            .await?;
    let mut agents = HashMap::with_capacity(rows.len());
    for (id, key) in rows {
        match id.parse::<AgentId>() {
            Ok(id) => {
                agents.insert(id, key);
            }
            Err(m) => tracing::warn!("skipping agent: {m}"),
        }
    }
    if agents.is_empty() {
        return Err(OpsError::new(
            Exit::TempFail,
            "no active agents: nobody could acknowledge a new trust key",
        )
        .hint("register agents (table agents, status 'active') first; nothing was generated or published"));
    }
    Ok(agents)
}

fn report_dry_run(
    s: &Session,
    kind: Kind,
    old: &SigningKey,
    active: usize,
    needed: usize,
) -> Result<(), OpsError> {
    let mut report = s.report("dry_run", None);
    report.kind = Some(kind.name().into());
    report.from = Some(side(s.config.trust.version, old));
    report.counts = Counts {
        active,
        needed,
        ..Counts::default()
    };
    print_report(
        s,
        &report,
        &dry_run_text(
            s,
            &format!(
                "dry run: a {} from trust version {} (key {}) would need {needed} of {active} active agents to ack within {} s; keys, configuration, bus and database checked, nothing changed",
                kind.name(),
                s.config.trust.version,
                old.id(),
                s.timeout.as_secs()
            ),
        ),
    )
}

/// `headline`, then in a dry run one line per thing a real run would finish or clean.
fn dry_run_text(s: &Session, headline: &str) -> String {
    let mut text = headline.to_string();
    for step in &s.would {
        text.push_str("\n  would ");
        text.push_str(step);
    }
    text
}

/// `--resume --dry-run`: what a resume would do with the unfinished rotation, read from the
/// journal and the keys directory, after checking the database and the bus. Changes nothing.
fn report_resume_dry_run(s: &mut Session, rotation: &Rotation) -> Result<(), OpsError> {
    let rt = runtime()?;
    rt.block_on(async {
        let (mut conn, _bus) = s.connect().await?;
        let active = active_agents(&mut conn).await?.len();
        let old = key_named(&s.keys, &rotation.from, &["signing.key"]);
        let staged = key_named(&s.keys, &rotation.to, &[NEXT_KEY]);
        let abort_steps = |s: &mut Session, why: &str| {
            s.would.push(format!("abort it: {why}"));
            s.would.push(format!(
                "publish the TrustAbort (signed by the old key {})",
                rotation.from.key_id
            ));
            s.would.push(format!("remove {NEXT_KEY} and journal the rotation aborted"));
        };
        match rotation.state {
            State::Pending => {
                let left = collection_left(&rotation.update);
                if old.is_none() || staged.is_none() {
                    abort_steps(s, "the staged key or the old key is missing");
                } else if left.is_zero() {
                    abort_steps(s, "its time to collect acks has passed");
                } else {
                    let needed = Quorum::new(rotation.quorum)
                        .map(|q| q.needed(active))
                        .unwrap_or(active);
                    s.would.push(format!(
                        "re-publish the same TrustUpdate and collect acks for {} s more: {needed} of {active} active agents needed (quorum {})",
                        left.as_secs(),
                        rotation.quorum
                    ));
                    s.would.push("then commit, or abort without a quorum".into());
                }
            }
            State::Committing => {
                let on_disk = load_config(&s.config_path).ok();
                if on_disk.is_none_or(|c| c.trust.key_id != rotation.to.key_id) {
                    s.would.push(format!(
                        "write [trust] version {} key {} into the configuration (the commit point)",
                        rotation.to.version, rotation.to.key_id
                    ));
                }
                let retired = format!("{RETIRED_DIR}/{}", rotation.from.key_id);
                if key_named(&s.keys, &rotation.from, &[&retired]).is_none() {
                    s.would.push(format!("copy the old key to {retired}"));
                }
                if key_named(&s.keys, &rotation.to, &["signing.key"]).is_none() {
                    s.would.push(format!("rename {NEXT_KEY} over signing.key"));
                }
                s.would
                    .push("publish the TrustCommit and journal the rotation committed".into());
            }
            State::Aborting => {
                let reason = rotation.reason.as_deref().unwrap_or("interrupted");
                abort_steps(s, reason);
            }
            State::Committed | State::Aborted => {}
        }
        let report = s.report("dry_run", Some(rotation));
        print_report(
            s,
            &report,
            &dry_run_text(
                s,
                &format!(
                    "dry run: {} {} is unfinished (state {}, version {} → {}); nothing changed",
                    rotation.kind,
                    rotation.rotation_id,
                    rotation.state.name(),
                    rotation.from.version,
                    rotation.to.version
                ),
            ),
        )
    })
}

/// Reports the latest rotation as committed; `published` (milliseconds from publishing to the
/// commit, and the update's stream sequence) when this run published the update.
fn report_committed(s: &Session, published: Option<(f64, u64)>) -> Result<(), OpsError> {
    let Some(r) = s.journal.latest() else {
        return Ok(());
    };
    let mut report = s.report("committed", Some(r));
    report.publish_to_commit_ms = published.map(|p| p.0);
    report.update_seq = published.map(|p| p.1);
    print_report(s, &report, &committed_line(r))
}

/// "version 1 → 2, key a → b, acked 9/10 (needed 9)": what a rotation did, in one phrase.
fn summary(r: &Rotation) -> String {
    format!(
        "version {} → {}, key {} → {}, acked {}/{} (needed {})",
        r.from.version,
        r.to.version,
        r.from.key_id,
        r.to.key_id,
        r.counts.acked,
        r.counts.active,
        r.counts.needed
    )
}

fn committed_line(r: &Rotation) -> String {
    let ignored: u64 = r.counts.ignored.values().sum();
    format!(
        "committed {} {}: {}{}; {} acks did not count{}",
        r.kind,
        r.rotation_id,
        summary(r),
        r.time_to_quorum_ms
            .map(|ms| format!(" in {ms:.0} ms"))
            .unwrap_or_default(),
        ignored,
        if ignored > 0 {
            format!(" ({})", ignored_summary(&r.counts.ignored))
        } else {
            String::new()
        }
    )
}

fn print_report(s: &Session, report: &Report, human: &str) -> Result<(), OpsError> {
    if s.json {
        print_json(report)
    } else {
        println!("{human}");
        Ok(())
    }
}

fn progress_bar(json: bool, active: usize, needed: usize) -> indicatif::ProgressBar {
    let bar = crate::utils::progress(json, "acks", "");
    bar.set_message(format!("acks (need {needed} of {active} active):"));
    bar
}

/// `rotate-keys status`: the journal, the active key, the retired keys. Changes nothing. Exits
/// 75 while the latest rotation is unfinished (running, interrupted, or its outcome not
/// published), so monitoring sees it.
fn status(ctx: &Context) -> Result<u8, OpsError> {
    let config = ctx.config()?;
    let keys = KeyDir::new(&config.keys.dir);
    let journal = Journal::load(keys.path())?;
    let active = crate::trust::signing_key(&config).map(|k| k.id().to_string());
    let next = keys
        .load_signing_named(NEXT_KEY)
        .ok()
        .map(|k| k.id().to_string());
    let mut retired: Vec<String> = std::fs::read_dir(keys.path().join(RETIRED_DIR))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !ransomeye_kernel::atomic_file::is_temp_name(n))
                .collect()
        })
        .unwrap_or_default();
    retired.sort();
    let unfinished = journal.unfinished().map(|r| r.rotation_id.clone());
    let code = if unfinished.is_some() {
        Exit::TempFail.code()
    } else {
        0
    };
    if ctx.json {
        print_json(&serde_json::json!({
            "trust_version": config.trust.version,
            "key_id": config.trust.key_id,
            "active_key_file": active.as_ref().ok().is_some(),
            "active_key_error": active.as_ref().err().map(|e| e.what.clone()),
            "staged_key_id": next,
            "retired_key_ids": retired,
            "unfinished_rotation": unfinished,
            "rotations": journal.rotations.iter().map(|r| serde_json::json!({
                "rotation_id": r.rotation_id, "kind": r.kind, "state": r.state,
                "from": r.from, "to": r.to, "counts": r.counts,
                "started_at": r.started_at, "updated_at": r.updated_at, "reason": r.reason,
                "outcome_published": r.outcome_published, "outcome_error": r.outcome_error,
            })).collect::<Vec<_>>(),
        }))?;
        return Ok(code);
    }
    println!(
        "trust version {}, key {}",
        config.trust.version, config.trust.key_id
    );
    match &active {
        Ok(_) => println!("  active key file: present and matches the configuration"),
        Err(e) => println!("  active key file: PROBLEM: {}", e.what),
    }
    if let Some(id) = &next {
        println!("  staged key (signing.key.next): {id}");
    }
    println!(
        "  retired keys: {}",
        if retired.is_empty() {
            "none".to_string()
        } else {
            retired.join(", ")
        }
    );
    match journal.latest() {
        None => println!("no rotations recorded"),
        Some(_) => {
            println!("rotations (newest last):");
            for r in &journal.rotations {
                println!(
                    "  {} {} {}: {}, started {}{}{}",
                    r.kind,
                    r.rotation_id,
                    r.state.name(),
                    summary(r),
                    r.started_at,
                    r.reason
                        .as_ref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default(),
                    r.outcome_error
                        .as_ref()
                        .map(|m| format!("; {m}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    if let Some(r) = journal.unfinished() {
        let what = if r.outcome_error.is_some() {
            "aborted, but its TrustAbort is not published yet"
        } else {
            "unfinished"
        };
        // Exit 75 below: said as an error, on stderr, like every other failure.
        eprintln!(
            "error: rotation {} is {what} (state {})\nhint: finish it with `ransomeye-ops rotate-keys --resume` (see what it would do with --dry-run)",
            r.rotation_id,
            r.state.name()
        );
    }
    Ok(code)
}
